"""The reproduction report's --quick mode runs the paper's arms and writes the report.

The full quick sweep (every arm and the Table 5 sweep, ~4 min on 2 cores) is
marked `slow`; CI runs the small form: three arms, one of which borrows
another's stage, and the report rewritten from the run directories.
"""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def reproduce(tmp_path, out, *args, timeout=1500):
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.reproduce_toyscapes",
         "--quick", "--seeds", "0", f"--work_dir={tmp_path / 'work'}",
         f"--out={out}", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=timeout, check=False)


def assert_rewritten_alike(tmp_path, text, *args):
    """--report_only writes the same tables from the run directories."""
    again = tmp_path / "AGAIN.md"
    result = reproduce(tmp_path, again, "--report_only", *args, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    table = text.split("## Commands")[0].split("## Target-val")[1]
    assert table == again.read_text().split("## Commands")[0].split("## Target-val")[1]


@pytest.mark.e2e
def test_quick_reproduction_small_form(tmp_path):
    arms = ("--arms=source-only,INTER,PLA", "--no_sweep")
    out = tmp_path / "RESULTS.md"
    result = reproduce(tmp_path, out, *arms)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = out.read_text()
    for arm in ("source-only", "INTER", "PLA"):
        assert f"| {arm} |" in text, arm
    assert "| IntraDA |" not in text
    assert_rewritten_alike(tmp_path, text, *arms)
    # Borrowed stages are shared, not retrained: PLA links INTER's Stage I.
    assert (tmp_path / "work" / "seed0" / "pla" / "inter").is_symlink()


@pytest.mark.e2e
@pytest.mark.slow   # ~4 min on 2 cores: pytest -m slow
def test_quick_reproduction_runs_every_arm(tmp_path):
    out = tmp_path / "RESULTS.md"
    result = reproduce(tmp_path, out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = out.read_text()
    for arm in ("source-only", "INTER", "IntraDA", "PLA", "PLA + CTS", "+ T=1",
                "+ KLD"):
        assert f"| {arm} |" in text, arm
    assert "Table 5" in text and "Prop. = 1" in text
    assert "INTER (" in text and ("agrees" in text)
    assert_rewritten_alike(tmp_path, text)
    # Borrowed stages are shared, not retrained: T=1 links PLA + CTS's round one.
    link = tmp_path / "work" / "seed0" / "t_1" / "intra_r1"
    assert link.is_symlink()
