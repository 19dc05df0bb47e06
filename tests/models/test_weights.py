"""Tests of tf_pixintra.models.weights (keras.applications ResNet import).

Keras ResNets pool in floor mode, ours in PyTorch ceil mode; the two agree
when the stem conv output is odd: 66x66 -> 33x33 -> 17x17 -> 9x9 (layer2).
No weights are downloaded (weights=None, randomised here).
"""

import re

import keras
import numpy as np
import pytest

import tolerances as T
from tf_pixintra.errors import ConfigError
from tf_pixintra.models import build_resnet, load_keras_resnet_weights


def _randomise(keras_model, seed):
    """Random conv biases and BN parameters/statistics so the fold matters."""
    rng = np.random.default_rng(seed)
    for layer in keras_model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            layer.bias.assign(rng.normal(0, 0.2, layer.bias.shape))
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape
            layer.gamma.assign(rng.uniform(0.5, 1.5, n))
            layer.beta.assign(rng.normal(0, 0.2, n))
            layer.moving_mean.assign(rng.normal(0, 0.2, n))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n))


def _ours(keras_name):
    """Our layer name for a Keras ResNet conv (the test's own name map)."""
    if keras_name == "conv1_conv":
        return "stem_conv"
    stage, block, k = re.fullmatch(r"conv(\d)_block(\d+)_(\d)_conv",
                                   keras_name).groups()
    suffix = "down_conv" if k == "0" else f"conv{k}"
    return f"layer{int(stage) - 1}_block{block}_{suffix}"


def _numpy(variable):
    return keras.ops.convert_to_numpy(variable)


@pytest.fixture(scope="module")
def keras50():
    model = keras.applications.ResNet50(weights=None, include_top=False,
                                        input_shape=(66, 66, 3))
    _randomise(model, 0)
    return model


def test_resnet50_import_matches_keras_outputs(keras50):
    ours = build_resnet(depth=50, width=1.0, bn_mode="frozen", seed=0)
    summary = load_keras_resnet_weights(ours, keras50)
    assert summary == {"convs": 53, "batch_norms": 53, "biases_folded": 53,
                       "tensors_copied": 265}
    keras_convs = [l for l in keras50.layers
                   if isinstance(l, keras.layers.Conv2D)]
    assert len(keras_convs) == 53
    for conv in keras_convs:
        np.testing.assert_array_equal(
            _numpy(ours.get_layer(_ours(conv.name)).kernel),
            _numpy(conv.kernel))
    # The fold, by hand for one layer: mean - bias, var + 1.001e-5 - 1e-5.
    k_conv = keras50.get_layer("conv3_block2_2_conv")
    k_bn = keras50.get_layer("conv3_block2_2_bn")
    our_bn = ours.get_layer("layer2_block2_bn2")
    np.testing.assert_allclose(_numpy(our_bn.moving_mean),
                               _numpy(k_bn.moving_mean) - _numpy(k_conv.bias),
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(_numpy(our_bn.moving_variance),
                               _numpy(k_bn.moving_variance) + 1e-8, rtol=1e-6)
    np.testing.assert_array_equal(_numpy(our_bn.gamma), _numpy(k_bn.gamma))
    # Every conv + BN up to layer2 (stride 8, no dilation yet), fed the
    # input Keras recorded for it, gives Keras's BN output: within twice the
    # bound of `_conv_bn_bound` (the deep network as a whole has no useful
    # bound: rounding grows with products of weight norms).
    x = np.random.default_rng(1).normal(0, 50, (2, 66, 66, 3))
    x = x.astype(np.float32)
    convs = [c for c in keras_convs if c.name.startswith(("conv1", "conv2",
                                                          "conv3"))]
    bns = [keras50.get_layer(c.name[:-len("conv")] + "bn") for c in convs]
    recorded = keras.Model(keras50.input, [c.input for c in convs]
                           + [bn.output for bn in bns])(x, training=False)
    inputs, outputs = recorded[:len(convs)], recorded[len(convs):]
    for conv, bn, x_in, want in zip(convs, bns, inputs, outputs):
        name = _ours(conv.name)
        got = _numpy(ours.get_layer(name.replace("conv", "bn"))(
            ours.get_layer(name)(x_in), training=False))
        want = _numpy(want)
        assert got.shape == want.shape, conv.name
        tol = T.across(_conv_bn_bound(conv, bn, _numpy(x_in)))
        excess = np.abs(got - want) - tol
        assert np.all(excess <= 0), (conv.name, np.abs(got - want).max())
    assert got.shape == (2, 9, 9, 512)


def _conv_bn_bound(conv, bn, x_in):
    """|float32 BN(conv(x) + b) - exact| for either fold of the bias.

    The conv is a dot of K = kh kw C_in taps: gamma(K) sum |w||x|. Keras
    adds the bias b (one rounding), ours subtracts it from the mean (one);
    both epsilons, 1.001e-5 and 1e-8 + 1e-5, are the same number within u
    relative on a variance >= 0.5. BN: s = gamma / sqrt(var + eps) (a
    square root and a division, TRANSCENDENTAL_ULPS allowed), then s c +
    (beta - mean s): a few roundings more, so gamma(K + ULPS + 10) of
    |s| (sum |w||x| + 2 |b| + |mean|) + |beta| covers all of it.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    kernel, bias = (np.float64(_numpy(v)) for v in (conv.kernel, conv.bias))
    gamma, beta, mean, var = (np.float64(_numpy(v)) for v in (
        bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance))
    scale = np.abs(gamma / np.sqrt(var + bn.epsilon))
    conv_abs = tf.nn.conv2d(np.abs(np.float64(x_in)), np.abs(kernel),
                            conv.strides, conv.padding.upper()).numpy()
    taps = int(np.prod(kernel.shape[:3]))
    return T.gamma(taps + T.TRANSCENDENTAL_ULPS + 10) * (
        scale * (conv_abs + 2 * np.abs(bias) + np.abs(mean)) + np.abs(beta))


def test_width_mismatch_names_both_layers(tiny50, keras50):
    with pytest.raises(ConfigError, match="conv1_conv.*stem_conv"):
        load_keras_resnet_weights(tiny50, keras50)


def test_basic_block_model_is_refused(tiny18, keras50):
    with pytest.raises(ConfigError, match="basic block"):
        load_keras_resnet_weights(tiny18, keras50)


def test_depth_mismatch_is_refused(deeplab101, keras50):
    with pytest.raises(ConfigError, match=r"\[3, 4, 6, 3\].*\[3, 4, 23, 3\]"):
        load_keras_resnet_weights(deeplab101, keras50)


def test_resnet101_with_top_maps_onto_deeplab(deeplab101):
    keras101 = keras.applications.ResNet101(weights=None, include_top=True)
    head_before = _numpy(deeplab101.get_layer("head_main_d6").kernel).copy()
    summary = load_keras_resnet_weights(deeplab101, keras101)
    assert summary == {"convs": 104, "batch_norms": 104, "biases_folded": 104,
                       "tensors_copied": 520}
    for keras_name in ("conv1_conv", "conv4_block23_3_conv",
                       "conv4_block1_0_conv", "conv5_block3_2_conv"):
        np.testing.assert_array_equal(
            _numpy(deeplab101.get_layer(_ours(keras_name)).kernel),
            _numpy(keras101.get_layer(keras_name).kernel))
    np.testing.assert_array_equal(
        _numpy(deeplab101.get_layer("head_main_d6").kernel), head_before)
