"""Every training flag explains itself; enumerations are checked by absl from
one definition each (tf_pixintra.choices); --helpshort groups by stage."""

import dataclasses
import os
import subprocess
import sys

import pytest
from absl import flags

from tf_pixintra import choices
from tf_pixintra import config as config_lib
from tf_pixintra import flag_help

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _flag_values():
    flag_values = flags.FlagValues()
    config_lib.define_flags(flag_values)
    return flag_values


def _project_flags():
    """(flag name, config path) of every flag that sets a config field."""
    # pylint: disable=protected-access
    return [(config_lib._flag_name(section, field.name),
             f"{section}.{field.name}")
            for section, cls in config_lib._SECTIONS
            for field in dataclasses.fields(cls)]


def test_every_flag_has_a_real_help_text():
    flag_values = _flag_values()
    for name, path in _project_flags():
        text = flag_values[name].help
        assert text != path and path not in text, (name, text)
        assert len(text.split()) >= 5, (name, text)


@pytest.mark.parametrize("flag, value, allowed", [
    ("stage", "intro", config_lib.STAGES),
    ("bn_mode", "batch", choices.BN_MODES),
    ("intra_method", "gan", choices.INTRA_METHODS),
    ("inter_variant", "dann", choices.INTER_VARIANTS),
    ("source_dataset", "kitti", choices.DATASETS),
    ("strategy", "tpu", choices.STRATEGIES),
])
def test_enum_flags_refuse_a_bad_value_naming_the_allowed_ones(flag, value,
                                                               allowed):
    flag_values = _flag_values()
    with pytest.raises(flags.IllegalFlagValueError) as info:
        flag_values(["train", f"--{flag}={value}"])
    message = str(info.value)
    assert f"--{flag}={value}" in message
    assert "|".join(allowed) in message


@pytest.mark.parametrize("args, message", [
    (("--pipeline=inter,train",), "unknown value(s) 'train'"),
    (("--export_tflite=fp32,int4",), "unknown value(s) 'int4'"),
    (("--verbose=0",), "--verbose was renamed --keras_verbose"),
])
def test_list_enums_and_the_old_verbose_flag_are_refused(args, message):
    with pytest.raises(flags.IllegalFlagValueError, match=None) as info:
        _flag_values()(["train", *args])
    assert message in str(info.value)


def test_keras_verbose_values_are_checked():
    flag_values = _flag_values()
    flag_values(["train", "--toyscapes", "--toyscapes_dir=/tmp/x",
                 "--keras_verbose=3"])
    with pytest.raises(config_lib.ConfigError, match="--keras_verbose=3"):
        config_lib.from_flags(flag_values)


def test_helpshort_groups_every_flag_by_stage():
    flag_values = _flag_values()
    text = config_lib.grouped_help(flag_values)
    headings = [line[:-1] for line in text.splitlines()
                if line and not line.startswith(" ") and line.endswith(":")]
    assert headings == [t for t, _ in flag_help.GROUPS] + [
        flag_help.OTHER_GROUP]

    def section_of(flag):
        title = None
        for line in text.splitlines():
            if line in (h + ":" for h in headings):
                title = line[:-1]
            if line.startswith(f"  --{flag}:") or \
                    line.startswith(f"  --[no]{flag}:"):
                return title
        return None

    assert section_of("inter_lambda_adv_main").startswith("Stage I:")
    assert section_of("alpha").startswith("Pseudo labels")
    assert section_of("intra_beta_main").startswith("Stage II:")
    assert section_of("eval_scales").startswith("Evaluation")
    for name, _ in _project_flags():
        assert section_of(name) is not None, name
        assert sum(line.startswith((f"  --{name}:", f"  --[no]{name}:"))
                   for line in text.splitlines()) == 1, name


def test_cli_helpshort_and_bad_enum_exit_codes():
    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "tf_pixintra.train", *a], cwd=ROOT,
        capture_output=True, text=True, timeout=120, check=False)
    help_run = run("--helpshort")
    assert help_run.returncode == 0
    assert "Stage II: intra (Sec 4.2):" in help_run.stdout
    bad = run("--toyscapes", "--toyscapes_dir=/tmp/x", "--selector=best")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "error: flag --selector=best: value should be one of "
        "<class_thresholds|ias|intrada>"]
