"""End to end: the whole pipeline on the ToyScapes smoke config (marker e2e)."""

import json
import os
import subprocess
import sys

import pytest

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
    for round_dir in ("pseudo_r1", "pseudo_r2"):
        index = tfrecords.validate_records(
            str(run_dir / round_dir / tfrecords.index_name("target")))
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
