"""Multi-worker waits (tf_pixintra.stages.peers) and the chief-only stages.

The two-process run over loopback is tests/test_multi_worker.py; here the
waits run on a fake clock, and the eval and export stages of a non-chief
worker are checked not to touch a model.
"""

import os
import types

import pytest

from tf_pixintra import io_utils
from tf_pixintra import run_layout
from tf_pixintra.errors import PeerTimeout
from tf_pixintra.stages import common
from tf_pixintra.stages import eval_stage
from tf_pixintra.stages import export_stage
from tf_pixintra.stages import peers


def worker_ctx(run_dir, task_index=1, wait_secs=60.0):
    config = types.SimpleNamespace(
        run=types.SimpleNamespace(peer_wait_secs=wait_secs))
    return common.Context(config, str(run_dir), None, None,
                          is_chief=task_index == 0, task_index=task_index,
                          num_workers=2)


class FakeClock:
    """time.monotonic and time.sleep; `at[t]()` runs once the clock passes t."""

    def __init__(self, at=None):
        self.now, self.at, self.sleeps = 100.0, dict(at or {}), []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds
        for t in sorted(self.at):
            if self.now - 100.0 >= t:
                self.at.pop(t)()


def test_wait_returns_once_the_peer_file_appears(tmp_path):
    target = tmp_path / "pass1-00001-of-00002.json"
    fake = FakeClock({7.0: lambda: target.write_text("{}")})
    peers.wait_for(worker_ctx(tmp_path), [str(target)], "pass 1",
                   clock=fake.clock, sleep=fake.sleep)
    assert 7.0 <= fake.now - 100.0 < 7.0 + peers.MAX_POLL_SECS
    # Quick polls first, then at most every MAX_POLL_SECS.
    assert fake.sleeps[0] == peers.FIRST_POLL_SECS
    assert max(fake.sleeps) == peers.MAX_POLL_SECS


def test_wait_for_a_crashed_peer_ends_naming_the_worker_and_the_files(tmp_path):
    here, gone = tmp_path / "pass1-00000-of-00002.json", \
        tmp_path / "pass1-00001-of-00002.json"
    here.write_text("{}")
    fake = FakeClock()
    with pytest.raises(PeerTimeout) as info:
        peers.wait_for(worker_ctx(tmp_path, task_index=0, wait_secs=30),
                       [str(here), str(gone)], "every shard's pass 1",
                       clock=fake.clock, sleep=fake.sleep)
    message = str(info.value)
    assert "worker 0 of 2 (the chief) waited 30 s for every shard's pass 1" in message
    assert f"missing: {gone}" in message and str(here) not in message
    assert "--peer_wait_secs=30" in message
    assert fake.now - 100.0 == pytest.approx(30.0)    # no sleep past the limit


def test_wait_checks_readiness_once_the_files_exist(tmp_path):
    metrics = tmp_path / "metrics.json"
    metrics.write_text("{}")
    state = {"ready": False}
    fake = FakeClock({12.0: lambda: state.update(ready=True)})

    def ready():
        return None if state["ready"] else "index.json: shard 1 is missing"
    peers.wait_for(worker_ctx(tmp_path), [str(metrics)], "the summary",
                   ready=ready, clock=fake.clock, sleep=fake.sleep)
    assert fake.now - 100.0 >= 12.0
    fake = FakeClock()
    state["ready"] = False
    with pytest.raises(PeerTimeout, match="not ready: index.json: shard 1 is missing"):
        peers.wait_for(worker_ctx(tmp_path, wait_secs=5), [str(metrics)],
                       "the summary", ready=ready, clock=fake.clock,
                       sleep=fake.sleep)


@pytest.mark.parametrize("stage", [eval_stage, export_stage])
def test_a_non_chief_waits_for_the_chief_instead_of_repeating_the_stage(
        tmp_path, monkeypatch, stage):
    def no_model(*args, **kwargs):
        raise AssertionError("a non-chief worker loaded a model")
    monkeypatch.setattr(common, "load_generator", no_model)
    name = stage.__name__.rsplit(".", 1)[-1].replace("_stage", "")
    chief_metrics = {"stage": name, "model": "inter/model.keras"}

    def chief_finishes():
        io_utils.write_json(os.path.join(tmp_path, name, run_layout.METRICS_FILE),
                            chief_metrics)
    fake = FakeClock({3.0: chief_finishes})
    monkeypatch.setattr(peers.time, "monotonic", fake.clock)
    monkeypatch.setattr(peers.time, "sleep", fake.sleep)
    assert stage.run(worker_ctx(tmp_path)) == chief_metrics
    assert fake.now - 100.0 >= 3.0
    # Nothing from the chief: the bounded wait ends with the file's name.
    other = tmp_path / "other"
    with pytest.raises(PeerTimeout, match=f"missing: {other / name / 'metrics.json'}"):
        stage.run(worker_ctx(other, wait_secs=2))
