"""Dilated Caffe-style ResNet backbone of DeepLab-v2 (depth 18/34/50/101).

Layout (as the DeepLab-v2 ResNet-101 of AdaptSegNet / ADVENT / BDL runs it):

- stem: ZeroPadding 3 + 7x7/2 conv (no bias), BN, ReLU, then a 3x3/2 max
  pool emulating PyTorch's `MaxPool2d(3, 2, padding=1, ceil_mode=True)`:
  the input is zero padded by (1, 2) on each spatial axis and pooled 'valid'.
  The pool follows a ReLU, so zero padding equals -inf padding, and both
  give floor(H / 2) + 1 rows (256 -> 129). keras.applications ResNets pool
  in floor mode (padding 1, 1: floor((H - 1) / 2) + 1 rows): the two agree
  exactly when the stem output size is odd (e.g. 66x66 inputs -> 33 -> 17).
- layer1 stride 1; layer2 stride 2; layer3 stride 1, dilation 2;
  layer4 stride 1, dilation 4 (3x3 padding = dilation). Output stride 8:
  512x1024 -> 65x129.
- bottleneck blocks (depth 50/101: 3-4-6-3 / 3-4-23-3 blocks), Caffe style:
  the stride sits on the FIRST 1x1 conv; basic blocks (depth 18/34: 2-2-2-2
  / 3-4-6-3) put it on the first 3x3 conv (explicitly padded by 1 so that
  even sizes pad like PyTorch, one row each side).
- shortcut: 1x1 conv (stride of the block) + BN whenever the shape changes.
- every conv has no bias (torchvision / Caffe DeepLab); He-normal init.

BatchNorm, `bn_mode`:
- "frozen" (default, for pretrained backbones): every BN layer is built with
  `trainable=False`. In Keras 3 that also puts it in inference mode: the
  moving statistics are used and never updated, gamma/beta are not trained.
  This is the Caffe DeepLab-v2 choice (`use_global_stats`); the PyTorch
  references freeze gamma/beta but still normalise with batch statistics.
  Caution: setting `model.trainable = True` later unfreezes every BN layer
  (Keras propagates the flag); leave the flag alone on the generator.
- "train": ordinary trainable BN (batch statistics in training mode,
  momentum 0.9 as PyTorch's 0.1), for tiny models trained from scratch.
BN epsilon is 1e-5 (PyTorch / Caffe).

`width` scales every channel count (rounded, at least 1) for tiny CPU
configurations; the bottleneck expansion stays exactly 4.
"""

import zlib

import keras

from tf_pixintra import choices
from tf_pixintra.errors import ConfigError
from tf_pixintra.models.layers import DilatedConv2D

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9

# (stride, dilation) of layer1..layer4: output stride 8.
LAYER_STRIDES = (1, 2, 1, 1)
LAYER_DILATIONS = (1, 1, 2, 4)
BASE_PLANES = (64, 128, 256, 512)


def scaled_channels(channels, width):
    """`channels * width` rounded half up, at least 1."""
    return max(1, int(channels * width + 0.5))


def layer_seed(seed, name):
    """Seed for the initializer of layer `name`, derived from the model seed.

    None stays None (random). The derivation (CRC32 of "seed:name") is stable
    across processes and differs between layers, so equal seeds give equal
    weights and no two layers share an initial draw.
    """
    if seed is None:
        return None
    return zlib.crc32(f"{int(seed)}:{name}".encode("utf-8")) & 0x7FFFFFFF


# Dilated backbone convs narrower than this run as one oneDNN op
# (layers.DilatedConv2D), wider ones as Keras' SpaceToBatch conv: per
# benchmarks/dilated_conv.py the single op is the faster one at 64-128
# filters (the tiny configs) and the slower one at 256-512 (ResNet-101).
NATIVE_DILATION_MAX_FILTERS = 255


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
    """BatchNormalization; bn_mode "frozen" builds it with trainable=False."""
    return keras.layers.BatchNormalization(
        epsilon=BN_EPSILON, momentum=BN_MOMENTUM,
        trainable=(bn_mode == "train"), name=name)(x)


def _conv3x3(x, filters, name, seed, strides, dilation):
    """3x3 conv with PyTorch padding = dilation (explicit pad when strided)."""
    if strides == 1:
        return _conv(x, filters, 3, name, seed, dilation=dilation,
                     padding="same")
    x = keras.layers.ZeroPadding2D(dilation, name=name + "_pad")(x)
    return _conv(x, filters, 3, name, seed, strides=strides,
                 dilation=dilation)


def _shortcut(x, out_channels, strides, prefix, bn_mode, seed):
    """Identity, or 1x1 conv + BN when stride or channel count changes."""
    if strides == 1 and x.shape[-1] == out_channels:
        return x
    s = _conv(x, out_channels, 1, prefix + "down_conv", seed, strides=strides)
    return _bn(s, prefix + "down_bn", bn_mode)


def bottleneck_block(x, planes, strides, dilation, prefix, bn_mode, seed):
    """Caffe-style bottleneck: 1x1 (stride) -> 3x3 (dilation) -> 1x1 x4."""
    shortcut = _shortcut(x, planes * 4, strides, prefix, bn_mode, seed)
    y = _conv(x, planes, 1, prefix + "conv1", seed, strides=strides)
    y = _bn(y, prefix + "bn1", bn_mode)
    y = keras.layers.ReLU(name=prefix + "relu1")(y)
    y = _conv3x3(y, planes, prefix + "conv2", seed, 1, dilation)
    y = _bn(y, prefix + "bn2", bn_mode)
    y = keras.layers.ReLU(name=prefix + "relu2")(y)
    y = _conv(y, planes * 4, 1, prefix + "conv3", seed)
    y = _bn(y, prefix + "bn3", bn_mode)
    y = keras.layers.Add(name=prefix + "add")([y, shortcut])
    return keras.layers.ReLU(name=prefix + "out")(y)


def basic_block(x, planes, strides, dilation, prefix, bn_mode, seed):
    """Basic block: 3x3 (stride, dilation) -> 3x3 (dilation)."""
    shortcut = _shortcut(x, planes, strides, prefix, bn_mode, seed)
    y = _conv3x3(x, planes, prefix + "conv1", seed, strides, dilation)
    y = _bn(y, prefix + "bn1", bn_mode)
    y = keras.layers.ReLU(name=prefix + "relu1")(y)
    y = _conv3x3(y, planes, prefix + "conv2", seed, 1, dilation)
    y = _bn(y, prefix + "bn2", bn_mode)
    y = keras.layers.Add(name=prefix + "add")([y, shortcut])
    return keras.layers.ReLU(name=prefix + "out")(y)


def stem(x, width, bn_mode, seed):
    """7x7/2 conv, BN, ReLU, 3x3/2 ceil-mode max pool (stride 4 in total)."""
    x = keras.layers.ZeroPadding2D(3, name="stem_pad")(x)
    x = _conv(x, scaled_channels(64, width), 7, "stem_conv", seed, strides=2)
    x = _bn(x, "stem_bn", bn_mode)
    x = keras.layers.ReLU(name="stem_relu")(x)
    # PyTorch MaxPool2d(3, 2, padding=1, ceil_mode=True); zero padding is
    # -inf padding here because the input is post-ReLU (>= 0).
    x = keras.layers.ZeroPadding2D(((1, 2), (1, 2)), name="stem_pool_pad")(x)
    return keras.layers.MaxPooling2D(3, strides=2, padding="valid",
                                     name="stem_pool")(x)


def resnet_features(inputs, depth=101, width=1.0, bn_mode="frozen",
                    seed=None):
    """Add the dilated ResNet to the graph of `inputs`; return its features.

    Returns a dict {"layer1": ..., "layer4": ...} of the four layer outputs
    (strides 4, 8, 8, 8). Layer names: "stem_*" and
    "layer{L}_block{B}_{conv1,bn1,...,down_conv,down_bn,add,out}" (1-based);
    `tf_pixintra.models.weights` relies on them.
    """
    choices.check("ResNet depth", depth, choices.DEPTHS)
    if not width > 0:
        raise ConfigError(f"ResNet width={width!r}; expected a number > 0")
    choices.check("bn_mode", bn_mode, choices.BN_MODES)
    kind, blocks = choices.RESNET_LAYOUTS[depth]
    block_fn = bottleneck_block if kind == "bottleneck" else basic_block
    x = stem(inputs, width, bn_mode, seed)
    features = {}
    for i, num_blocks in enumerate(blocks):
        planes = scaled_channels(BASE_PLANES[i], width)
        for b in range(num_blocks):
            strides = LAYER_STRIDES[i] if b == 0 else 1
            prefix = f"layer{i + 1}_block{b + 1}_"
            x = block_fn(x, planes, strides, LAYER_DILATIONS[i], prefix,
                         bn_mode, seed)
        features[f"layer{i + 1}"] = x
    return features


def build_resnet(depth=101, width=1.0, bn_mode="frozen", seed=None,
                 name="resnet"):
    """Dilated Caffe-style ResNet as a keras.Model (no classifier).

    Input: float32 [B, H, W, 3], Caffe-preprocessed, H and W dynamic.
    Output: dict {"layer1": [B, h4, w4, C1], "layer2".."layer4": stride 8}.
    """
    inputs = keras.Input(shape=(None, None, 3), dtype="float32", name="image")
    features = resnet_features(inputs, depth, width, bn_mode, seed)
    return keras.Model(inputs, features, name=name)
