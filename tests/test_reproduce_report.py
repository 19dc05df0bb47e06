"""The reproduction report's pure parts: train.log timing, verdicts, Table 5."""

import argparse
import importlib.util
import json
import os
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def repro():
    spec = importlib.util.spec_from_file_location(
        "reproduce_toyscapes", os.path.join(ROOT, "benchmarks", "reproduce_toyscapes.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _absl(moment):
    """An absl log prefix for a local-time struct_time."""
    return time.strftime("I%m%d %H:%M:%S.250000 1 train.py:1] x", moment)


def test_logged_train_seconds_sums_invocations_per_run_dir(repro, tmp_path):
    base = time.mktime((2026, 11, 27, 4, 0, 0, 0, 0, -1))
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    lines = [
        f"$ python -m tf_pixintra.train --run_dir={a} --seed=0",
        "WARNING: no timestamp here",
        f"I0000 00:00:{base:.6f}   1 cpu_feature_guard.cc:1] start",
        _absl(time.localtime(base + 100)),
        "stage   target mIoU",
        f"$ python -m tf_pixintra.train --run_dir={b}",
        _absl(time.localtime(base + 200)),
        _absl(time.localtime(base + 260)),
        f"$ python -m tf_pixintra.train --run_dir={a}",   # a second, reusing run
        _absl(time.localtime(base + 300)),
        _absl(time.localtime(base + 308)),
        "$ python -m tf_pixintra.train --run_dir=/never/logged",
    ]
    seconds = repro.logged_train_seconds(lines, 2026)
    # a: 100.25 s (epoch stamp has no .25) + 8 s; b: 60 s; no stamps -> absent.
    assert seconds[a] == pytest.approx(108.25, abs=1e-3)
    assert seconds[b] == pytest.approx(60.0, abs=1e-3)
    assert "/never/logged" not in seconds


def _result(miou, run_dir):
    return {"miou": miou, "iou": {"road": miou}, "run_dir": run_dir}


def test_report_verdicts_count_seeds_and_table5_uses_main_arms(repro, tmp_path):
    rows = {"INTER": [_result(20.0, "i0"), _result(22.0, "i1")],
            "IntraDA": [_result(21.0, "d0"), _result(21.5, "d1")],
            "PLA": [_result(19.0, "p0"), _result(21.0, "p1")]}
    sweep = {"PLA @ alpha 1.0": [_result(23.0, "s0"), _result(25.0, "s1")],
             "self-training, Prop. = 1": [_result(18.0, "t0"), _result(20.0, "t1")]}
    args = argparse.Namespace(config=os.path.join(ROOT, "configs", "toyscapes.cfg"),
                              work_dir=str(tmp_path), note="shared machine",
                              report_only=False)
    text = repro.report(rows, sweep, {0.85: 0.5, 1.0: 0.6}, [0, 1], ["cmd"], 60.0,
                        args, {"i0": 60.0, "i1": 120.0}, main_alpha=0.85)
    # Means: INTER 21.0 < IntraDA 21.25, but per seed only 20 < 21 holds (22 > 21.5).
    assert ("- INTER (21.00) < IntraDA (21.25): agrees on the mean; holds on 1 of 2 seed(s); "
            "paired difference +0.25 +- 1.06" in text)
    assert "- IntraDA (21.25) < PLA (20.00): DOES NOT agree on the mean; holds on 0 of 2" in text
    assert "| INTER | 21.00 +- 1.41 | 20.00, 22.00 | 3.0 |" in text
    assert "| PLA | 20.00 +- 1.41 | 19.00, 21.00 | - |" in text
    assert "Note: shared machine" in text
    # Table 5: alpha 0.85 comes from the main PLA arm, 1.0 from the sweep.
    assert "| method | alpha 0.85 (Prop. 0.50) | alpha 1.0 (Prop. 0.60) | Prop. = 1 |" in text
    assert "| PLA | 20.00 +- 1.41 | 24.00 +- 1.41 | 19.00 +- 1.41 |" in text
    # IntraDA has no sweep arm here, so it has no Table 5 row.
    assert "| IntraDA | 21.25" not in text.split("Table 5")[1]


def test_report_only_names_the_missing_summary(repro, tmp_path):
    with pytest.raises(SystemExit, match="summary.json: missing; arm 'PLA' of seed 3"):
        repro.Runner.collect(str(tmp_path / "seed3" / "pla"), 3, "PLA")
    run = tmp_path / "ok"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps(
        {"pseudo_r1": {"alpha_sweep": {}},
         "intra_r1": {"target_miou": 30.5, "target_iou": {"road": 61.0}}}))
    result = repro.Runner.collect(str(run), 0, "PLA")
    assert result["miou"] == 30.5 and result["run_dir"] == str(run)


def test_shown_argv_hides_the_note_text(repro):
    assert (repro._shown_argv(["--seeds", "0,1", "--note", "a b", "--report_only"])
            == '--seeds 0,1 --note "(Note below)" --report_only')
    assert repro._shown_argv(["--note=x y"]) == '--note "(Note below)"'
