"""Recovery advice that works (issue 17, item 5): each test follows the advice.

- A deleted pseudo-label index or a truncated shard: Stage II says to run
  `--stage=pseudo --round=N`, which re-makes them (here: `pseudo_stage.run`,
  what that command runs), without the cached predictions of the first run.
- A damaged newest checkpoint: the older one is restored; with none left,
  the message says to delete the checkpoint directory.
- A first run on a wrong root writes no config.json, so the corrected
  command is not refused.
"""

import json
import os
import shutil

import pytest
import tensorflow as tf
from absl import logging

from adapter_fixtures import compile_tiny, tiny_discriminators, tiny_generator
from tf_pixintra import config as config_lib
from tf_pixintra import models
from tf_pixintra import run_layout
from tf_pixintra import train
from tf_pixintra.adapters.inter import InterDomainAdapter
from tf_pixintra.data import toyscapes
from tf_pixintra.errors import DataError
from tf_pixintra.stages import common
from tf_pixintra.stages import intra_stage
from tf_pixintra.stages import pseudo_stage
from tf_pixintra.stages import sources

SIZE = (32, 64)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Four ToyScapes target images and a saved tiny generator."""
    root = tmp_path_factory.mktemp("recovery")
    toyscapes.ensure_toyscapes(str(root / "toyscapes"), seed=0, num_source=2,
                               num_target=4, num_val=1, height=SIZE[0],
                               width=SIZE[1], workers=1)
    model_path = str(root / "model.keras")
    models.build_deeplab_v2(19, depth=18, width=0.125, seed=3).save(model_path)
    return root, model_path


def make_config(root, run_dir, **data):
    data.setdefault("toyscapes", True)
    data.setdefault("toyscapes_dir", str(root / "toyscapes"))
    return config_lib.Config(
        data=config_lib.DataConfig(toyscapes_counts=(2, 4, 1),
                                   toyscapes_image_size=SIZE, target_size=SIZE,
                                   **data),
        model=config_lib.ModelConfig(depth=18, width=0.125),
        optim=config_lib.OptimConfig(), inter=config_lib.InterConfig(),
        pseudo=config_lib.PseudoConfig(num_shards=2),
        intra=config_lib.IntraConfig(), run=config_lib.RunConfig(run_dir=str(run_dir)))


def pseudo_context(data, name):
    root, model_path = data
    run_dir = root / name
    os.makedirs(run_dir / "inter")
    shutil.copy(model_path, run_dir / "inter" / run_layout.MODEL_FILE)
    config = make_config(root, run_dir)
    return common.Context(config, str(run_dir), None,
                          sources.resolve(config.data, need_source=False))


def test_deleted_index_and_truncated_shard_are_re_made_by_the_advice(data):
    ctx = pseudo_context(data, "pseudo")
    stage_dir = os.path.join(ctx.run_dir, "pseudo_r1")
    first = pseudo_stage.run(ctx, 1)
    index = os.path.join(stage_dir, run_layout.index_name(run_layout.RECORDS))
    shard = os.path.join(stage_dir, run_layout.shard_name(run_layout.RECORDS, 1, 2))
    original_index = json.load(open(index))
    original_shard = open(shard, "rb").read()
    assert not os.path.exists(os.path.join(stage_dir, run_layout.CACHE_DIR))

    os.remove(index)
    with pytest.raises(FileNotFoundError) as info:
        intra_stage._records(ctx, 1, run_layout.RECORDS, 2, 0)
    assert "run the same command with --stage=pseudo --round=1" in str(info.value)
    assert pseudo_stage.run(ctx, 1) == first          # following the advice
    assert json.load(open(index)) == original_index

    with open(shard, "wb") as f:
        f.write(original_shard[:-100])
    with pytest.raises(DataError) as info:
        intra_stage._records(ctx, 1, run_layout.RECORDS, 2, 0)
    message = str(info.value)
    assert message.startswith(f"{shard}: shard has {len(original_shard) - 100} bytes")
    assert "run the same command with --stage=pseudo --round=1" in message
    assert pseudo_stage.run(ctx, 1) == first          # following the advice
    assert open(shard, "rb").read() == original_shard
    assert json.load(open(index)) == original_index
    intra_stage._records(ctx, 1, run_layout.RECORDS, 2, 0)   # readable again


def new_adapter():
    adapter = InterDomainAdapter(tiny_generator(seed=11), *tiny_discriminators(seed=11))
    compile_tiny(adapter, lr=0.01, decay_steps=6)
    return adapter


def test_damaged_newest_checkpoint_falls_back_to_the_older_one(tmp_path, caplog):
    from tf_pixintra.stages import training  # pylint: disable=import-outside-toplevel
    ckpt = str(tmp_path / "checkpoints")
    adapter = new_adapter()
    manager, step = training.restore(adapter, ckpt)
    for number in (2, 3):
        step.assign(number)
        manager.save(checkpoint_number=number)
    newest, older = training.checkpoint_candidates(ckpt)
    assert newest.endswith("ckpt-3") and older.endswith("ckpt-2")
    data_file = newest + ".data-00000-of-00001"
    with open(data_file, "r+b") as f:
        f.truncate(os.path.getsize(data_file) // 2)
    with caplog.at_level(logging.WARNING):
        _, step = training.restore(adapter, ckpt)
    assert int(step) == 2
    assert f"{newest}: damaged checkpoint" in caplog.text

    for prefix in training.checkpoint_candidates(ckpt):
        with open(prefix + ".index", "wb") as f:
            f.write(b"garbage")
    with pytest.raises(DataError) as info:
        training.restore(adapter, ckpt)
    assert str(info.value).startswith(f"{ckpt}: no checkpoint can be restored")
    assert f"delete {ckpt} and run the same command" in str(info.value)
    shutil.rmtree(ckpt)                               # following the advice
    _, step = training.restore(adapter, ckpt)
    assert int(step) == 0


def test_first_run_on_a_wrong_root_writes_no_config(data, tmp_path):
    root, _ = data
    run_dir = tmp_path / "run"
    os.makedirs(run_dir)
    paths = toyscapes.dataset_paths(str(root / "toyscapes"))
    wrong = make_config(root, run_dir, toyscapes=False,
                        source_root=str(tmp_path / "empty"),
                        target_root=paths["cityscapes"])
    os.makedirs(tmp_path / "empty")
    strategy = tf.distribute.get_strategy()
    with pytest.raises(DataError, match="missing folder .*empty"):
        train._run(wrong, strategy, True)
    assert not os.path.exists(run_dir / run_layout.CONFIG_FILE)

    # The corrected command is not refused (here its only stage is finished,
    # so nothing trains) and records its config.
    right = make_config(root, run_dir, toyscapes=False, source_root=paths["gta5"],
                        target_root=paths["cityscapes"])
    right = config_lib.dataclasses.replace(
        right, run=config_lib.dataclasses.replace(right.run, stage="inter"))
    os.makedirs(run_dir / "inter")
    (run_dir / "inter" / run_layout.METRICS_FILE).write_text('{"stage": "inter"}')
    assert train._run(right, strategy, True) == [("inter", {"stage": "inter"})]
    assert json.load(open(run_dir / run_layout.CONFIG_FILE)) == right.experiment_dict()
