"""End to end: the whole pipeline on the ToyScapes smoke config (marker e2e)."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tf_pixintra import run_layout
from tf_pixintra.data import tfrecords

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ("inter", "pseudo_r1", "intra_r1", "pseudo_r2", "intra_r2", "eval",
          "export")


def train(*args, timeout=900):
    return subprocess.run(
        [sys.executable, "-m", "tf_pixintra.train",
         "--flagfile", os.path.join(ROOT, "configs", "toyscapes_smoke.cfg"), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, check=False)


@pytest.mark.e2e
def test_smoke_pipeline_runs_every_stage_and_resumes(tmp_path):
    run_dir, data_dir = tmp_path / "run", tmp_path / "data"
    args = (f"--run_dir={run_dir}", f"--toyscapes_dir={data_dir}")
    result = train(*args)
    assert result.returncode == 0, result.stderr[-4000:]
    for stage in STAGES:
        metrics = json.loads((run_dir / stage / "metrics.json").read_text())
        if stage.startswith(("inter", "intra", "eval")):
            assert 0.0 <= metrics["target_miou"] <= 100.0, stage
        assert stage in result.stdout
    assert "target mIoU" in result.stdout
    assert (run_dir / "comparison.png").is_file()       # named in the table
    assert f"stages side by side: {run_dir / 'comparison.png'}" in result.stdout
    assert sorted(p.name for p in (run_dir / "pseudo_r1").glob("preview_*")) \
        == [f"preview_{i:03d}.png" for i in range(8)]
    for round_dir in ("pseudo_r1", "pseudo_r2"):
        index = tfrecords.validate_records(
            str(run_dir / round_dir / run_layout.index_name("target")))
        assert index["total"] == 24
        summary = json.loads((run_dir / round_dir / "summary.json").read_text())
        assert 0.0 < summary["prop"] <= 1.0
        assert set(summary["alpha_sweep"]) == {"0.5", "0.85", "1.0"}
    intra2 = json.loads((run_dir / "intra_r2" / "metrics.json").read_text())
    assert intra2["kld"] and "loss_kld" in intra2["final_logs"]
    assert (run_dir / "export" / "saved_model" / "pixintra" / "1" /
            "saved_model.pb").is_file()
    assert (run_dir / "export" / "tflite" / "pixintra_fp32.tflite").is_file()

    # Same command again: every stage is complete, nothing is retrained.
    before = (run_dir / "intra_r2" / "model.keras").stat().st_mtime_ns
    again = train(*args)
    assert again.returncode == 0, again.stderr[-4000:]
    assert (run_dir / "intra_r2" / "model.keras").stat().st_mtime_ns == before


@pytest.mark.e2e
def test_self_training_from_the_source_only_model(tmp_path):
    """--pipeline=source_only,pseudo,intra: round one's pseudo labels, and
    the smoke config's --intra_init=inter weights, come from the source-only
    model (no Stage I directory to read them from)."""
    run_dir = tmp_path / "run"
    result = train(f"--run_dir={run_dir}", f"--toyscapes_dir={tmp_path / 'data'}",
                   "--pipeline=source_only,pseudo,intra", "--inter_steps=2",
                   "--intra_steps=2", "--checkpoint_every=2", "--log_every=0",
                   "--image_every=0", "--alpha_sweep=0.85")
    assert result.returncode == 0, result.stderr[-4000:]
    assert sorted(p.name for p in run_dir.iterdir() if p.is_dir()) == [
        "intra_r1", "pseudo_r1", "source_only"]
    for stage in ("source_only", "pseudo_r1", "intra_r1"):
        assert (run_dir / stage / "metrics.json").is_file(), stage
    assert json.loads((run_dir / "run.json").read_text())["model"] == \
        "intra_r1/model.keras"


@pytest.mark.e2e
def test_stage_one_reads_gta5_and_cityscapes_layouts_from_given_roots(tmp_path):
    """--source_root/--target_root (not --toyscapes): the real readers' path."""
    from tf_pixintra.data import toyscapes  # pylint: disable=import-outside-toplevel
    toyscapes.generate(str(tmp_path / "data"), seed=3, num_source=4,
                               num_target=4, num_val=2, height=32, width=64)
    roots = toyscapes.dataset_paths(str(tmp_path / "data"))
    run_dir = tmp_path / "run"
    result = train("--notoyscapes", f"--source_root={roots['gta5']}",
                   f"--target_root={roots['cityscapes']}", "--stage=inter",
                   f"--run_dir={run_dir}", "--source_size=32,64",
                   "--target_size=32,64", "--eval_size=32,64", "--inter_steps=2",
                   timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = json.loads((run_dir / "inter" / "metrics.json").read_text())
    assert metrics["variant"] == "adaptsegnet" and "target_miou" in metrics
    assert (run_dir / "inter" / "model.keras").is_file()


def _run_until_checkpoint_then_sigterm(args, ckpt_dir, after_step):
    """Starts train.py, waits for a checkpoint past `after_step`, sends SIGTERM."""
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)

    def newest():
        steps = [int(p.name[5:-6]) for p in ckpt_dir.glob("ckpt-*.index")]
        return max(steps, default=-1)
    try:
        deadline = time.time() + 600
        while newest() <= after_step and time.time() < deadline:
            if proc.poll() is not None:
                raise AssertionError(proc.stderr.read()[-3000:])
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, stderr, newest()


@pytest.mark.e2e
def test_sigterm_on_two_mirrored_devices_exits_130_promptly(tmp_path):
    """train.py stopped by SIGTERM under MirroredStrategy (a multi-device
    input iterator) saves a checkpoint and its interpreter shuts down by
    itself, with exit status 130 (no os._exit: a hang here fails the test
    through the timeout of `_run_until_checkpoint_then_sigterm`)."""
    run = tmp_path / "run"
    args = [sys.executable, "-m", "tf_pixintra.train",
            "--flagfile", os.path.join(ROOT, "configs", "toyscapes_smoke.cfg"),
            f"--run_dir={run}", f"--toyscapes_dir={tmp_path / 'data'}",
            "--stage=inter", "--inter_steps=400", "--checkpoint_every=2",
            "--log_every=0", "--image_every=0", "--strategy=mirrored",
            "--devices=2"]
    code, stderr, step = _run_until_checkpoint_then_sigterm(
        args, run / "inter" / "checkpoints", -1)
    assert code == 130, stderr[-3000:]
    assert "run the same command to resume" in stderr
    assert 2 <= step < 400 and not (run / "inter" / "metrics.json").exists()


def _weights(path):
    from tf_pixintra.stages import common  # pylint: disable=import-outside-toplevel
    return common.load_generator(str(path)).get_weights()


@pytest.mark.e2e
@pytest.mark.slow   # ~160 s; small form in CI: tests/stages/test_sigterm_resume.py
def test_sigterm_in_stage_one_and_two_then_the_same_command_is_exact(tmp_path):
    """SIGTERM mid Stage I, then mid Stage II, then the same command to the
    end: every weight equals that of an uninterrupted run, bit for bit."""
    def args(run):
        return [sys.executable, "-m", "tf_pixintra.train",
                "--flagfile", os.path.join(ROOT, "configs", "toyscapes_smoke.cfg"),
                f"--run_dir={tmp_path / run}", f"--toyscapes_dir={tmp_path / 'data'}",
                "--pipeline=inter,pseudo,intra", "--inter_steps=12",
                "--intra_steps=12", "--checkpoint_every=2", "--log_every=0",
                "--image_every=0", "--alpha_sweep=0.85"]
    run = tmp_path / "run"
    code, stderr, first = _run_until_checkpoint_then_sigterm(
        args("run"), run / "inter" / "checkpoints", -1)
    assert code == 130, stderr[-3000:]
    assert "run the same command to resume" in stderr
    assert 2 <= first < 12 and not (run / "inter" / "metrics.json").exists()
    code, stderr, second = _run_until_checkpoint_then_sigterm(
        args("run"), run / "intra_r1" / "checkpoints", -1)
    assert code == 130, stderr[-3000:]
    assert f"at step {first}" in stderr and "resumed from" in stderr
    assert (run / "inter" / "metrics.json").exists()
    assert 2 <= second < 12 and not (run / "intra_r1" / "metrics.json").exists()
    resumed = train(*args("run")[5:])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"at step {second}" in resumed.stderr
    straight = train(*args("straight")[5:])
    assert straight.returncode == 0, straight.stderr[-3000:]
    for stage in ("inter", "intra_r1"):
        for a, b in zip(_weights(run / stage / "model.keras"),
                        _weights(tmp_path / "straight" / stage / "model.keras")):
            np.testing.assert_array_equal(a, b)
