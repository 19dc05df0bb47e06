"""Fully-convolutional discriminator of AdaptSegNet (and PixIntraDA's PLA/CTS).

As AdaptSegNet's model/discriminator.py: five 4x4 convs, stride 2, padding 1
(512x1024 -> 16x32), channels C -> ndf -> 2ndf -> 4ndf -> 8ndf -> 1,
LeakyReLU(0.2) after the first four, no normalisation, with bias; kernel
init PyTorch's default for convs (uniform, variance 1 / (3 fan_in)), biases
zero. `layers.LeakyReLU` lets grappler fuse conv + bias + LeakyReLU.
"""

import keras

from tf_pixintra import choices
from tf_pixintra.errors import ConfigError
from tf_pixintra.models.layers import LeakyReLU, ResizeLike
from tf_pixintra.models.resnet import layer_seed


def _conv4x4(x, filters, name, seed, stride):
    # Stride 2: pad 1 on each side (H -> floor(H / 2)); stride 1: pad (1, 2),
    # so a 4x4 'valid' conv keeps the size.
    pad = 1 if stride == 2 else ((1, 2), (1, 2))
    x = keras.layers.ZeroPadding2D(pad, name=name + "_pad")(x)
    return keras.layers.Conv2D(
        filters, 4, strides=stride, padding="valid", use_bias=True,
        kernel_initializer=keras.initializers.VarianceScaling(
            1.0 / 3.0, mode="fan_in", distribution="uniform",
            seed=layer_seed(seed, name)),
        bias_initializer="zeros", name=name)(x)


def build_discriminator(num_classes, ndf=64, pixel_level=False, seed=None,
                        name="discriminator", output_stride=32):
    """FC discriminator D, for `num_classes` input channels C.

    `ndf`: channels of the first conv (64 in the paper); `seed`: int for
    reproducible initial weights, None for random; `output_stride` 32 (the
    paper's), 16, 8, 4 or 2 (not in the paper; same weights, smaller
    receptive field): the first log2(output_stride) convs have stride 2, the
    others stride 1, so output_stride=4 on 64x128 inputs gives the paper's
    16x32 grid. `pixel_level` upsamples the logits bilinearly to the input
    size (paper Sec 5.1, Eq. 6 and 8 are per-pixel).

    Returns a keras.Model: input float32 [B, H, W, C] (softmax maps), H, W
    dynamic; output float32 logits [B, H/s, W/s, 1] for s = output_stride
    (floor per stride-2 step), or [B, H, W, 1] when `pixel_level`.
    """
    if not (isinstance(num_classes, int) and num_classes >= 1):
        raise ConfigError(f"num_classes={num_classes!r}; expected an int >= 1")
    if not (isinstance(ndf, int) and ndf >= 1):
        raise ConfigError(f"ndf={ndf!r}; expected an int >= 1")
    choices.check("output_stride", output_stride, choices.D_OUTPUT_STRIDES)
    strides = [2 if 2 ** (i + 1) <= output_stride else 1 for i in range(5)]
    inputs = keras.Input(shape=(None, None, num_classes), dtype="float32",
                         name="probs")
    x = inputs
    for i, mult in enumerate((1, 2, 4, 8)):
        x = _conv4x4(x, ndf * mult, f"d_conv{i + 1}", seed, strides[i])
        x = LeakyReLU(negative_slope=0.2, name=f"d_lrelu{i + 1}")(x)
    x = _conv4x4(x, 1, "d_classifier", seed, strides[4])
    logits = keras.layers.Activation("linear", dtype="float32",
                                     name="d_logits")(x)
    if pixel_level:
        logits = ResizeLike(dtype="float32", name="d_upsample")(
            [logits, inputs])
    return keras.Model(inputs, logits, name=name)
