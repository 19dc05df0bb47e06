"""Tests for tf_pixintra.data.labels against the public label tables.

Expected values are written out by hand from the public mappings, not
derived from the module:
- Cityscapes labelIds -> trainIds: mcordts/cityscapesScripts,
  cityscapesscripts/helpers/labels.py; GTA5 labels use the same ids
  (wasidennis/AdaptSegNet, dataset/gta5_dataset.py, id_to_trainid).
- SYNTHIA-RAND-CITYSCAPES ids -> trainIds: liyunsheng13/BDL,
  data/synthia_dataset.py, id_to_trainid, less its terrain (16), truck (18)
  and train (20) entries: the paper evaluates SYNTHIA on the 16 classes it
  shares with Cityscapes, and on 13 of them (Yan et al., ACM MM 2021,
  Sec 5.2 and Table 2).
"""

import numpy as np
import pytest

from tf_pixintra.data import labels
from tf_pixintra.errors import ConfigError

# Cityscapes labelId -> trainId (cityscapesscripts/helpers/labels.py).
CITYSCAPES_EXPECTED = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}
# SYNTHIA class id -> trainId (BDL data/synthia_dataset.py, 16 classes).
SYNTHIA_EXPECTED = {
    3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 1: 10, 10: 11,
    17: 12, 8: 13, 19: 15, 12: 17, 11: 18,
}


def test_constants():
    assert labels.NUM_CLASSES == 19
    assert labels.IGNORE_LABEL == 255
    assert len(labels.CLASS_NAMES) == 19
    assert labels.CLASS_NAMES[0] == "road"
    assert labels.CLASS_NAMES[13] == "car"
    assert labels.CLASS_NAMES[18] == "bicycle"
    assert len(labels.PALETTE) == 19


def test_cityscapes_table_matches_reference():
    assert labels.CITYSCAPES_ID_TO_TRAINID == CITYSCAPES_EXPECTED


def test_synthia_table_matches_reference():
    assert labels.SYNTHIA_ID_TO_TRAINID == SYNTHIA_EXPECTED
    # SYNTHIA has no terrain (9), truck (14) or train (16).
    assert not {9, 14, 16} & set(labels.SYNTHIA_ID_TO_TRAINID.values())


def test_eval_subsets():
    assert labels.TRAINIDS_16 == (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13,
                                  15, 17, 18)
    # mIoU-13 drops wall (3), fence (4) and pole (5) from the 16 classes.
    assert labels.TRAINIDS_13 == (0, 1, 2, 6, 7, 8, 10, 11, 12, 13, 15, 17,
                                  18)
    assert len(labels.EVAL_SUBSETS[19]) == 19
    assert len(labels.EVAL_SUBSETS[16]) == 16
    assert len(labels.EVAL_SUBSETS[13]) == 13


@pytest.mark.parametrize("dataset", ["cityscapes", "gta5"])
def test_to_train_ids_cityscapes_ids(dataset):
    ids = np.array([[7, 8, 33], [0, 6, 34], [255, 26, 1]], dtype=np.uint8)
    expected = np.array([[0, 1, 18], [255, 255, 255], [255, 13, 255]],
                        dtype=np.uint8)
    out = labels.to_train_ids(ids, dataset)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)


def test_to_train_ids_every_cityscapes_id():
    out = labels.to_train_ids(np.arange(256), "cityscapes")
    for label_id in range(256):
        assert out[label_id] == CITYSCAPES_EXPECTED.get(label_id, 255), label_id


def test_to_train_ids_synthia_16_bit():
    ids = np.array([3, 11, 0, 13, 22, 1000, 65535], dtype=np.uint16)
    expected = np.array([0, 18, 255, 255, 255, 255, 255], dtype=np.uint8)
    np.testing.assert_array_equal(labels.to_train_ids(ids, "synthia"),
                                  expected)


def test_to_train_ids_ids_beyond_table_are_ignored():
    ids = np.array([7, 300, 70000], dtype=np.int64)
    np.testing.assert_array_equal(labels.to_train_ids(ids, "cityscapes"),
                                  np.array([0, 255, 255], dtype=np.uint8))


def test_to_train_ids_unknown_dataset():
    with pytest.raises(ConfigError,
                       match="dataset='kitti': expected one of gta5, synthia, cityscapes"):
        labels.to_train_ids(np.zeros((2, 2), np.uint8), "kitti")


def test_train_ids_to_label_ids():
    train_ids = np.array([0, 13, 18, 255], dtype=np.uint8)
    np.testing.assert_array_equal(labels.train_ids_to_label_ids(train_ids),
                                  np.array([7, 26, 33, 0], dtype=np.uint8))


def test_colorize():
    rgb = labels.colorize(np.array([[0, 255], [13, 10]], dtype=np.uint8))
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[0, 0], [128, 64, 128])  # road
    np.testing.assert_array_equal(rgb[0, 1], [0, 0, 0])  # ignore
    np.testing.assert_array_equal(rgb[1, 0], [0, 0, 142])  # car
    np.testing.assert_array_equal(rgb[1, 1], [70, 130, 180])  # sky
