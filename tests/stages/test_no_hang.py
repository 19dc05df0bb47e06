"""No hang: an empty pseudo-label shard is refused by name, and a training
process blocked inside TensorFlow still ends within its grace time after
SIGTERM."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tf_pixintra import run_layout
from tf_pixintra.errors import DataError
from tf_pixintra.stages import intra_stage

HERE = os.path.dirname(os.path.abspath(__file__))
GRACE_S = 3.0


def write_index(directory, shards):
    """An index naming `shards` [(file, records it claims, bytes of data)]."""
    entries = []
    for name, claimed, data in shards:
        (directory / name).write_bytes(data)
        entries.append({"file": name, "num_records": claimed,
                        "num_bytes": len(data)})
    index = directory / run_layout.index_name("target")
    index.write_text(json.dumps({
        "version": 1, "name": "target", "num_shards": len(entries),
        "shards": entries, "total": sum(e["num_records"] for e in entries),
        "settings": {}}))
    return str(index)


def test_an_index_naming_an_empty_shard_is_refused_by_name(tmp_path):
    index = write_index(tmp_path, [("target-00000-of-00001.tfrecord", 12, b"")])
    with pytest.raises(DataError) as info:
        intra_stage.check_shard_counts(index, 1)
    message = str(info.value)
    assert message.startswith(str(tmp_path / "target-00000-of-00001.tfrecord"))
    assert "holds 0 records" in message and "says 12" in message
    assert "--stage=pseudo --round=1" in message


def test_an_index_whose_shards_hold_nothing_is_refused(tmp_path):
    index = write_index(tmp_path, [("target-00000-of-00002.tfrecord", 0, b""),
                                   ("target-00001-of-00002.tfrecord", 0, b"")])
    with pytest.raises(DataError, match="hold no records") as info:
        intra_stage.check_shard_counts(index, 2)
    assert str(info.value).startswith(index)
    assert "target-00001-of-00002.tfrecord" in str(info.value)


def test_blocked_training_ends_within_its_grace_time_after_sigterm(tmp_path):
    proc = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, os.path.join(HERE, "blocked_fit_main.py"),
         str(tmp_path / "checkpoints"), str(GRACE_S)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "fitting", proc.stderr.read()
        time.sleep(2.0)   # into fit, waiting for a batch that never comes
        assert proc.poll() is None, proc.stderr.read()
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=GRACE_S + 60)
        waited = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert f"did not reach the end of a step within {GRACE_S:g} s" in stderr
    assert waited >= GRACE_S
