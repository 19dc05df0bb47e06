"""The run directory's names and the stage graph: the plan of a pipeline,
which model labels which pseudo round, and the pipelines config refuses."""

import os
import subprocess
import sys

import pytest
from absl import flags

from tf_pixintra import config as config_lib
from tf_pixintra import run_layout
from tf_pixintra.errors import ConfigError


def parse(*args):
    flag_values = flags.FlagValues()
    config_lib.define_flags(flag_values)
    flag_values(["train", "--toyscapes", "--toyscapes_dir=/tmp/x", *args])
    return config_lib.from_flags(flag_values)


def test_plan_numbers_the_rounds_of_the_stages_that_have_them():
    config = parse("--pipeline=source_only,inter,pseudo,intra,pseudo,intra,"
                   "eval,export")
    assert run_layout.plan(config.run) == [
        ("source_only", 1), ("inter", 1), ("pseudo", 1), ("intra", 1),
        ("pseudo", 2), ("intra", 2), ("eval", 1), ("export", 1)]
    assert [run_layout.stage_dir_name(*step)
            for step in run_layout.plan(config.run)] == [
        "source_only", "inter", "pseudo_r1", "intra_r1", "pseudo_r2",
        "intra_r2", "eval", "export"]
    assert run_layout.plan(parse("--stage=intra", "--round=2").run) == [
        ("intra", 2)]


def test_config_stages_are_the_table_of_stages():
    assert config_lib.PIPELINE_STAGES == tuple(run_layout.STAGES)
    assert config_lib.STAGES == ("all", *run_layout.STAGES)


@pytest.mark.parametrize("pipeline,round_index,model_dir", [
    ("inter,pseudo,intra,pseudo,intra,eval,export", 1, "inter"),
    ("inter,pseudo,intra,pseudo,intra,eval,export", 2, "intra_r1"),
    ("source_only,pseudo,intra", 1, "source_only"),
    ("source_only,inter,pseudo,intra", 1, "inter"),
    ("source_only,pseudo,pseudo", 2, "source_only"),
    # A round past the pipeline's (--stage=pseudo --round=2): the last model.
    ("inter,pseudo,intra,eval", 2, "intra_r1"),
])
def test_a_pseudo_round_labels_with_the_training_stage_before_it(
        pipeline, round_index, model_dir):
    config = parse(f"--pipeline={pipeline}")
    assert run_layout.model_for_round(config, "/run", round_index) == \
        os.path.join("/run", model_dir, run_layout.MODEL_FILE)


@pytest.mark.parametrize("args", [
    ("--pipeline=pseudo,intra",),
    ("--pipeline=eval,pseudo,intra,eval",),
    ("--pipeline=pseudo,intra", "--stage=pseudo"),
    ("--pipeline=eval", "--stage=intra", "--intra_init=inter"),
])
def test_a_pseudo_round_without_a_model_is_a_config_error(args):
    with pytest.raises(ConfigError, match="no model makes round 1's pseudo "
                       "labels; put inter or source_only before its pseudo, "
                       "or set --inter_model"):
        parse(*args)


def test_stages_without_pseudo_labels_need_no_model():
    parse("--pipeline=eval,export")
    parse("--pipeline=eval", "--stage=intra")     # --intra_init=fresh


def test_the_layout_and_train_help_load_no_tensorflow():
    """run_layout serves evaluate's TF-free scoring path and --help."""
    code = ("import sys, tf_pixintra.run_layout, tf_pixintra.evaluate, "
            "tf_pixintra.train; print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], check=True,
                         capture_output=True, text=True).stdout
    assert out.strip() == "False"
