"""Fully-convolutional discriminator of AdaptSegNet (and PixIntraDA's PLA/CTS).

Five 4x4 convs, stride 2, padding 1 (explicit ZeroPadding2D(1) + 'valid'
conv, so 512x1024 -> 16x32), channels C -> ndf -> 2ndf -> 4ndf -> 8ndf -> 1,
LeakyReLU(0.2) after the first four, no normalisation, with bias. Kernel
init is PyTorch's default for convs (uniform, variance 1 / (3 fan_in)), biases
zero. With 19 inputs and ndf 64 it has 2,781,121 weights.

`pixel_level=True` bilinearly upsamples the logit map to the input's own
(dynamic) spatial size (paper Sec 5.1, Eq. 6 and 8 are per-pixel).
"""

import keras

from tf_pixintra.errors import ConfigError
from tf_pixintra.models.layers import ResizeLike
from tf_pixintra.models.resnet import layer_seed


def _conv4x4(x, filters, name, seed):
    x = keras.layers.ZeroPadding2D(1, name=name + "_pad")(x)
    return keras.layers.Conv2D(
        filters, 4, strides=2, padding="valid", use_bias=True,
        kernel_initializer=keras.initializers.VarianceScaling(
            1.0 / 3.0, mode="fan_in", distribution="uniform",
            seed=layer_seed(seed, name)),
        bias_initializer="zeros", name=name)(x)


def build_discriminator(num_classes, ndf=64, pixel_level=False, seed=None,
                        name="discriminator"):
    """FC discriminator D.

    Args:
      num_classes: input channels C (the segmentation network's classes).
      ndf: channels of the first conv (64 in the paper).
      pixel_level: upsample the output to the input's spatial size.
      seed: int for reproducible initial weights, None for random.
      name: model name.

    Returns:
      keras.Model; input float32 [B, H, W, C] (softmax maps), H, W dynamic;
      output float32 logits [B, H/32, W/32, 1] (floor per stride-2 step), or
      [B, H, W, 1] when pixel_level.
    """
    if not (isinstance(num_classes, int) and num_classes >= 1):
        raise ConfigError(f"num_classes={num_classes!r}; expected an int >= 1")
    if not (isinstance(ndf, int) and ndf >= 1):
        raise ConfigError(f"ndf={ndf!r}; expected an int >= 1")
    inputs = keras.Input(shape=(None, None, num_classes), dtype="float32",
                         name="probs")
    x = inputs
    for i, mult in enumerate((1, 2, 4, 8)):
        x = _conv4x4(x, ndf * mult, f"d_conv{i + 1}", seed)
        x = keras.layers.LeakyReLU(negative_slope=0.2,
                                   name=f"d_lrelu{i + 1}")(x)
    x = _conv4x4(x, 1, "d_classifier", seed)
    logits = keras.layers.Activation("linear", dtype="float32",
                                     name="d_logits")(x)
    if pixel_level:
        logits = ResizeLike(dtype="float32", name="d_upsample")(
            [logits, inputs])
    return keras.Model(inputs, logits, name=name)
