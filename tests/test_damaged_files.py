"""Damaged files get one line naming the path (issue 17, item 6)."""

import io
import json
import os
import zipfile

import pytest

from tf_pixintra import config as config_lib
from tf_pixintra import inference
from tf_pixintra import io_utils
from tf_pixintra import models
from tf_pixintra import run_layout
from tf_pixintra import train
from tf_pixintra.errors import ConfigError, DataError
from tf_pixintra.stages import common


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.keras"
    models.build_deeplab_v2(19, depth=18, width=0.125, seed=1).save(str(path))
    return path.read_bytes()


def damaged(data):
    """Zero bytes, cut in half, and a flipped byte inside the archive."""
    flipped = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo("config.json")
    start = info.header_offset + 30 + len(info.filename) + 10
    flipped[start] ^= 0xFF
    return {"empty": b"", "truncated": data[:len(data) // 2],
            "corrupt": bytes(flipped)}


def test_damaged_model_keras_is_named_with_a_recovery(tmp_path, model_bytes):
    stage_dir = tmp_path / "run" / "inter"
    (stage_dir / "checkpoints").mkdir(parents=True)
    path = stage_dir / "model.keras"
    for kind, data in damaged(model_bytes).items():
        path.write_bytes(data)
        with pytest.raises(DataError) as info:
            common.load_generator(str(path))
        message = str(info.value)
        assert message.startswith(f"{path}: damaged model file"), (kind, message)
        assert f"{len(data)} bytes" in message
        assert f"delete it and {stage_dir / 'metrics.json'}" in message
        with pytest.raises(DataError, match="damaged model file"):
            inference.load_model(str(path))
    path.write_bytes(model_bytes)            # an intact file still loads
    assert common.load_generator(str(path)).name


def make_config(run_dir, inter_batch=1, intra_batch=4, **run):
    return config_lib.Config(
        data=config_lib.DataConfig(), model=config_lib.ModelConfig(),
        optim=config_lib.OptimConfig(),
        inter=config_lib.InterConfig(batch_size=inter_batch),
        pseudo=config_lib.PseudoConfig(),
        intra=config_lib.IntraConfig(batch_size=intra_batch),
        run=config_lib.RunConfig(run_dir=str(run_dir), **run))


def test_empty_config_json_is_named_and_its_advice_works(tmp_path):
    config = make_config(tmp_path)
    path = tmp_path / run_layout.CONFIG_FILE
    path.write_text("")
    with pytest.raises(DataError) as info:
        train.check_run_dir(config)
    assert str(info.value).startswith(f"{path}: damaged JSON file (empty file, "
                                      "0 bytes)")
    assert "delete it and run the same command" in str(info.value)
    os.remove(path)                          # the advice
    train.check_run_dir(config)
    assert io_utils.read_json(str(path)) == config.experiment_dict()


def test_truncated_metrics_json_is_named(tmp_path):
    path = tmp_path / "metrics.json"
    text = json.dumps({"stage": "eval", "target_miou": 12.5}, indent=2)
    path.write_text(text[:len(text) // 2])
    with pytest.raises(DataError) as info:
        run_layout.completed(str(tmp_path))
    assert str(info.value).startswith(f"{path}: damaged JSON file (")
    assert "delete it and run the same command" in str(info.value)
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(DataError, match="not UTF-8"):
        io_utils.read_json(str(path))


def test_batch_size_that_does_not_divide_over_the_replicas(tmp_path):
    config = make_config(tmp_path, inter_batch=3, strategy="mirrored", devices=2)
    with pytest.raises(ConfigError, match=r"--inter_batch_size=3 does not divide "
                       r"over 2 replicas .*expected a multiple of 2"):
        config_lib.check_batch_sizes(config, [("inter", 1), ("intra", 1)], 2)
    # Only the stages that run are checked; one replica takes any batch.
    config_lib.check_batch_sizes(config, [("pseudo", 1), ("intra", 1)], 2)
    config_lib.check_batch_sizes(config, [("inter", 1)], 1)
