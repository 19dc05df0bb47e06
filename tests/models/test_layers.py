"""Tests of tf_pixintra.models.layers."""

import keras
import numpy as np
import pytest
import tensorflow as tf

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
    # Coordinates, weights and values are multiples of 1/4 with a few bits:
    # every float32 operation is exact.
    np.testing.assert_array_equal(out[0, :, :, 0], expected)


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


def _leaky_pair(x, dy):
    """(y, dx) of tf_pixintra's LeakyReLU and of Keras' own, eagerly."""
    from tf_pixintra.models.layers import LeakyReLU
    out = []
    for layer in (LeakyReLU(negative_slope=0.2),
                  keras.layers.LeakyReLU(negative_slope=0.2)):
        x_t = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x_t)
            y = layer(x_t)
        out.append((y.numpy(), tape.gradient(y, x_t, output_gradients=dy)
                    .numpy()))
    return out


def test_leaky_relu_same_values_and_gradients_as_keras_bitwise():
    # Same forward op; LeakyReluGrad(dy, y) == LeakyReluGrad(dy, x) because
    # y > 0 exactly where x > 0 (slope >= 0), including -0.0, 0.0 and the
    # smallest subnormal, whose 0.2 x underflows to -0.0.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 7, 3)).astype(np.float32)
    x.flat[:4] = [0.0, -0.0, -np.finfo(np.float32).smallest_subnormal,
                  np.finfo(np.float32).smallest_subnormal]
    dy = tf.constant(rng.normal(size=x.shape).astype(np.float32))
    (y_ours, dx_ours), (y_keras, dx_keras) = _leaky_pair(x, dy)
    np.testing.assert_array_equal(y_ours, y_keras)
    np.testing.assert_array_equal(dx_ours, dx_keras)
    assert (dx_ours != dy.numpy()).any()   # the negative side was exercised


def test_leaky_relu_config_round_trip_and_bad_slope():
    from tf_pixintra.models.layers import LeakyReLU
    layer = LeakyReLU(negative_slope=0.2, name="act")
    clone = LeakyReLU.from_config(layer.get_config())
    assert clone.negative_slope == 0.2 and clone.name == "act"
    with pytest.raises(ValueError, match="negative_slope"):
        LeakyReLU(negative_slope=-0.1)
