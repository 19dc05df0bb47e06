"""--inter_model (start Stage II from an imported INTER), --inter_flip, the
paper configs that use them, and copying an INTER generator into Stage II's."""

import os

import numpy as np
import pytest
from absl import flags

from tf_pixintra import config as config_lib
from tf_pixintra import run_layout
from tf_pixintra.errors import ConfigError
from tf_pixintra.errors import DataError
from tf_pixintra.models import build_deeplab_v2
from tf_pixintra.stages import common

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def parse(*args):
    flag_values = flags.FlagValues()
    config_lib.define_flags(flag_values)
    flag_values(["train", "--toyscapes", "--toyscapes_dir=/tmp/x", *args])
    return config_lib.from_flags(flag_values)


@pytest.fixture()
def inter_keras(tmp_path):
    path = tmp_path / "inter.keras"
    path.write_bytes(b"a model")
    return str(path)


def test_inter_model_replaces_stage_one(inter_keras, tmp_path):
    config = parse(f"--inter_model={inter_keras}",
                   "--pipeline=pseudo,intra,pseudo,intra,eval,export")
    assert config.inter.model == inter_keras
    run_dir = str(tmp_path)
    assert run_layout.model_for_round(config, run_dir, 1) == inter_keras
    assert run_layout.model_for_round(config, run_dir, 2) == os.path.join(
        run_dir, "intra_r1", "model.keras")
    assert run_layout.model_for_round(parse(), run_dir, 1) == os.path.join(
        run_dir, "inter", "model.keras")
    # A single --stage=pseudo --round=1 takes it in place of the pipeline's inter.
    single = parse(f"--inter_model={inter_keras}", "--stage=pseudo")
    assert run_layout.model_for_round(single, run_dir, 1) == inter_keras


@pytest.mark.parametrize("args,message", [
    (("--inter_model=m.pth", "--pipeline=pseudo"), "expected a .keras file"),
    (("--inter_model=/nonexistent/m.keras", "--pipeline=pseudo"),
     "no such file"),
    (("--inter_model={inter}",), "runs 'inter'; leave it out"),
    (("--inter_model={inter}", "--stage=source_only"),
     "--stage runs 'source_only'"),
])
def test_inter_model_errors(inter_keras, args, message):
    args = [a.format(inter=inter_keras) for a in args]
    with pytest.raises(ConfigError, match=message):
        parse(*args)


def test_stage_one_flip_is_its_own_flag():
    config = parse("--flip")
    assert config.data.flip and not config.inter.flip
    assert parse("--inter_flip").inter.flip


@pytest.mark.parametrize("name,checkpoint", [
    ("gta5_cityscapes_from_advent", "gta2cityscapes_advent.keras"),
    ("synthia_cityscapes_from_bdl", "synthia_bdl.keras"),
])
def test_paper_stage_two_configs_parse(tmp_path, monkeypatch, name,
                                       checkpoint):
    """The configs parse once their files exist (no Stage I, no source)."""
    monkeypatch.chdir(tmp_path)
    os.symlink(os.path.join(REPO, "configs"), "configs")
    for sub in ("data/cityscapes", "data/weights"):
        os.makedirs(sub)
    for f in (checkpoint, "DeepLab_resnet_pretrained_imagenet.pth",
              "DeepLab_resnet_pretrained_init-f81d91e8.pth"):
        open(os.path.join("data/weights", f), "wb").close()
    fv = flags.FlagValues()
    config_lib.define_flags(fv)
    fv(["train", f"--flagfile=configs/{name}.cfg"])
    config = config_lib.from_flags(fv)
    assert config.inter.model.endswith(checkpoint)
    assert config.run.pipeline == ("pseudo", "intra", "pseudo", "intra",
                                   "eval", "export")
    assert config.model.backbone_weights.endswith(".pth")
    assert not config.inter.flip and config.data.flip


@pytest.fixture(scope="module")
def generators():
    kw = {"depth": 18, "width": 0.0625}
    return (build_deeplab_v2(19, multi_level=False, seed=1, **kw),
            build_deeplab_v2(19, seed=2, **kw),
            build_deeplab_v2(16, multi_level=False, seed=3, **kw))


def test_single_level_inter_into_multi_level_generator(generators):
    single, multi, _ = generators
    aux_before = multi.get_layer("head_aux_d6").get_weights()
    common.copy_generator_weights(single, multi)
    for layer in single.layers:
        for a, b in zip(layer.get_weights(),
                        multi.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(aux_before, multi.get_layer("head_aux_d6").get_weights()):
        np.testing.assert_array_equal(a, b)


def test_mismatching_inter_is_refused(generators):
    single, multi, sixteen = generators
    with pytest.raises(DataError, match="layer 'head_main_d6' weights"):
        common.copy_generator_weights(sixteen, single)
    with pytest.raises(DataError, match="layer 'head_aux_d6' has no "
                       "counterpart"):
        common.copy_generator_weights(multi, single)
