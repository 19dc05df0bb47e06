"""`.keras` save / load round trips of both builders (tiny configurations)."""

import keras
import numpy as np

# Importing tf_pixintra.models registers the custom layers for loading.
from tf_pixintra.models import build_deeplab_v2, build_discriminator


def _round_trip(model, path):
    model.save(path)
    return keras.saving.load_model(path)


def test_deeplab_v2_round_trip(tmp_path):
    model = build_deeplab_v2(4, depth=18, width=0.0625, bn_mode="frozen",
                             seed=2)
    loaded = _round_trip(model, str(tmp_path / "g.keras"))
    x = np.random.default_rng(0).normal(size=(1, 48, 40, 3)) * 30
    x = x.astype(np.float32)
    for a, b in zip(model(x), loaded(x)):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a),
                                      keras.ops.convert_to_numpy(b))
    assert not loaded.get_layer("stem_bn").trainable
    assert len(loaded.trainable_variables) == len(model.trainable_variables)
    assert tuple(loaded.input.shape) == (None, None, None, 3)


def test_discriminator_round_trip(tmp_path):
    model = build_discriminator(4, ndf=4, pixel_level=True, seed=2)
    loaded = _round_trip(model, str(tmp_path / "d.keras"))
    assert type(loaded.get_layer("d_upsample")).__name__ == "ResizeLike"
    x = np.random.default_rng(0).uniform(size=(1, 64, 32, 4))
    x = x.astype(np.float32)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(x)),
                                  keras.ops.convert_to_numpy(loaded(x)))
