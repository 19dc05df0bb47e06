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


def _diag_result(miou, run_dir, auc, share):
    return {**_result(miou, run_dir),
            "diag": {"diag_auc_d": auc, "diag_adv_grad_share": share}}


def test_report_has_diagnostics_the_positive_control_noise_and_d_settings(repro, tmp_path):
    rows = {"PLA": [_diag_result(20.0, "p0", 0.7, 1e-3), _diag_result(22.0, "p1", 0.9, 3e-3)],
            repro.RERUN: [_result(20.5, "r0"), _result(21.0, "r1")],
            repro.NO_D: [_result(19.0, "n0"), _result(21.5, "n1")]}
    control = {"INTER": [_result(18.0, "ci0"), _result(18.0, "ci1")],
               "PLA": [_diag_result(21.0, "cp0", 0.95, 0.2), _result(20.0, "cp1")],
               repro.NO_D: [_result(20.0, "cn0"), _result(19.0, "cn1")]}
    table = {("pla", 4, 1e-3): {"auc": 0.8, "auc_aux": 0.7, "zcorr": None, "share": 2e-5,
                                "loss_d": 0.4, "auc_curve": [0.6, 0.8], "rise": None}}
    choice = {"stride": 4, "lr_d": 1e-3, "passed": True, "worst_auc": 0.8,
              "double_length": False,
              "beta": {"pla": {"beta_main": 3.0, "beta_aux": 0.6, "measured_share": 4e-5,
                               "predicted_share": 0.12}}}
    args = argparse.Namespace(
        config=os.path.join(ROOT, "configs", "toyscapes.cfg"), work_dir=str(tmp_path),
        note="", report_only=True,
        control_config=os.path.join(ROOT, "configs", "toyscapes_control.cfg"))
    text = repro.report(rows, {}, {}, [0, 1], ["cmd"], 0.0, args, {},
                        control_rows=control, d_settings=(table, choice, "--seed 0"))
    # Diagnostics are means over the seeds that have them.
    assert "| PLA | 21.00 +- 1.41 | 20.00, 22.00 | - | 0.800 | - | - | 2.00e-03 |" in text
    # Run-to-run noise: |20 - 20.5|, |22 - 21| against PLA's std 1.41.
    assert "|difference| per seed 0.50, 1.00 (mean 0.75), against PLA's std over seeds of 1.41" in text
    control_part = text.split("## Positive control")[1]
    assert "| PLA | 20.50 +- 0.71 | 21.00, 20.00 | - | 0.950 | - | - | 2.00e-01 |" in control_part
    assert ("- easy pixels without D (19.50) < PLA (20.50): agrees on the mean; holds on "
            "2 of 2 seed(s); paired difference +1.00 +- 0.00" in control_part)
    assert "`python -m benchmarks.choose_d_settings --seed 0`" in text
    assert "| pla | 4 | 0.001 | 0.800 | 0.700 | - | 0.60 0.80 | 2.00e-05 | 0.400 |" in text
    assert ("Chosen: D output stride 4, D learning rate 0.001 (passes rule 1: AUC 0.800); "
            "Stage II length as configured; pla: beta_main 3, beta_aux 0.6 (share 4.00e-05 "
            "at the config's beta, predicted 0.12)." in text)


def test_d_settings_rule_prefers_the_papers_d_among_those_that_learn(repro):
    from benchmarks import choose_d_settings as cds

    def diag(auc, share=1e-4, rise=0.0):
        return {"auc": auc, "share": share, "rise": rise}
    table = {("pla", 32, 1e-4): diag(0.60), ("cts", 32, 1e-4): diag(0.55),
             ("pla", 4, 1e-4): diag(0.80), ("cts", 4, 1e-4): diag(0.76),
             ("pla", 4, 1e-3): diag(0.95), ("cts", 4, 1e-3): diag(0.90)}
    choice = cds.choose(table, ["pla", "cts"], 1e-3)
    # (4, 1e-4) departs once from the paper's D and passes: chosen over the
    # better (4, 1e-3), which departs twice.
    assert (choice["stride"], choice["lr_d"], choice["passed"]) == (4, 1e-4, True)
    assert not choice["double_length"]
    # Share 1e-4 at beta 1e-3 scales to 0.1 / 1.005 at beta 1, just short of
    # 0.1: the next half decade, 3, for both methods here.
    assert cds.predicted_share(1e-4, 1e-3, 1.0) == pytest.approx(0.1 / 1.005, rel=1e-3)
    assert choice["beta"]["pla"]["beta_main"] == 3.0
    assert choice["beta"]["cts"]["beta_aux"] == pytest.approx(0.6)
    assert cds.beta_flags(choice, "pla") == ["--intra_beta_main=3", "--intra_beta_aux=0.6"]
    assert cds.beta_flags(choice, "none") == []
    # Per method: a CTS share 10x smaller needs a beta 10x larger.
    table[("cts", 4, 1e-4)]["share"] = 1e-5
    choice = cds.choose(table, ["pla", "cts"], 1e-3)
    assert (choice["beta"]["pla"]["beta_main"], choice["beta"]["cts"]["beta_main"]) == (3.0, 30.0)
    # Nothing passes: the highest worst-case AUC; a rising AUC doubles the length.
    table = {("pla", 32, 1e-4): diag(0.6, rise=0.05), ("cts", 32, 1e-4): diag(0.7, rise=0.0),
             ("pla", 4, 1e-4): diag(0.5), ("cts", 4, 1e-4): diag(0.9)}
    choice = cds.choose(table, ["pla", "cts"], 1e-3)
    assert (choice["stride"], choice["passed"], choice["double_length"]) == (32, False, True)


def test_runner_adds_the_chosen_beta_to_arms_of_that_method_only(repro, tmp_path):
    runner = repro.Runner("configs/toyscapes.cfg", str(tmp_path), [], str(tmp_path / "log"),
                          report_only=True,
                          method_flags={"pla": ["--intra_beta_main=1"],
                                        "cts": ["--intra_beta_main=10"]})
    for seed, arm in ((0, "PLA"), (0, repro.NO_D), (0, "IntraDA")):
        pipeline, flags, borrow = repro.ARMS[arm]
        with pytest.raises(SystemExit, match="summary.json: missing"):
            runner.run(seed, arm, pipeline, flags, borrow)
    pla, no_d, intrada = runner.commands
    assert pla.endswith("--intra_method=pla --intra_beta_main=1")
    assert "--intra_beta_main" not in no_d
    # IntraDA keeps its paper weights whatever the configs' beta.
    assert "--intra_beta_main=0.001 --intra_beta_aux=0.0002" in intrada
    assert "--intra_beta_main=10" not in intrada


def test_pla_arms_run_at_plas_beta_without_a_d_settings_file(repro, tmp_path):
    """The configs' beta is CTS's (10 / 2); without --d_settings the PLA
    arms must still run at PLA's own (1 / 0.2), not silently at CTS's."""
    runner = repro.Runner("configs/toyscapes.cfg", str(tmp_path), [], str(tmp_path / "log"),
                          report_only=True, method_flags=repro.method_flags(None))
    for arm in ("PLA", repro.RERUN, "PLA + CTS"):
        pipeline, flags, borrow = repro.ARMS[arm]
        with pytest.raises(SystemExit, match="summary.json: missing"):
            runner.run(0, arm, pipeline, flags, borrow)
    pla, rerun, cts = runner.commands
    for command in (pla, rerun):
        assert command.endswith("--intra_method=pla --intra_beta_main=1 --intra_beta_aux=0.2")
    assert "--intra_beta_main" not in cts   # the configs' beta is CTS's


def test_d_settings_read_only_the_training_diagnostics(tmp_path):
    import tensorflow as tf
    from benchmarks import choose_d_settings as cds
    stage = tmp_path / "intra_r1"
    writer = tf.summary.create_file_writer(str(stage / "tb"))
    with writer.as_default():
        for step, auc in ((50, 0.6), (100, 0.7), (150, 0.74)):
            tf.summary.scalar("train/diag_auc_d", auc, step=step)
            tf.summary.scalar("eval/miou", 99.0, step=step)   # never read
    writer.close()
    (stage / "metrics.json").write_text(json.dumps(
        {"final_logs": {"diag_auc_d": 0.74, "diag_adv_grad_share": 2e-5, "loss_d": 0.5},
         "target_miou": 99.0}))
    d = cds.diagnostics(str(tmp_path))
    assert d["auc_curve"] == pytest.approx([0.6, 0.7, 0.74])
    assert d["rise"] == pytest.approx(0.14) and d["share"] == 2e-5
    assert "miou" not in json.dumps(d)
    assert list(cds.read_scalars(str(stage / "tb"))) == ["train/diag_auc_d"]
