"""Tests of tf_pixintra.models.deeplab_v2 (multi-level DeepLab-v2 G)."""

import keras
import numpy as np
import pytest

from tf_pixintra.errors import ConfigError
from tf_pixintra.models import (backbone_variables, build_deeplab_v2,
                                head_variables)

DILATIONS = (6, 12, 18, 24)


@pytest.fixture(scope="module")
def tiny_g():
    return build_deeplab_v2(19, depth=18, width=0.0625, bn_mode="train",
                            seed=0)


def test_multi_level_outputs_at_stride_8(tiny_g):
    assert tuple(tiny_g.input.shape) == (None, None, None, 3)
    out = tiny_g(np.zeros((1, 512, 1024, 3), np.float32))
    assert isinstance(out, list) and len(out) == 2
    for logits in out:
        assert tuple(logits.shape) == (1, 65, 129, 19)
        assert logits.dtype == "float32"


def test_heads_are_four_dilated_convs_with_bias(tiny_g):
    for head, channels in (("head_main", 32), ("head_aux", 16)):
        add = tiny_g.get_layer(f"{head}_sum")
        inputs = add._inbound_nodes[0].input_tensors
        convs = [t._keras_history.operation for t in inputs]
        assert [c.name for c in convs] == [f"{head}_d{d}" for d in DILATIONS]
        for conv, d in zip(convs, DILATIONS):
            assert conv.dilation_rate == (d, d) and conv.padding == "same"
            assert conv.use_bias and conv.kernel.shape == (3, 3, channels, 19)
            kernel = keras.ops.convert_to_numpy(conv.kernel)
            assert abs(kernel.std() - 0.01) < 0.001
            assert abs(kernel.mean()) < 1e-3
            np.testing.assert_array_equal(
                keras.ops.convert_to_numpy(conv.bias), 0.0)
    # The aux head reads layer3, the main head layer4.
    aux_in = tiny_g.get_layer("head_aux_d6").input
    main_in = tiny_g.get_layer("head_main_d6").input
    assert aux_in._keras_history.operation.name == "layer3_block2_out"
    assert main_in._keras_history.operation.name == "layer4_block2_out"


def test_head_backbone_split(tiny_g):
    heads = head_variables(tiny_g)
    backbone = backbone_variables(tiny_g)
    assert len(heads) == 16    # 2 heads x 4 convs x (kernel, bias)
    assert all(v.path.startswith("head_") for v in heads)
    assert not any(v.path.startswith("head_") for v in backbone)
    head_ids = {id(v) for v in heads}
    backbone_ids = {id(v) for v in backbone}
    assert not head_ids & backbone_ids
    all_ids = {id(v) for v in tiny_g.trainable_variables}
    assert head_ids | backbone_ids == all_ids
    assert len(heads) + len(backbone) == len(tiny_g.trainable_variables)


def test_single_level_mixed_precision_sums_all_four_branches():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_deeplab_v2(5, depth=18, width=0.0625,
                                 multi_level=False, seed=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("head_main_d6").compute_dtype == "float16"
    assert "head_aux_d6" not in {layer.name for layer in model.layers}
    # Zero kernels, biases 1, 2, 3, 4: the sum of all four branches is 10
    # (AdaptSegNet's bug would give 1 + 2 = 3).
    for bias, d in zip((1.0, 2.0, 3.0, 4.0), DILATIONS):
        conv = model.get_layer(f"head_main_d{d}")
        conv.kernel.assign(np.zeros(conv.kernel.shape, np.float32))
        conv.bias.assign(np.full(conv.bias.shape, bias, np.float32))
    out = model(np.random.default_rng(0).normal(size=(2, 40, 24, 3))
                .astype(np.float32))
    assert not isinstance(out, (list, tuple))
    # 40x24 -> stem conv 20x12 -> pool 11x7 -> layer2 6x4.
    assert out.dtype == "float32" and tuple(out.shape) == (2, 6, 4, 5)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(out), 10.0)


def test_full_size_parameter_count(deeplab101, count_weights):
    main = 4 * (3 * 3 * 2048 * 19 + 19)
    aux = 4 * (3 * 3 * 1024 * 19 + 19)
    assert (main, aux) == (1_400_908, 700_492)
    head_count = sum(int(np.prod(v.shape)) for v in head_variables(deeplab101))
    assert head_count == main + aux
    # BN gamma + beta: stem 64; layer1 3 x (64+64+256) + 256 (down); ...
    bn_channels = 64 + (3 * 384 + 256) + (4 * 768 + 512) \
        + (23 * 1536 + 1024) + (3 * 3072 + 2048)
    bn_count = sum(int(np.prod(v.shape)) for layer in deeplab101.layers
                   if isinstance(layer, keras.layers.BatchNormalization)
                   for v in (layer.gamma, layer.beta))
    assert bn_count == 2 * bn_channels == 105_344
    total = count_weights(deeplab101)
    assert total == 44_601_560
    assert abs(total - 44.60e6) <= 0.005 * 44.60e6
    # Frozen BN (default): gamma/beta are weights but not trainable.
    trainable = sum(int(np.prod(v.shape))
                    for v in deeplab101.trainable_variables)
    assert trainable == total - bn_count


def test_same_seed_same_weights(tiny_g):
    twin = build_deeplab_v2(19, depth=18, width=0.0625, bn_mode="train",
                            seed=0)
    for x, y in zip(tiny_g.weights, twin.weights):
        assert x.path == y.path
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(x),
                                      keras.ops.convert_to_numpy(y))
    main = keras.ops.convert_to_numpy(
        tiny_g.get_layer("head_main_d6").kernel)
    other = keras.ops.convert_to_numpy(
        tiny_g.get_layer("head_main_d12").kernel)
    assert not np.array_equal(main, other)


@pytest.mark.parametrize("num_classes", [0, 2.5, None])
def test_bad_num_classes(num_classes):
    with pytest.raises(ConfigError, match="num_classes"):
        build_deeplab_v2(num_classes, depth=18, width=0.0625)


def test_one_reading_of_the_heads_for_multi_and_single_level_outputs():
    from tf_pixintra.models import main_output, split_outputs
    main, aux = object(), object()
    assert split_outputs([main, aux]) == (main, aux)
    assert split_outputs((main,)) == (main, None)
    assert split_outputs(main) == (main, None)
    assert main_output([main, aux]) is main and main_output(main) is main
    with pytest.raises(ValueError, match="returns a dict"):
        split_outputs({"main": main})
