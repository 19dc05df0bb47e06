"""The reproduction report's --quick mode runs the paper's arms and writes the report."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.e2e
def test_quick_reproduction_runs_every_arm(tmp_path):
    out = tmp_path / "RESULTS.md"
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "reproduce_toyscapes.py"),
         "--quick", "--seeds", "0", f"--work_dir={tmp_path / 'work'}",
         f"--out={out}"], cwd=ROOT, capture_output=True, text=True,
        timeout=1500, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = out.read_text()
    for arm in ("source-only", "INTER", "IntraDA", "PLA", "PLA + CTS", "+ T=1",
                "+ KLD"):
        assert f"| {arm} |" in text, arm
    assert "Table 5" in text and "Prop. = 1" in text
    assert "INTER (" in text and ("agrees" in text)
    # The report can be rewritten from the run directories without training.
    again = tmp_path / "AGAIN.md"
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "reproduce_toyscapes.py"),
         "--quick", "--seeds", "0", f"--work_dir={tmp_path / 'work'}",
         f"--out={again}", "--report_only"], cwd=ROOT, capture_output=True, text=True,
        timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    table = text.split("## Commands")[0].split("## Target-val")[1]
    assert table == again.read_text().split("## Commands")[0].split("## Target-val")[1]
    # Borrowed stages are shared, not retrained: T=1 links PLA + CTS's round one.
    link = tmp_path / "work" / "seed0" / "t_1" / "intra_r1"
    assert link.is_symlink()
