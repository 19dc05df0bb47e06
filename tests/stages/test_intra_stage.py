"""Stage II stage helpers that need no model."""

import numpy as np
import tensorflow as tf

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
