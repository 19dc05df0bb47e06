"""Tests of tf_pixintra.models.layers."""

import keras
import numpy as np
import pytest

from tf_pixintra.models import ResizeLike


def test_resize_like_bilinear_half_pixel_values():
    # 2 -> 4 along each axis with half-pixel centres samples the source at
    # -0.25, 0.25, 0.75, 1.25 -> clamped weights give [0, .25, .75, 1] * step.
    x = np.array([[0.0, 1.0], [2.0, 3.0]], np.float32).reshape(1, 2, 2, 1)
    ref = np.zeros((1, 4, 4, 7), np.float32)
    out = keras.ops.convert_to_numpy(ResizeLike()([x, ref]))
    row = np.array([0.0, 0.25, 0.75, 1.0])
    expected = 2.0 * row[:, None] + row[None, :]
    assert out.shape == (1, 4, 4, 1)
    np.testing.assert_allclose(out[0, :, :, 0], expected, atol=1e-6)


def test_resize_like_dynamic_size_in_a_model():
    x_in = keras.Input((None, None, 2))
    ref_in = keras.Input((None, None, 3))
    model = keras.Model([x_in, ref_in], ResizeLike()([x_in, ref_in]))
    out = model([np.ones((2, 3, 5, 2), np.float32),
                 np.ones((2, 9, 11, 3), np.float32)])
    assert tuple(out.shape) == (2, 9, 11, 2)


def test_resize_like_config_round_trip():
    layer = ResizeLike(interpolation="nearest", name="up")
    clone = ResizeLike.from_config(layer.get_config())
    assert clone.interpolation == "nearest" and clone.name == "up"
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, ResizeLike)
    assert restored.interpolation == "nearest"


def test_resize_like_rejects_unknown_interpolation():
    with pytest.raises(ValueError, match="bicubic"):
        ResizeLike(interpolation="bicubic")
