"""Tests of tf_pixintra.models.discriminator (AdaptSegNet FC discriminator)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_pixintra.models import build_discriminator


def test_parameter_count_19_classes_ndf_64(count_weights):
    model = build_discriminator(19)
    expected = (16 * 19 * 64 + 64) + (16 * 64 * 128 + 128) \
        + (16 * 128 * 256 + 256) + (16 * 256 * 512 + 512) + (16 * 512 + 1)
    assert expected == 2_781_121
    assert count_weights(model) == expected
    assert len(model.trainable_variables) == 10


def test_layout():
    model = build_discriminator(19, ndf=4)
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [4, 8, 16, 32, 1]
    for conv in convs:
        assert conv.kernel_size == (4, 4) and conv.strides == (2, 2)
        assert conv.padding == "valid" and conv.use_bias
        pad = model.get_layer(conv.name + "_pad")
        assert pad.padding == ((1, 1), (1, 1))
    relus = [l for l in model.layers if isinstance(l, keras.layers.LeakyReLU)]
    assert len(relus) == 4
    assert all(abs(l.negative_slope - 0.2) < 1e-7 for l in relus)
    assert not any(isinstance(l, keras.layers.BatchNormalization)
                   for l in model.layers)


@pytest.mark.parametrize("size, expected", [
    ((512, 1024), (16, 32)),
    ((100, 70), (3, 2)),     # 100->50->25->12->6->3, 70->35->17->8->4->2
])
def test_output_size(size, expected):
    model = build_discriminator(19, ndf=2, seed=0)
    out = model(np.zeros((1,) + size + (19,), np.float32))
    assert tuple(out.shape) == (1,) + expected + (1,)
    assert out.dtype == "float32"


def test_pixel_level_upsamples_to_dynamic_input_size():
    patch = build_discriminator(4, ndf=4, seed=5)
    pixel = build_discriminator(4, ndf=4, pixel_level=True, seed=5)
    assert tuple(pixel.input.shape) == (None, None, None, 4)
    x = np.random.default_rng(1).uniform(size=(2, 64, 96, 4))
    x = x.astype(np.float32)
    out = keras.ops.convert_to_numpy(pixel(x))
    assert out.shape == (2, 64, 96, 1) and out.dtype == np.float32
    expected = tf.image.resize(patch(x), (64, 96), method="bilinear")
    np.testing.assert_allclose(out, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert pixel(x[:, :40, :72]).shape == (2, 40, 72, 1)


def test_mixed_precision_output_is_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_discriminator(3, ndf=2, pixel_level=True, seed=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("d_conv1").compute_dtype == "float16"
    out = model(np.ones((1, 32, 64, 3), np.float32))
    assert out.dtype == "float32" and tuple(out.shape) == (1, 32, 64, 1)


def test_seed_determinism():
    def weights(seed):
        return [keras.ops.convert_to_numpy(v)
                for v in build_discriminator(3, ndf=2, seed=seed).weights]
    a, b, c = weights(1), weights(1), weights(2)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(weights(None)[0], weights(None)[0])
