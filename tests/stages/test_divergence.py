"""A NaN or infinite loss stops the stage; bad optimiser settings are refused."""

import json
import math
import os
import re
import subprocess
import sys

import pytest
import tensorflow as tf
from absl import flags

from adapter_fixtures import (compile_tiny, make_dataset_fn, stage1_batches,
                              tiny_discriminators, tiny_generator)
from tf_pixintra import config as config_lib
from tf_pixintra import io_utils
from tf_pixintra.adapters.inter import InterDomainAdapter
from tf_pixintra.errors import ConfigError
from tf_pixintra.errors import TrainingDiverged
from tf_pixintra.stages import training

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_a_diverging_run_stops_naming_the_step_and_loss(tmp_path):
    adapter = InterDomainAdapter(tiny_generator(seed=5),
                                 *tiny_discriminators(seed=5))
    compile_tiny(adapter, lr=1e6, decay_steps=6)
    checkpoints = tmp_path / "inter" / "checkpoints"
    with pytest.raises(TrainingDiverged) as info:
        training.fit(adapter, make_dataset_fn(stage1_batches(8)), 6,
                     str(checkpoints), checkpoint_every=1, verbose=0)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'inter'}: training diverged at step ")
    found = re.search(r"at step (\d+): (loss\w*) is (\S+);", message)
    assert found, message
    step = int(found.group(1))
    assert not math.isfinite(float(found.group(3)))
    # Only the steps before the divergence were checkpointed.
    latest = tf.train.latest_checkpoint(str(checkpoints))
    assert latest is None or int(latest.rsplit("-", 1)[1]) < step


def test_json_files_never_hold_a_bare_nan(tmp_path):
    path = tmp_path / "m.json"
    io_utils.write_json(str(path), {"a": float("nan"), "b": [1.0, float("inf")],
                                    "c": {"d": -float("inf"), "e": 2}})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [1.0, None],
                                "c": {"d": None, "e": 2}}


def _parse(*args):
    flag_values = flags.FlagValues()
    config_lib.define_flags(flag_values)
    flag_values(["train", "--toyscapes", "--toyscapes_dir=/tmp/x", *args])
    return config_lib.from_flags(flag_values)


@pytest.mark.parametrize("flag", [
    "--inter_lr_g=0", "--inter_lr_g=-1e-3", "--inter_lr_g=nan",
    "--intra_lr_g=inf", "--lr_d=0", "--weight_decay=-1e-4",
    "--weight_decay=nan", "--momentum=1", "--momentum=-0.1",
    "--momentum=nan", "--stop_grace_secs=0"])
def test_optimiser_settings_are_validated(flag):
    with pytest.raises(ConfigError, match=flag.split("=")[0]):
        _parse(flag)


def test_boundary_settings_are_accepted():
    config = _parse("--momentum=0", "--weight_decay=0")
    assert config.optim.momentum == 0.0 and config.optim.weight_decay == 0.0


@pytest.mark.e2e
def test_cli_stops_a_diverged_stage_with_one_line_and_no_results(tmp_path):
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "tf_pixintra.train", "--flagfile",
         os.path.join(ROOT, "configs", "toyscapes_smoke.cfg"),
         f"--run_dir={run_dir}", f"--toyscapes_dir={tmp_path / 'data'}",
         "--stage=inter", "--inter_lr_g=1e6", "--inter_steps=4",
         "--log_every=0", "--image_every=0"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines()
              if line.startswith("error:")]
    assert len(errors) == 1 and "training diverged at step" in errors[0]
    assert "Traceback" not in result.stderr
    assert not (run_dir / "inter" / "metrics.json").exists()
    assert not (run_dir / "run.json").exists()
    assert not (run_dir / "inter" / "model.keras").exists()
    for root, _, files in os.walk(run_dir):
        for name in files:
            if name.endswith(".json"):
                text = open(os.path.join(root, name), encoding="utf-8").read()
                assert "NaN" not in text and "Infinity" not in text, name
