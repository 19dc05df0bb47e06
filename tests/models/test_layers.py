"""Tests of tf_pixintra.models.layers."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import tolerances as T
from tf_pixintra.models import ResizeLike
from tf_pixintra.models import build_deeplab_v2
from tf_pixintra.models.deeplab_v2 import ASPP_DILATIONS, HEAD_PREFIX
from tf_pixintra.models import resnet
from tf_pixintra import compat
from tf_pixintra.models.layers import DilatedConv2D


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


# -- DilatedConv2D ----------------------------------------------------------

def _conv_and_grads(layer, x, weights_out):
    """layer(x), d/dx and d/dkernel of sum(layer(x) * weights_out)."""
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * weights_out)
    dx, dk = tape.gradient(loss, [x, layer.kernel])
    return y.numpy(), dx.numpy(), dk.numpy()


def _float64_copy(layer, kernel):
    """A float64 keras Conv2D with `layer`'s settings and `kernel`."""
    ref = keras.layers.Conv2D(layer.filters, layer.kernel_size,
                              padding=layer.padding, use_bias=False,
                              dilation_rate=layer.dilation_rate,
                              dtype="float64")
    ref.build((None, None, None, layer.kernel.shape[2]))
    ref.kernel.assign(kernel)
    return ref


@pytest.mark.parametrize("dilation", [2, 6])
def test_dilated_conv_values_and_both_gradients(dilation):
    """Against the exact result (float64, 53-bit: exact to far below the
    float32 bound), within Higham's gamma(n) * sum|terms| for each sum:
    an output sums 9 Cin products, an input gradient 9 Cout, a kernel
    gradient B H W. The |terms| sums are the same convolution and
    gradients on |x|, |kernel|, |weights_out|."""
    rng = np.random.default_rng(dilation)
    x = rng.normal(size=(2, 9, 13, 5)).astype(np.float32)
    layer = DilatedConv2D(4, 3, padding="same", dilation_rate=dilation,
                          use_bias=False)
    layer.build(x.shape)
    kernel = rng.normal(size=layer.kernel.shape).astype(np.float32)
    layer.kernel.assign(kernel)
    w_out = rng.normal(size=(2, 9, 13, 4)).astype(np.float32)
    got = _conv_and_grads(layer, x, w_out)
    exact = _conv_and_grads(_float64_copy(layer, kernel.astype(np.float64)),
                            x.astype(np.float64), w_out.astype(np.float64))
    abs_sums = _conv_and_grads(
        _float64_copy(layer, np.abs(kernel).astype(np.float64)),
        np.abs(x).astype(np.float64), np.abs(w_out).astype(np.float64))
    for name, g, e, a, n in zip(("output", "d/dx", "d/dkernel"), got, exact,
                                abs_sums, (9 * 5, 9 * 4, 2 * 9 * 13)):
        # Flushed subnormals: below TINY per rounding.
        bound = T.sum_bound(n, a) + n * T.TINY
        assert np.all(np.abs(g - e) <= bound), name


def _op_types(model, x):
    """Op types of a traced forward + backward pass of `model` on `x`."""
    @tf.function
    def step():
        with tf.GradientTape() as tape:
            outputs = model(x, training=True)
            loss = tf.add_n([tf.reduce_sum(o) for o in tf.nest.flatten(outputs)])
        return tape.gradient(loss, model.trainable_variables)
    graph = step.get_concrete_function().graph
    return {op.type for op in graph.get_operations()}


@pytest.mark.parametrize("width", [0.125, 1.0])
def test_which_dilated_convs_of_g_are_single_ops(width):
    """G's ASPP branches (dilations 6-24) are DilatedConv2D, and so are the
    backbone's dilated convs of at most NATIVE_DILATION_MAX_FILTERS filters;
    wider ones (ResNet-101's 256 and 512) are Keras' Conv2D, where oneDNN's
    direct dilated conv was the slower one (benchmarks/dilated_conv.py)."""
    g = build_deeplab_v2(19, depth=18, width=width, bn_mode="frozen", seed=0)
    dilated = {layer.name: layer for layer in g.layers
               if isinstance(layer, keras.layers.Conv2D)
               and max(layer.dilation_rate) > 1}
    aspp = {n for n in dilated if n.startswith(HEAD_PREFIX)}
    assert len(aspp) == 2 * len(ASPP_DILATIONS)
    for name, layer in dilated.items():
        native = (name in aspp
                  or layer.filters <= resnet.NATIVE_DILATION_MAX_FILTERS)
        assert isinstance(layer, DilatedConv2D) == native, name
    backbone = [layer.filters for n, layer in dilated.items() if n not in aspp]
    # Both kinds occur: width 0.125 has 32-64 filters, width 1.0 256-512.
    assert (max(backbone) <= resnet.NATIVE_DILATION_MAX_FILTERS) == (width < 1)


def test_g_with_onednn_has_no_space_to_batch():
    """With oneDNN on (the package's default; conftest imports it before TF)
    the tiny G's dilated convs and both their gradients have no
    SpaceToBatchND / BatchToSpaceND copies; where TF runs without oneDNN
    they are Keras' SpaceToBatch convs (the fallback)."""
    g = build_deeplab_v2(19, depth=18, width=0.125, bn_mode="frozen", seed=0)
    ops = _op_types(g, tf.zeros((1, 32, 64, 3)))
    assert ("SpaceToBatchND" in ops) == (not compat.onednn_enabled())


def test_dilated_conv_falls_back_to_keras_without_onednn(monkeypatch):
    """Without oneDNN (or with float16 compute) the layer is Keras' Conv2D:
    the same ops and bit for bit the same values."""
    x = np.random.default_rng(0).normal(size=(1, 8, 8, 3)).astype(np.float32)
    layer = DilatedConv2D(2, 3, padding="same", dilation_rate=2)
    plain = keras.layers.Conv2D(2, 3, padding="same", dilation_rate=2)
    layer.build(x.shape)
    plain.build(x.shape)
    plain.set_weights(layer.get_weights())
    monkeypatch.setattr(compat, "onednn_enabled", lambda: False)
    model = keras.Sequential([keras.Input((8, 8, 3)), layer])
    assert "SpaceToBatchND" in _op_types(model, x)
    np.testing.assert_array_equal(layer(x).numpy(), plain(x).numpy())
    half = DilatedConv2D(2, 3, padding="same", dilation_rate=2,
                         dtype="mixed_float16")
    monkeypatch.setattr(compat, "onednn_enabled", lambda: True)
    half_model = keras.Sequential([keras.Input((8, 8, 3)), half])
    assert "SpaceToBatchND" in _op_types(half_model, x)


def test_dilated_conv_config_round_trip():
    layer = DilatedConv2D(3, 3, padding="same", dilation_rate=4, name="d4")
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, DilatedConv2D)
    assert restored.dilation_rate == (4, 4) and restored.name == "d4"


def test_saved_dilated_conv_serves_without_onednn(tmp_path):
    """A SavedModel written with oneDNN's single-op dilated conv runs in a
    TensorFlow without oneDNN (TF Serving builds, other CPUs): TF's Eigen
    CPU kernels do the dilated forward pass (only its filter gradient is
    missing there). Checked in a fresh process with TF_ENABLE_ONEDNN_OPTS=0
    against the exact (float64) result within gamma(9 Cin) sum|terms|."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1, 10, 12, 3)).astype(np.float32)
    layer = DilatedConv2D(4, 3, padding="same", dilation_rate=3,
                          use_bias=False)
    model = keras.Sequential([keras.Input((None, None, 3)), layer])
    model.export(str(tmp_path / "saved"), verbose=False)
    np.save(tmp_path / "x.npy", x)
    script = (
        "import sys, numpy as np, tensorflow as tf\n"
        "from tensorflow.python.util import _pywrap_util_port as port\n"
        "assert not port.IsMklEnabled()\n"
        "m = tf.saved_model.load(sys.argv[1])\n"
        "np.save(sys.argv[3], m.serve(tf.constant(np.load(sys.argv[2]))).numpy())\n")
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="2")
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "saved"),
                    str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
                   env=env, check=True, timeout=300)
    served = np.load(tmp_path / "y.npy")
    kernel = layer.kernel.numpy().astype(np.float64)
    exact = _float64_copy(layer, kernel)(x.astype(np.float64)).numpy()
    abs_sum = _float64_copy(layer, np.abs(kernel))(
        np.abs(x).astype(np.float64)).numpy()
    assert np.all(np.abs(served - exact) <= T.sum_bound(27, abs_sum) + 27 * T.TINY)
