"""One writer per run directory; a killed writer's temporaries are removed."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest

from tf_pixintra import io_utils
from tf_pixintra import run_lock
from tf_pixintra.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HOLDER = """
import sys, time
from tf_pixintra import run_lock
with run_lock.hold(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def start_holder(run_dir):
    """A process that holds the lock of `run_dir` until it is killed."""
    proc = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, "-c", HOLDER, str(run_dir)], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.strip() == "held", proc.stderr.read()
    return proc


def test_second_writer_is_refused_until_the_holder_dies(tmp_path):
    holder = start_holder(tmp_path)
    try:
        with pytest.raises(ConfigError, match=f"pid {holder.pid}") as info:
            with run_lock.hold(str(tmp_path)):
                pass
        assert "in use by another process" in str(info.value)
        assert "\n" not in str(info.value)
        # Shard workers do not get in while an ordinary run holds it either.
        with pytest.raises(ConfigError):
            with run_lock.hold(str(tmp_path), shared=True):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    # The kernel released the lock of the killed process; the file stays.
    assert (tmp_path / run_lock.LOCK_FILE).exists()
    with run_lock.hold(str(tmp_path)) as exclusive:
        assert exclusive
        assert (tmp_path / run_lock.LOCK_FILE).read_text() == f"pid {os.getpid()}\n"
    with run_lock.hold(str(tmp_path)):   # released on exit: taken again
        pass


def test_shard_workers_share_the_lock(tmp_path):
    with run_lock.hold(str(tmp_path), shared=True) as first:
        with run_lock.hold(str(tmp_path), shared=True) as second:
            assert not first and not second
        with pytest.raises(ConfigError):
            with run_lock.hold(str(tmp_path)):
                pass


def test_a_read_only_run_dir_is_not_locked(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes to read-only directories")
    os.chmod(tmp_path, 0o555)
    try:
        with run_lock.hold(str(tmp_path)) as exclusive:
            assert not exclusive
    finally:
        os.chmod(tmp_path, 0o755)


def make_strays(run_dir):
    """What killed writers leave, and files of the same places to keep."""
    strays = [
        "pseudo_r1/.target-00000-of-00001.tfrecord.k2j3_x.tmp",
        "pseudo_r1/cache/.000003.npy.a8d9.tmp",
        ".summary.json.q1w2.tmp",
        "inter/.partial.model.keras",
        "export/.tflite_source.u7y6.tmp/saved_model.pb",
        "export/saved_model/pixintra/.1.k8j7.tmp/saved_model.pb",
        "inter/checkpoints/ckpt-4_temp/part-00000-of-00001.data-00000-of-00001",
    ]
    keep = [
        "pseudo_r1/target-00000-of-00001.tfrecord", "pseudo_r1/cache/000003.npy",
        "inter/model.keras", "inter/checkpoints/ckpt-2.index",
        "inter/checkpoints/checkpoint", "inter/tb/events.out.tfevents.1.x",
        "inter/checkpoints/workertemp_1/ckpt-2.index", run_lock.LOCK_FILE,
    ]
    for rel in strays + keep:
        path = run_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    return strays, keep


def test_stray_temporaries_are_removed_and_nothing_else(tmp_path):
    strays, keep = make_strays(tmp_path)
    removed = run_lock.remove_stray_temporaries(str(tmp_path))
    assert len(removed) == len(strays)
    for rel in strays:
        assert not (tmp_path / rel).exists(), rel
    for rel in ("export/.tflite_source.u7y6.tmp",
                "inter/checkpoints/ckpt-4_temp"):
        assert not (tmp_path / rel).exists(), rel
    for rel in keep:
        assert (tmp_path / rel).exists(), rel


def train(run_dir, *args):
    return subprocess.run(
        [sys.executable, "-m", "tf_pixintra.train", "--flagfile",
         os.path.join(ROOT, "configs", "toyscapes_smoke.cfg"),
         f"--run_dir={run_dir}", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def test_cli_refuses_a_held_run_dir_then_cleans_up_after_a_killed_one(tmp_path):
    """train.py: exit 2 with one line while held; after SIGKILL of the
    holder, the next run takes the directory and removes the temporaries."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    strays, _ = make_strays(run_dir)
    holder = start_holder(run_dir)
    try:
        # --stage=eval with no model: fails fast once the directory is taken.
        refused = train(run_dir, "--stage=eval",
                        f"--toyscapes_dir={tmp_path / 'nodata'}")
        assert refused.returncode == 2, refused.stderr[-2000:]
        lines = [ln for ln in refused.stderr.splitlines() if ln.strip()]
        assert lines[-1].startswith("error: ") and "in use by another" in lines[-1]
        assert f"pid {holder.pid}" in lines[-1] and "Traceback" not in refused.stderr
        assert all((run_dir / rel).exists() for rel in strays)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    start = time.monotonic()
    after = train(run_dir, "--stage=eval", f"--toyscapes_dir={tmp_path / 'nodata'}")
    assert "in use by another" not in after.stderr, after.stderr[-2000:]
    assert time.monotonic() - start < 600
    assert not any((run_dir / rel).exists() for rel in strays)


# ------------------------------------------- a run directory on tf.io.gfile

@pytest.fixture()
def ram_dir(monkeypatch):
    monkeypatch.setattr(run_lock, "SETTLE_SECS", 0.0)
    return f"ram://lock-{uuid.uuid4().hex[:8]}/run"


def lock_record(path):
    return json.loads(io_utils.read_text(path))


def test_gfile_lock_refuses_a_second_writer_and_is_released(ram_dir):
    lock = f"{ram_dir}/{run_lock.LOCK_FILE}"
    with run_lock.hold(ram_dir) as exclusive:
        assert exclusive
        record = lock_record(lock)
        assert record["pid"] == os.getpid() and record["mode"] == "exclusive"
        assert record["host"] == socket.gethostname()
        for shared in (False, True):
            with pytest.raises(ConfigError) as info:
                with run_lock.hold(ram_dir, shared=shared):
                    pass
            message = str(info.value)
            assert "in use by another process" in message and "\n" not in message
            assert f"pid {os.getpid()}" in message and lock in message
    assert not io_utils.exists(lock)        # released: the file is deleted
    with run_lock.hold(ram_dir) as exclusive:
        assert exclusive


def test_gfile_shard_workers_share_the_lock(ram_dir):
    with run_lock.hold(ram_dir, shared=True) as first:
        assert not first
        holders = [n for n in io_utils.listdir(ram_dir)
                   if n.startswith(run_lock.SHARED_PREFIX)]
        assert len(holders) == 1
        with pytest.raises(ConfigError, match=holders[0]):
            with run_lock.hold(ram_dir):
                pass
    assert io_utils.listdir(ram_dir) == []
    with run_lock.hold(ram_dir):
        with pytest.raises(ConfigError, match="exclusive"):
            with run_lock.hold(ram_dir, shared=True):
                pass


def finished_pid():
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


@pytest.mark.parametrize("stale", ["old", "dead_pid", "damaged"])
def test_gfile_lock_of_a_stopped_holder_is_taken_over(ram_dir, stale):
    lock = f"{ram_dir}/{run_lock.LOCK_FILE}"
    record = {"host": socket.gethostname(), "pid": os.getpid() + 1,
              "time": time.time(), "mode": "exclusive", "token": "x"}
    if stale == "old":
        record.update(host="elsewhere", time=time.time() - run_lock.STALE_SECS - 1)
    elif stale == "dead_pid":
        record["pid"] = finished_pid()
    io_utils.write_bytes(lock, b"{" if stale == "damaged"
                         else json.dumps(record).encode())
    with run_lock.hold(ram_dir) as exclusive:
        assert exclusive and lock_record(lock)["pid"] == os.getpid()
    # A live holder on another host, refreshed recently, is not taken over.
    record.update(host="elsewhere", time=time.time() - 1)
    io_utils.write_text(lock, json.dumps(record))
    with pytest.raises(ConfigError, match="host elsewhere"):
        with run_lock.hold(ram_dir):
            pass


def test_gfile_lock_of_two_simultaneous_starts_goes_to_one(ram_dir, monkeypatch):
    """Both saw no lock and wrote theirs; the one overwritten is refused."""
    lock = f"{ram_dir}/{run_lock.LOCK_FILE}"
    other = {"host": "elsewhere", "pid": 7, "time": time.time(),
             "mode": "exclusive", "token": "other"}

    def other_writes_while_settling(seconds):
        assert seconds == run_lock.SETTLE_SECS
        io_utils.write_text(lock, json.dumps(other))
    monkeypatch.setattr(run_lock.time, "sleep", other_writes_while_settling)
    with pytest.raises(ConfigError, match="host elsewhere pid 7"):
        with run_lock.hold(ram_dir):
            pass
    assert lock_record(lock) == other           # the winner's file stays


def test_gfile_lock_holder_refreshes_its_time(ram_dir, monkeypatch):
    monkeypatch.setattr(run_lock, "HEARTBEAT_SECS", 0.05)
    lock = f"{ram_dir}/{run_lock.LOCK_FILE}"
    with run_lock.hold(ram_dir):
        first = lock_record(lock)
        deadline = time.monotonic() + 30
        while lock_record(lock)["time"] == first["time"]:
            assert time.monotonic() < deadline, "lock time never refreshed"
            time.sleep(0.05)
        assert lock_record(lock)["token"] == first["token"]
    assert not io_utils.exists(lock)


def test_gfile_stray_temporaries_are_removed_and_nothing_else(tmp_path, ram_dir):
    strays, keep = make_strays(tmp_path)      # the same names, on ram://
    for rel in strays + keep:
        io_utils.write_bytes(f"{ram_dir}/{rel}", b"x")
    removed = run_lock.remove_stray_temporaries(ram_dir)
    assert len(removed) == len(strays)
    for rel in strays:
        assert not io_utils.exists(f"{ram_dir}/{rel}"), rel
    for rel in keep:
        assert io_utils.exists(f"{ram_dir}/{rel}"), rel
