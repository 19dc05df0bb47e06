"""Flag validation: bad values stop before any work starts, with a clear message."""

import dataclasses
import os
import subprocess
import sys
import uuid

import pytest
from absl import flags

from tf_pixintra import config as config_lib
from tf_pixintra import io_utils
from tf_pixintra.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse(*args):
    flag_values = flags.FlagValues()
    config_lib.define_flags(flag_values)
    flag_values(["train", *args])
    return config_lib.from_flags(flag_values)


def toy(*args):
    return parse("--toyscapes", "--toyscapes_dir=/tmp/x", *args)


def test_defaults_follow_the_paper():
    c = toy()
    assert (c.inter.lr_g, c.intra.lr_g, c.optim.lr_d) == (2.5e-4, 2.4e-4, 1e-4)
    assert (c.inter.lambda_adv_main, c.inter.lambda_adv_aux) == (1e-3, 2e-4)
    assert (c.intra.beta_main, c.intra.beta_aux, c.intra.batch_size) == (1e-3, 2e-4, 4)
    assert (c.optim.momentum, c.optim.weight_decay, c.optim.poly_power) == (0.9, 5e-4, 0.9)
    assert c.pseudo.alpha == 0.85 and c.pseudo.threshold_cap == 0.9
    assert c.intra.kld_lambda == 0.1
    assert c.run.pipeline == config_lib.DEFAULT_PIPELINE


@pytest.mark.parametrize("args, message", [
    (("--alpha=1.5",), "--alpha=1.5"),
    (("--alpha=-0.1",), "--alpha=-0.1"),
    (("--selector=intrada",), "IntraDA baseline needs both"),
    (("--depth=152",), "--depth=152"),
    (("--target_size=512",), "--target_size=512"),
    (("--shard_index=3", "--num_shards=2"), "--shard_index=3"),
    (("--devices=-1",), "--devices=-1"),
    (("--image_every=-5",), "--image_every=-5: expected >= 0"),
    (("--intra_d_output_stride=12",), "--intra_d_output_stride=12: expected one of"),
    (("--intra_lr_d=-1e-3",), "--intra_lr_d=-0.001: expected a finite learning rate"),
    (("--peer_wait_secs=0",), "--peer_wait_secs=0.0: expected > 0"),
])
def test_invalid_values_are_refused(args, message):
    # (Enumerated flags are refused while parsing: tests/test_flag_help.py.)
    with pytest.raises(ConfigError, match=None) as info:
        toy(*args)
    assert message in str(info.value)


@pytest.mark.parametrize("section, change, message", [
    ("model", {"bn_mode": "sync"}, "--bn_mode='sync': expected one of frozen, train"),
    ("run", {"round": 3}, "--round=3: expected one of 1, 2"),
    ("run", {"pipeline": ("inter", "train")}, "--pipeline: unknown value(s) 'train'"),
    ("intra", {"method": "gan"}, "--intra_method='gan': expected one of pla,"),
    ("model", {"width": 0}, "--width=0: expected > 0"),
])
def test_validate_checks_configs_made_in_code(section, change, message):
    """Enumerated values set without flags are refused by the same check."""
    config = toy()
    bad = dataclasses.replace(config, **{section: dataclasses.replace(
        getattr(config, section), **change)})
    with pytest.raises(ConfigError) as info:
        config_lib.validate(bad)
    assert message in str(info.value)


def test_each_section_validates_its_own_fields():
    config_lib.ModelConfig().validate()
    with pytest.raises(ConfigError, match="--momentum=1.0"):
        config_lib.OptimConfig(momentum=1.0).validate()


def test_multi_worker_gives_each_worker_one_pseudo_shard():
    config = config_lib.shard_over_workers(toy(), 1, 3)
    assert (config.pseudo.num_shards, config.pseudo.shard_index) == (3, 1)
    assert config.experiment_dict() == toy().experiment_dict()
    # The flags may say the same thing.
    same = config_lib.shard_over_workers(
        toy("--num_shards=3", "--shard_index=1"), 1, 3)
    assert same.pseudo == config.pseudo


@pytest.mark.parametrize("args, message", [
    (("--num_shards=4",), "--num_shards=4 contradicts the 3 workers"),
    (("--num_shards=3", "--shard_index=2"),
     "--shard_index=2 contradicts this worker's index 1"),
])
def test_multi_worker_refuses_shard_flags_that_contradict_tf_config(args,
                                                                    message):
    with pytest.raises(ConfigError) as info:
        config_lib.shard_over_workers(toy(*args), 1, 3)
    assert message in str(info.value)


def test_missing_data_root_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="--source_root=.*no such directory"):
        parse(f"--source_root={tmp_path / 'nope'}", f"--target_root={tmp_path}")
    # Roots and lists may be tf.io.gfile URLs (TF's in-memory ram:// here).
    url = f"ram://roots-{uuid.uuid4().hex[:8]}"
    io_utils.write_text(f"{url}/gta5/list.txt", "00001.png\n")
    parse(f"--source_root={url}/gta5", f"--source_list={url}/gta5/list.txt",
          f"--target_root={tmp_path}")
    with pytest.raises(ConfigError, match="--target_root=.*no such directory"):
        parse(f"--source_root={url}/gta5", f"--target_root={url}/cityscapes")


def test_cli_stops_before_any_work(tmp_path):
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "tf_pixintra.train", "--toyscapes",
         f"--toyscapes_dir={tmp_path / 'data'}", f"--run_dir={run_dir}",
         "--alpha=2"], cwd=ROOT, capture_output=True, text=True, timeout=300,
        check=False)
    assert result.returncode == 2
    assert "--alpha=2.0: expected a value in [0, 1]" in result.stderr
    assert not run_dir.exists() and not (tmp_path / "data").exists()


def test_run_directory_of_another_config_is_refused(tmp_path):
    from tf_pixintra import train  # pylint: disable=import-outside-toplevel
    first = toy(f"--run_dir={tmp_path}", "--alpha=0.85")
    os.makedirs(tmp_path, exist_ok=True)
    train.check_run_dir(first)
    train.check_run_dir(first)  # same experiment: accepted
    train.check_run_dir(toy(f"--run_dir={tmp_path}", "--alpha=0.85",
                            "--stage=eval", "--checkpoint_every=7"))
    with pytest.raises(ConfigError, match=r"pseudo.alpha: 0.85 -> 0.7"):
        train.check_run_dir(toy(f"--run_dir={tmp_path}", "--alpha=0.7"))


@pytest.mark.parametrize("name, source, alpha", [
    ("gta5_cityscapes.cfg", "gta5", 0.85),
    ("synthia_cityscapes.cfg", "synthia", 0.79),
])
def test_paper_configs_parse_with_the_papers_settings(tmp_path, name, source, alpha):
    c = parse(f"--flagfile={os.path.join(ROOT, 'configs', name)}",
              f"--source_root={tmp_path}", f"--target_root={tmp_path}",
              "--backbone_weights=")
    assert c.data.source_dataset == source and c.pseudo.alpha == alpha
    assert (c.model.depth, c.model.width, c.model.bn_mode) == (101, 1.0, "frozen")
    assert c.data.target_size == (512, 1024)
    assert (c.inter.batch_size, c.intra.batch_size) == (1, 4)
    assert (c.inter.lr_g, c.intra.lr_g) == (2.5e-4, 2.4e-4)
    assert c.intra.method == "cts" and c.intra.kld_lambda == 0.1
    assert c.intra.d_output_stride == 32          # the paper's D


def test_run_dirs_from_before_inter_flip_and_inter_model_stay_valid():
    # Before these settings, Stage I mirrored as --flip said and trained.
    assert {"flip", "model"}.isdisjoint(toy().experiment_dict()["inter"])
    assert {"flip", "model"}.isdisjoint(
        toy("--flip", "--inter_flip").experiment_dict()["inter"])
    assert toy("--flip").experiment_dict()["inter"]["flip"] is False
    assert toy("--inter_flip").experiment_dict()["inter"]["flip"] is True


def test_d_output_stride_is_part_of_the_experiment_when_not_the_papers():
    assert "d_output_stride" not in toy().experiment_dict()["intra"]
    assert toy("--intra_d_output_stride=4").experiment_dict()["intra"][
        "d_output_stride"] == 4


def test_stage_two_d_learning_rate_defaults_to_lr_d_and_old_run_dirs_stay_valid():
    assert "lr_d" not in toy().experiment_dict()["intra"]
    assert toy("--intra_lr_d=1e-3").experiment_dict()["intra"]["lr_d"] == 1e-3


def test_compile_adapter_gives_both_discriminators_the_stage_two_rate():
    from tf_pixintra.stages import common

    class Recorder:
        def compile(self, g_opt, d_main_opt, d_aux_opt, jit_compile):
            self.opts = (g_opt, d_main_opt, d_aux_opt)

    config = toy("--lr_d=1e-4")
    for lr_d, want in ((None, 1e-4), (2e-3, 2e-3)):
        adapter = Recorder()
        common.compile_adapter(adapter, config, 0.01, 100, lr_d)
        rates = [float(o.learning_rate) for o in adapter.opts[1:]]
        # Iteration 0 of the poly schedule: exactly the base rate (float32).
        assert rates == [pytest.approx(want, rel=2 ** -23)] * 2


@pytest.mark.parametrize("name", ["toyscapes.cfg", "toyscapes_smoke.cfg"])
def test_toyscapes_configs_parse(name):
    c = parse(f"--flagfile={os.path.join(ROOT, 'configs', name)}")
    assert c.data.toyscapes and c.run.stage == "all"


def test_control_config_is_the_main_job_on_the_shadows_variant():
    """configs/toyscapes_control.cfg changes the data variant and the run
    directory only; a standard run's identity has no variant key, so run
    directories made before the variants existed stay valid."""
    main = parse(f"--flagfile={os.path.join(ROOT, 'configs', 'toyscapes.cfg')}")
    control = parse(
        f"--flagfile={os.path.join(ROOT, 'configs', 'toyscapes_control.cfg')}")
    assert control.data.toyscapes_variant == "shadows"
    assert control.run.run_dir != main.run.run_dir
    a, b = main.experiment_dict(), control.experiment_dict()
    assert "toyscapes_variant" not in a["data"]
    assert b["data"].pop("toyscapes_variant") == "shadows"
    assert a == b
    with pytest.raises((ConfigError, flags.IllegalFlagValueError),
                       match="toyscapes_variant"):
        toy("--toyscapes_variant=fog")
