"""Tests of tf_pixintra.models.resnet (dilated Caffe-style ResNet)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_pixintra.errors import ConfigError
from tf_pixintra.models import build_resnet
from tf_pixintra.models.resnet import scaled_channels


def _shape_hw(tensor):
    return tuple(int(d) for d in tensor.shape[1:3])


def test_output_stride_8_for_512x1024(tiny18):
    out = tiny18(np.zeros((1, 512, 1024, 3), np.float32))
    # 512x1024 -> stem conv 256x512 -> ceil-mode pool 129x257 -> stride 8.
    assert _shape_hw(out["layer1"]) == (129, 257)
    for name in ("layer2", "layer3", "layer4"):
        assert _shape_hw(out[name]) == (65, 129)


@pytest.mark.parametrize("size, layer1, layer4", [
    ((66, 98), (17, 25), (9, 13)),    # 33x49 after the stem conv
    ((513, 31), (129, 9), (65, 5)),   # 257x16 after the stem conv
])
def test_feature_sizes_hand_computed(tiny18, size, layer1, layer4):
    out = tiny18(np.zeros((1,) + size + (3,), np.float32))
    assert _shape_hw(out["layer1"]) == layer1
    assert _shape_hw(out["layer4"]) == layer4


def test_input_is_dynamic(tiny18):
    assert tuple(tiny18.input.shape) == (None, None, None, 3)


def test_stem_pool_is_pytorch_ceil_mode(tiny18):
    model = tiny18
    pool_in = keras.Input((None, None, 1))
    x = model.get_layer("stem_pool_pad")(pool_in)
    pool = keras.Model(pool_in, model.get_layer("stem_pool")(x))
    image = (np.arange(16, dtype=np.float32) + 1).reshape(1, 4, 4, 1)
    out = keras.ops.convert_to_numpy(pool(image))[0, :, :, 0]
    # MaxPool2d(3, 2, padding=1, ceil_mode=True) on 4x4: windows rows
    # {0,1}, {1,2,3}, {3} (same for columns); x = 4 r + c + 1.
    expected = np.array([[6, 8, 8], [14, 16, 16], [14, 16, 16]], np.float32)
    np.testing.assert_array_equal(out, expected)


def test_channel_counts_scale_with_width(tiny18, tiny50):
    assert scaled_channels(64, 0.125) == 8
    assert scaled_channels(64, 0.001) == 1
    assert scaled_channels(100, 0.125) == 13    # 12.5 rounds half up
    assert [tiny50.output[f"layer{i}"].shape[-1] for i in range(1, 5)] \
        == [16, 32, 64, 128]
    assert [tiny18.output[f"layer{i}"].shape[-1] for i in range(1, 5)] \
        == [4, 8, 16, 32]


def test_weight_count_depth18_width_sixteenth(tiny18, count_weights):
    # Hand count, channels 4 (stem) and 4/8/16/32 (layers), no conv bias:
    # convs 588 + 576 + 2048 + 8192 + 32768; BN gamma+beta 2 * 300.
    assert count_weights(tiny18) == 44172 + 600


def test_block_layout_strides_and_dilations(deeplab101):
    names = {layer.name for layer in deeplab101.layers}
    counts = [sum(1 for b in range(1, 30)
                  if f"layer{i}_block{b}_conv1" in names) for i in range(1, 5)]
    assert counts == [3, 4, 23, 3]
    conv1 = deeplab101.get_layer("layer2_block1_conv1")
    assert conv1.kernel_size == (1, 1) and conv1.strides == (2, 2)
    assert deeplab101.get_layer("layer2_block1_conv2").strides == (1, 1)
    assert deeplab101.get_layer("layer2_block1_down_conv").strides == (2, 2)
    for layer_index, dilation in ((1, 1), (2, 1), (3, 2), (4, 4)):
        for b in (1, 2):
            conv2 = deeplab101.get_layer(f"layer{layer_index}_block{b}_conv2")
            assert conv2.dilation_rate == (dilation, dilation)
            assert conv2.strides == (1, 1) and conv2.padding == "same"
    convs = [layer for layer in deeplab101.layers
             if isinstance(layer, keras.layers.Conv2D)
             and not layer.name.startswith("head_")]
    assert len(convs) == 104 and not any(c.use_bias for c in convs)


def test_basic_block_strides_on_first_3x3(tiny18):
    conv1 = tiny18.get_layer("layer2_block1_conv1")
    assert conv1.kernel_size == (3, 3) and conv1.strides == (2, 2)
    assert conv1.padding == "valid"    # explicit 1-pixel ZeroPadding2D
    assert tiny18.get_layer("layer2_block1_conv1_pad").padding == (
        (1, 1), (1, 1))
    assert tiny18.get_layer("layer4_block2_conv2").dilation_rate == (4, 4)
    names = {layer.name for layer in tiny18.layers}
    assert "layer1_block1_down_conv" not in names
    assert "layer2_block1_down_conv" in names


def _bn_layers(model):
    return [layer for layer in model.layers
            if isinstance(layer, keras.layers.BatchNormalization)]


def _moving_stats(model):
    return [keras.ops.convert_to_numpy(v).copy() for layer in _bn_layers(model)
            for v in (layer.moving_mean, layer.moving_variance)]


def test_frozen_bn_is_inference_mode(tiny18):
    model = tiny18
    bns = _bn_layers(model)
    assert bns and not any(layer.trainable for layer in bns)
    assert not any(w for layer in bns for w in layer.trainable_weights)
    before = _moving_stats(model)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)) * 50
    train_out = model(x.astype(np.float32), training=True)["layer4"]
    infer_out = model(x.astype(np.float32), training=False)["layer4"]
    for a, b in zip(before, _moving_stats(model)):
        np.testing.assert_array_equal(a, b)
    # Frozen BN runs the inference ops whatever `training` says: same ops,
    # same input, bit for bit.
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(train_out),
                                  keras.ops.convert_to_numpy(infer_out))


def test_train_bn_updates_moving_stats():
    model = build_resnet(depth=18, width=0.0625, bn_mode="train", seed=1)
    bns = _bn_layers(model)
    assert all(layer.trainable for layer in bns)
    assert len(model.trainable_weights) == 20 + 2 * len(bns)  # 20 convs
    before = _moving_stats(model)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)) * 50
    model(x.astype(np.float32), training=True)
    after = _moving_stats(model)
    assert all(not np.allclose(a, b) for a, b in zip(before, after))


def test_train_bn_moving_statistics_are_averaged_over_two_replicas():
    """bn_mode=train built under 2 replicas: after a training call, every BN
    layer's moving statistics are the same on both replicas, the mean of those
    one device gets from each replica's half of the batch. Keras' BN alone
    keeps each replica's own, and a saved model holds replica 0's.

    The halves differ in mean by 3 standard deviations, so one half's
    statistics are far from the mean of both. Tolerance: each replica runs the
    one-device ops on the same half, and the update is linear in the batch
    statistics, so the two sides differ by a few float32 roundings (2^-24
    relative each) of the mean over replicas: 1e-5 of each statistic's
    largest value, against a half-batch error that must be over 1e-3 for
    most layers.
    """
    rng = np.random.default_rng(0)
    x = 50 * np.concatenate([rng.normal(0, 1, (2, 32, 32, 3)),
                             rng.normal(3, 1, (2, 32, 32, 3))]).astype(np.float32)

    def stats_after(model, images):
        model(images, training=True)
        return _moving_stats(model)

    def build():
        return build_resnet(depth=18, width=0.0625, bn_mode="train", seed=1)

    halves = [stats_after(build(), x[:2]), stats_after(build(), x[2:])]
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = build()
    per_replica = strategy.experimental_distribute_values_from_function(
        lambda ctx: x[2 * ctx.replica_id_in_sync_group:][:2])
    strategy.run(tf.function(lambda images: model(images, training=True)["layer4"]),
                 args=(per_replica,))
    variables = [v for layer in _bn_layers(model)
                 for v in (layer.moving_mean, layer.moving_variance)]
    far = 0
    for v, first, second in zip(variables, *halves):
        replica0, replica1 = (t.numpy() for t in strategy.experimental_local_results(v.value))
        np.testing.assert_array_equal(replica0, replica1)   # one reduced value, copied
        want = (first + second) / 2
        tolerance = 1e-5 * np.abs(want).max()
        np.testing.assert_allclose(replica0, want, rtol=0, atol=tolerance, err_msg=v.path)
        far += np.abs(first - want).max() > 100 * tolerance
    assert far >= len(variables) // 2, (far, len(variables))


def test_seed_determinism(tiny18):
    def weights(model):
        return [keras.ops.convert_to_numpy(v) for v in model.weights]
    a = weights(tiny18)    # built with seed 7
    b = weights(build_resnet(depth=18, width=0.0625, seed=7))
    c = weights(build_resnet(depth=18, width=0.0625, seed=8))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    # Layers of one model get different draws.
    model = tiny18
    k1 = keras.ops.convert_to_numpy(
        model.get_layer("layer1_block1_conv1").kernel)
    k2 = keras.ops.convert_to_numpy(
        model.get_layer("layer1_block1_conv2").kernel)
    assert not np.array_equal(k1, k2)


@pytest.mark.parametrize("kwargs, word", [
    ({"depth": 152}, "depth"), ({"bn_mode": "sync"}, "bn_mode"),
    ({"width": 0}, "width")])
def test_bad_config_raises(kwargs, word):
    with pytest.raises(ConfigError, match=word):
        build_resnet(**kwargs)
