"""Stage II stage helpers that need no model."""

import types

import numpy as np
import pytest
import tensorflow as tf

import tfrecord_helpers as R
from tf_pixintra import io_utils
from tf_pixintra import run_layout
from tf_pixintra.data import tfrecords
from tf_pixintra.errors import DataError
from tf_pixintra.stages import intra_stage


def test_intrada_batch_marks_the_padding_of_both_sides():
    """Easy images are the labelled side, hard ones the other; the pixels
    padded by the crop (hard mask 255) are flagged for the AUC."""
    def side(padded_rows):
        mask = np.zeros((1, 4, 5), np.uint8)
        mask[:, 4 - padded_rows:] = 255
        return {"image": tf.zeros((1, 4, 5, 3)),
                "pseudo_label": tf.constant(np.where(mask == 255, 255, 3)
                                            .astype(np.uint8)),
                "hard_mask": tf.constant(mask), "z": tf.zeros((1, 4, 5))}
    batch = intra_stage._intrada_batch(side(1), side(3))  # pylint: disable=protected-access
    assert set(batch) == {"source_image", "source_label", "target_image",
                          "source_valid", "target_valid"}
    np.testing.assert_array_equal(batch["source_valid"].numpy()[0].sum(axis=1),
                                  [5, 5, 5, 0])
    np.testing.assert_array_equal(batch["target_valid"].numpy()[0].sum(axis=1),
                                  [5, 0, 0, 0])
    assert batch["source_label"].dtype == tf.uint8


def test_records_this_run_did_not_write_are_validated_before_training(tmp_path):
    """Pseudo labels of an unfinished pseudo stage (placed there by hand, say)
    go through the offline validator: a bad record is named before Stage II
    starts. Those of this run's finished stage were checked as written."""
    stage = tmp_path / run_layout.stage_dir_name("pseudo", 1)
    stage.mkdir()
    shape = (4, 6)
    maps = (np.zeros(shape + (3,), np.uint8), np.zeros(shape, np.uint8),
            np.zeros(shape, np.uint8), np.zeros(shape, np.float32))
    good = tfrecords.encode_example(*maps, "good")
    bad = tfrecords.encode_example(*maps, "bad")
    bad.features.feature[tfrecords.KEY_LABEL].bytes_list.value[0] = (
        tf.io.encode_png(np.full(shape + (1,), 40, np.uint8)).numpy())
    R.write_records(str(stage), run_layout.RECORDS, [good, bad], 1, {})
    data = types.SimpleNamespace(target_size=shape, crop_size=(), scale_range=(),
                                 flip=False)
    ctx = types.SimpleNamespace(run_dir=str(tmp_path),
                                config=types.SimpleNamespace(data=data))
    with pytest.raises(DataError, match=r"target-00000-of-00001.tfrecord: "
                       "record 1: pseudo_label has value 40"):
        intra_stage._records(ctx, 1, run_layout.RECORDS, 1, 0)
    io_utils.write_json(str(stage / run_layout.METRICS_FILE), {"stage": "pseudo_r1"})
    intra_stage._records(ctx, 1, run_layout.RECORDS, 1, 0)
