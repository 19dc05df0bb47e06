"""Fully-convolutional discriminator of AdaptSegNet (and PixIntraDA's PLA/CTS).

Five 4x4 convs, stride 2, padding 1 (explicit ZeroPadding2D(1) + 'valid'
conv, so 512x1024 -> 16x32; AdaptSegNet's model/discriminator.py), channels C -> ndf -> 2ndf -> 4ndf -> 8ndf -> 1,
LeakyReLU(0.2) after the first four, no normalisation, with bias. Kernel
init is PyTorch's default for convs (uniform, variance 1 / (3 fan_in)), biases
zero. With 19 inputs and ndf 64 it has 2,781,121 weights. The LeakyReLU is
`tf_pixintra.models.layers.LeakyReLU` (same function, gradient read from its
output) so that grappler's conv + bias + LeakyReLU fusion applies in training.

`output_stride` < 32 (not in the paper) keeps the first log2(output_stride)
convs at stride 2 and makes the rest stride 1 with padding (1, 2), which
keeps their input size: a benchmark at 1/8 of the paper's 512x1024 input
(64x128) gets the paper's 16x32 output grid with output_stride=4. The
weights are the same in number and shape; each later conv sees a smaller
share of the image (the receptive field shrinks).

`pixel_level=True` bilinearly upsamples the logit map to the input's own
(dynamic) spatial size (paper Sec 5.1, Eq. 6 and 8 are per-pixel).
"""

import keras

from tf_pixintra import choices
from tf_pixintra.errors import ConfigError
from tf_pixintra.models.layers import LeakyReLU
from tf_pixintra.models.layers import ResizeLike
from tf_pixintra.models.resnet import layer_seed


def _conv4x4(x, filters, name, seed, stride=2):
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
    """FC discriminator D.

    Args:
      num_classes: input channels C (the segmentation network's classes).
      ndf: channels of the first conv (64 in the paper).
      pixel_level: upsample the output to the input's spatial size.
      seed: int for reproducible initial weights, None for random.
      name: model name.
      output_stride: 32 (the paper's D), 16, 8, 4 or 2: how many of the five
        convs keep stride 2 (log2 of it); the others have stride 1.

    Returns:
      keras.Model; input float32 [B, H, W, C] (softmax maps), H, W dynamic;
      output float32 logits [B, H/s, W/s, 1] for s = output_stride (floor
      per stride-2 step), or [B, H, W, 1] when pixel_level.
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
