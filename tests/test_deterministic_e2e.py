"""--deterministic: the same command twice writes the same metrics.json (e2e)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The smoke config cut to its bone: two steps per training stage on a few
# images, with Stage I, pseudo labels and Stage II (CTS) with every
# diagnostic (the gradient share on step 0, AUC and Z correlation logged).
CUT = ("--pipeline=inter,pseudo,intra", "--inter_steps=2", "--intra_steps=2",
       "--toyscapes_counts=6,6,2", "--log_every=1", "--image_every=0",
       "--checkpoint_every=100", "--intra_diag_every=1", "--deterministic")
FILES = ("inter/metrics.json", "pseudo_r1/summary.json",
         "intra_r1/metrics.json")


def train(run_dir, data_dir):
    return subprocess.run(
        [sys.executable, "-m", "tf_pixintra.train", "--flagfile",
         os.path.join(ROOT, "configs", "toyscapes_smoke.cfg"),
         f"--run_dir={run_dir}", f"--toyscapes_dir={data_dir}", *CUT],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, check=False)


@pytest.mark.e2e
@pytest.mark.slow   # two pipeline runs, ~80 s on 2 cores: pytest -m slow
def test_same_command_twice_gives_identical_metrics(tmp_path):
    data_dir = tmp_path / "data"
    outputs = []
    for name in ("a", "b"):
        result = train(tmp_path / name, data_dir)
        assert result.returncode == 0, result.stderr[-4000:]
        outputs.append({f: (tmp_path / name / f).read_bytes() for f in FILES})
    for f in FILES:
        assert outputs[0][f] == outputs[1][f], f
    logs = json.loads(outputs[0]["intra_r1/metrics.json"])["final_logs"]
    for key in ("diag_auc_d", "diag_auc_d_aux", "diag_zcorr_d",
                "diag_adv_grad_share"):
        assert key in logs, key
    assert 0.0 <= logs["diag_auc_d"] <= 1.0
    assert 0.0 < logs["diag_adv_grad_share"] < 1.0
