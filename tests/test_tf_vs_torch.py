"""benchmarks/tf_vs_torch.py: the table of TF vs PyTorch runs."""

from benchmarks import tf_vs_torch


def _run(framework, config, load, sup, st1, st2, g_params=100):
    return {"framework": framework, "config": config,
            "load_before": [load, 0.0, 0.0], "returncode": 0,
            "seconds_per_step": {"supervised": sup, "stage1": st1,
                                 "stage2": st2},
            "generator_parameters": g_params,
            "generator_trainable_parameters": 90,
            "discriminator_parameters": 50}


def test_table_gives_best_and_median_of_each_side():
    runs = [
        _run("tf", "tiny", 0.50, 0.2, 0.6, 0.4),
        _run("torch", "tiny", 0.75, 0.1, 0.4, 0.2),
        _run("tf", "tiny", 0.25, 0.3, 0.9, 0.5),
        _run("torch", "tiny", 1.00, 0.2, 0.2, 0.4),
        _run("tf", "tiny", 0.40, 0.4, 0.3, 0.6),
        _run("torch", "tiny", 0.60, 0.4, 0.6, 0.8),
        # A failed run counts nowhere (not even in the load range).
        {"framework": "torch", "config": "tiny", "load_before": [9.0, 0, 0],
         "returncode": 1},
        _run("tf", "paper", 2.00, 8.0, 16.0, 10.0),
        _run("torch", "paper", 2.50, 4.0, 10.0, 5.0),
    ]
    lines = tf_vs_torch.markdown_table(runs)
    assert lines[0].startswith("| config | kind | TF s/step best |")
    rows = [line for line in lines if line.startswith(("| tiny", "| paper"))]
    # tiny supervised: TF best 0.2, median 0.3; PyTorch best 0.1, median 0.2.
    assert rows[0] == ("| tiny | supervised | 0.2000 | 0.3000 | 0.1000 | "
                       "0.2000 | 2.00 | 1.50 | 0.25-1.00 |")
    # stage1: TF {0.6, 0.9, 0.3}, PyTorch {0.4, 0.2, 0.6}.
    assert rows[1] == ("| tiny | stage1 | 0.3000 | 0.6000 | 0.2000 | "
                       "0.4000 | 1.50 | 1.50 | 0.25-1.00 |")
    assert rows[2].startswith("| tiny | stage2 | 0.4000 | 0.5000 | 0.2000 | "
                              "0.4000 | 2.00 | 1.25 |")
    assert rows[3] == ("| paper | supervised | 8.0000 | 8.0000 | 4.0000 | "
                       "4.0000 | 2.00 | 2.00 | 2.00-2.50 |")
    assert len(rows) == 6
    assert "Runs: 4 TF, 4 PyTorch" in lines[-1]


def test_table_notes_weight_counts_that_differ():
    runs = [_run("tf", "tiny", 0.1, 1, 1, 1, g_params=100),
            _run("torch", "tiny", 0.1, 1, 1, 1, g_params=101)]
    lines = tf_vs_torch.markdown_table(runs)
    assert lines[-1] == ("tiny: generator_parameters differs (TF [100], "
                         "PyTorch [101])")
    runs[1]["generator_parameters"] = 100
    assert "differs" not in "\n".join(tf_vs_torch.markdown_table(runs))


def test_a_side_without_runs_gives_no_row():
    lines = tf_vs_torch.markdown_table([_run("tf", "tiny", 0.1, 1, 1, 1)])
    assert not [line for line in lines if line.startswith("| tiny")]


def test_commands_pass_steps_and_warmup_through():
    cmd = tf_vs_torch.command("torch", "r101_256", "out.json", steps=4,
                              warmup=0)
    assert cmd[1:] == ["-m", "benchmarks.torch_step", "--config", "r101_256",
                       "--json", "out.json", "--steps", "4", "--warmup", "0"]
    cmd = tf_vs_torch.command("tf", "tiny", "o.json", torch_threads=1)
    assert cmd[1:] == ["-m", "benchmarks.train_step", "--config", "tiny",
                       "--json", "o.json"]
    cmd = tf_vs_torch.command("torch", "tiny", "o.json", torch_threads=1)
    assert cmd[-2:] == ["--threads", "1"]
