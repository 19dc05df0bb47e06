"""Dilated Caffe-style ResNet backbone of DeepLab-v2 (depth 18/34/50/101).

Laid out as the DeepLab-v2 ResNet-101 of AdaptSegNet / ADVENT / BDL: layer1
stride 1, layer2 stride 2, layer3 dilation 2, layer4 dilation 4 (3x3 padding
= dilation), output stride 8 (512x1024 -> 65x129). Caffe-style bottlenecks
(depth 50/101) have the stride on the FIRST 1x1 conv, basic blocks (18/34)
on the first 3x3. Convs have no bias (torchvision / Caffe); He-normal init.

`bn_mode` "frozen" (default, pretrained backbones) builds every BN layer
with `trainable=False`: in Keras 3 inference mode, statistics never updated
(Caffe DeepLab-v2's `use_global_stats`; the PyTorch references normalise
with batch statistics). Caution: `model.trainable = True` later unfreezes
every BN layer. "train": ordinary BN (momentum 0.9 = PyTorch's 0.1), for
tiny models from scratch; built under several replicas, its moving statistics
are averaged over them (`compat.ReplicaMeanBatchNorm`). BN epsilon is 1e-5
(PyTorch / Caffe).

`width` scales every channel count (rounded, at least 1) for tiny CPU
configurations; the bottleneck expansion stays exactly 4.
"""

import zlib

import keras
import tensorflow as tf

from tf_pixintra import choices
from tf_pixintra.compat import ReplicaMeanBatchNorm
from tf_pixintra.errors import ConfigError
from tf_pixintra.models.layers import DilatedConv2D

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9

# (planes, stride, dilation) of layer1..layer4: output stride 8.
LAYERS = ((64, 1, 1), (128, 2, 1), (256, 1, 2), (512, 1, 4))

# Dilated backbone convs of at most this many filters run as one oneDNN op
# (layers.DilatedConv2D), wider ones as Keras' SpaceToBatch conv, whichever
# is faster (benchmarks/dilated_conv.py).
NATIVE_DILATION_MAX_FILTERS = 255


def scaled_channels(channels, width):
    """`channels * width` rounded half up, at least 1."""
    return max(1, int(channels * width + 0.5))


def layer_seed(seed, name):
    """Initializer seed of layer `name`: CRC32 of "seed:name" (None if None)."""
    if seed is None:
        return None
    return zlib.crc32(f"{int(seed)}:{name}".encode("utf-8")) & 0x7FFFFFFF


def _conv(x, filters, kernel_size, name, seed, strides=1, dilation=1,
          padding="valid"):
    """Bias-free conv with a seeded He-normal initializer."""
    native = 1 < dilation and filters <= NATIVE_DILATION_MAX_FILTERS
    conv = DilatedConv2D if native else keras.layers.Conv2D
    return conv(
        filters, kernel_size, strides=strides, padding=padding,
        dilation_rate=dilation, use_bias=False,
        kernel_initializer=keras.initializers.HeNormal(
            seed=layer_seed(seed, name)),
        name=name)(x)


def _bn(x, name, bn_mode):
    train = bn_mode == "train"
    replicated = train and tf.distribute.get_strategy().num_replicas_in_sync > 1
    layer = ReplicaMeanBatchNorm if replicated else keras.layers.BatchNormalization
    return layer(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, trainable=train, name=name)(x)


def _block_conv(x, filters, kernel_size, name, seed, strides, dilation):
    """1x1 conv, or 3x3 with PyTorch padding = dilation (explicit if strided)."""
    if kernel_size == 1:
        return _conv(x, filters, 1, name, seed, strides=strides)
    if strides == 1:
        return _conv(x, filters, 3, name, seed, dilation=dilation,
                     padding="same")
    x = keras.layers.ZeroPadding2D(dilation, name=name + "_pad")(x)
    return _conv(x, filters, 3, name, seed, strides=strides,
                 dilation=dilation)


def residual_block(x, kind, planes, strides, dilation, prefix, bn_mode, seed):
    """Residual block of `kind` "bottleneck" or "basic", with its shortcut.

    Bottleneck: 1x1 (stride) -> 3x3 (dilation) -> 1x1 x4; basic: 3x3 (stride,
    dilation) -> 3x3 (dilation). Shortcut: identity, or 1x1 conv + BN when
    the stride or the channel count changes.
    """
    if kind == "bottleneck":
        convs = ((1, planes, strides), (3, planes, 1), (1, planes * 4, 1))
    else:
        convs = ((3, planes, strides), (3, planes, 1))
    shortcut = x
    if strides != 1 or x.shape[-1] != convs[-1][1]:
        shortcut = _conv(x, convs[-1][1], 1, prefix + "down_conv", seed,
                         strides=strides)
        shortcut = _bn(shortcut, prefix + "down_bn", bn_mode)
    for k, (kernel_size, filters, conv_strides) in enumerate(convs, start=1):
        x = _block_conv(x, filters, kernel_size, f"{prefix}conv{k}", seed,
                        conv_strides, dilation)
        x = _bn(x, f"{prefix}bn{k}", bn_mode)
        if k < len(convs):
            x = keras.layers.ReLU(name=f"{prefix}relu{k}")(x)
    x = keras.layers.Add(name=prefix + "add")([x, shortcut])
    return keras.layers.ReLU(name=prefix + "out")(x)


def stem(x, width, bn_mode, seed):
    """7x7/2 conv, BN, ReLU, 3x3/2 max pool (stride 4 in total).

    The pool is PyTorch's `MaxPool2d(3, 2, padding=1, ceil_mode=True)`: zero
    padding (1, 2), which is -inf padding after the ReLU, and floor(H / 2) + 1
    rows (256 -> 129). keras.applications ResNets pool in floor mode; the two
    agree when the stem output size is odd (66x66 inputs -> 33 -> 17).
    """
    x = keras.layers.ZeroPadding2D(3, name="stem_pad")(x)
    x = _conv(x, scaled_channels(64, width), 7, "stem_conv", seed, strides=2)
    x = _bn(x, "stem_bn", bn_mode)
    x = keras.layers.ReLU(name="stem_relu")(x)
    x = keras.layers.ZeroPadding2D(((1, 2), (1, 2)), name="stem_pool_pad")(x)
    return keras.layers.MaxPooling2D(3, strides=2, padding="valid",
                                     name="stem_pool")(x)


def resnet_features(inputs, depth=101, width=1.0, bn_mode="frozen",
                    seed=None):
    """{"layer1": ..., "layer4": ...}: the ResNet's four layer outputs
    (strides 4, 8, 8, 8) on `inputs`. Layer names (1-based; `weights` and
    `torch_weights` rely on them): "stem_*" and
    "layer{L}_block{B}_{conv1,bn1,...,down_conv,down_bn,add,out}".
    """
    choices.check("ResNet depth", depth, choices.DEPTHS)
    if not width > 0:
        raise ConfigError(f"ResNet width={width!r}; expected a number > 0")
    choices.check("bn_mode", bn_mode, choices.BN_MODES)
    kind, blocks = choices.RESNET_LAYOUTS[depth]
    x = stem(inputs, width, bn_mode, seed)
    features = {}
    for i, (num_blocks, (planes, stride, dilation)) in enumerate(
            zip(blocks, LAYERS), start=1):
        for b in range(1, num_blocks + 1):
            x = residual_block(x, kind, scaled_channels(planes, width),
                               stride if b == 1 else 1, dilation,
                               f"layer{i}_block{b}_", bn_mode, seed)
        features[f"layer{i}"] = x
    return features


def bottleneck_prefixes(model, error, weights):
    """Layer-name prefixes of `model`'s blocks, a list for each of layer1..4.

    Raises `error` if `model` is no tf_pixintra ResNet or has basic blocks.
    """
    names = {layer.name for layer in model.layers}
    if "stem_conv" not in names:
        raise error(f"model {model.name!r} has no layer 'stem_conv'; expected "
                    "a tf_pixintra ResNet / DeepLab-v2 model")
    stages = []
    for layer_index in range(1, 5):
        prefixes = []
        while f"layer{layer_index}_block{len(prefixes) + 1}_conv1" in names:
            prefix = f"layer{layer_index}_block{len(prefixes) + 1}_"
            if prefix + "conv3" not in names:
                raise error(f"model {model.name!r} layer {prefix + 'conv1'!r} "
                            f"is in a basic block; {weights} need bottleneck "
                            "blocks (depth 50 or 101)")
            prefixes.append(prefix)
        stages.append(prefixes)
    return stages


def build_resnet(depth=101, width=1.0, bn_mode="frozen", seed=None,
                 name="resnet"):
    """`resnet_features` as a keras.Model (no classifier); input float32
    [B, H, W, 3], Caffe-preprocessed, H and W dynamic."""
    inputs = keras.Input(shape=(None, None, 3), dtype="float32", name="image")
    features = resnet_features(inputs, depth, width, bn_mode, seed)
    return keras.Model(inputs, features, name=name)
