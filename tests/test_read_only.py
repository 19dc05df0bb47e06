"""Viewing a finished run writes nothing (issue 17, item 8).

Tests run as root, where a read-only chmod does not stop writes; so the
atomic writer is made to fail as a read-only file system would (EROFS) and
the run directory is compared file by file before and after.
"""

import errno
import os

import pytest
import tensorflow as tf

import tfrecord_helpers as R
from tf_pixintra import config as config_lib
from tf_pixintra import io_utils
from tf_pixintra import run_layout
from tf_pixintra import train
from tf_pixintra.data import toyscapes

STAGES = ("inter", "pseudo_r1", "intra_r1", "pseudo_r2", "intra_r2", "eval",
          "export")
EXTRA = {"pseudo": {"prop": 0.5, "alpha": 0.85},
         "eval": {"scales": [1.0], "flip": False}, "export": {"tflite": {}}}


def snapshot(run_dir):
    return {os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns
            for d, _, files in os.walk(run_dir) for f in files}


def test_closing_table_of_a_finished_run_needs_no_write_access(tmp_path, monkeypatch):
    data_dir = str(tmp_path / "toyscapes")
    toyscapes.ensure_toyscapes(data_dir, seed=0, num_source=1, num_target=1,
                               num_val=1, height=32, width=64, workers=1)
    run_dir = tmp_path / "run"
    config = config_lib.Config(
        data=config_lib.DataConfig(toyscapes=True, toyscapes_dir=data_dir,
                                   toyscapes_counts=(1, 1, 1),
                                   toyscapes_image_size=(32, 64)),
        model=config_lib.ModelConfig(), optim=config_lib.OptimConfig(),
        inter=config_lib.InterConfig(), pseudo=config_lib.PseudoConfig(),
        intra=config_lib.IntraConfig(), run=config_lib.RunConfig(run_dir=str(run_dir)))
    for i, stage in enumerate(STAGES):     # a finished run, as the stages leave it
        os.makedirs(run_dir / stage)
        io_utils.write_json(str(run_dir / stage / run_layout.METRICS_FILE),
                            {"stage": stage, "target_miou": 10.0 + i,
                             **EXTRA.get(stage[:6], {})})
        if stage.startswith("pseudo"):
            R.write_records(str(run_dir / stage), "target", [], 1, {})
    strategy = tf.distribute.get_strategy()
    first = train._run(config, strategy, True)   # writes config + summary.json
    before = snapshot(run_dir)

    def read_only(path):
        raise OSError(errno.EROFS, "Read-only file system", path)
    monkeypatch.setattr(io_utils, "atomic_path", read_only)
    rows = train._run(config, strategy, True)
    assert rows == first
    assert snapshot(run_dir) == before        # no new file, none rewritten
    table = train.format_summary(rows)
    assert "intra_r2           14.00" in table and "Prop. 0.500" in table
    with pytest.raises(OSError):              # the patch does stop writes
        io_utils.write_json(str(run_dir / "x.json"), {})
