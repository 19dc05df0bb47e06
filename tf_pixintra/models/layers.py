"""Custom Keras layers of tf_pixintra's networks.

Every layer here is registered for `.keras` (de)serialisation under the
package name "tf_pixintra", so saved models load without `custom_objects`
once `tf_pixintra.models` has been imported.
"""

import keras
import tensorflow as tf

from tf_pixintra import compat

_INTERPOLATIONS = ("bilinear", "nearest")


@keras.saving.register_keras_serializable(package="tf_pixintra")
class ResizeLike(keras.layers.Layer):
    """Resize `x` [B, h, w, C] to the (dynamic) spatial size of `reference`.

    Called as `ResizeLike()([x, reference])`, with `reference` any tensor
    [B, H, W, ...]; the output is [B, H, W, C]. Bilinear resizing uses the
    half-pixel convention of `tf.image.resize` (PyTorch's
    `align_corners=False`). Only the shape of `reference` is used, so H and W
    may be unknown until run time (paper Sec 5.1: the pixel-level
    discriminator's map is upsampled to the input size).
    """

    def __init__(self, interpolation="bilinear", **kwargs):
        super().__init__(**kwargs)
        if interpolation not in _INTERPOLATIONS:
            raise ValueError(
                f"ResizeLike: interpolation={interpolation!r}; expected one "
                f"of {_INTERPOLATIONS}")
        self.interpolation = interpolation

    def call(self, inputs):
        x, reference = inputs
        size = tf.shape(reference)[1:3]
        resized = tf.image.resize(x, size, method=self.interpolation)
        return tf.cast(resized, x.dtype)

    def compute_output_shape(self, input_shape):
        x_shape, ref_shape = input_shape
        return (x_shape[0], ref_shape[1], ref_shape[2], x_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update({"interpolation": self.interpolation})
        return config


@keras.saving.register_keras_serializable(package="tf_pixintra")
class LeakyReLU(keras.layers.LeakyReLU):
    """keras.layers.LeakyReLU whose gradient reads the layer's OUTPUT.

    Same values and bitwise the same gradients as Keras' layer: with a slope
    >= 0, y = leaky_relu(x) is > 0 exactly where x is, so
    LeakyReluGrad(dy, y) == LeakyReluGrad(dy, x). Why: TensorFlow's own
    gradient reads the INPUT x, so in a training graph the conv + bias output
    feeding the activation has a second reader. With oneDNN enabled
    (TensorFlow's default on recent Intel CPUs, or TF_ENABLE_ONEDNN_OPTS=1)
    grappler's remapper then fuses the LeakyRelu into the conv without
    checking that reader (`FindContractionWithActivation` in
    tensorflow/core/grappler/optimizers/remapper.cc of tensorflow/tensorflow),
    deletes the node the gradient reads, and fails: "remapper failed:
    INVALID_ARGUMENT: Mutation::Apply error: fanout '.../LeakyReluGrad' exist
    for missing node '.../BiasAdd'", which drops every rewrite of that pass.
    Reading the output leaves the conv + bias with one reader, so the regular
    Conv2D + BiasAdd + LeakyRelu fusion applies.
    """

    def __init__(self, negative_slope=0.3, **kwargs):
        super().__init__(negative_slope=negative_slope, **kwargs)
        if not self.negative_slope >= 0:
            raise ValueError(f"LeakyReLU: negative_slope={negative_slope!r}; "
                             "expected >= 0 (the gradient reads the sign of "
                             "the output)")

    def call(self, inputs):
        return leaky_relu_output_grad(inputs, self.negative_slope)


def leaky_relu_output_grad(x, alpha):
    """tf.nn.leaky_relu(x, alpha) with its gradient computed from the output."""

    @tf.custom_gradient
    def forward(x):
        y = tf.nn.leaky_relu(x, alpha=alpha)

        def grad(dy):
            return tf.raw_ops.LeakyReluGrad(gradients=dy, features=y,
                                            alpha=alpha)
        return y, grad

    return forward(x)


@keras.saving.register_keras_serializable(package="tf_pixintra")
class DilatedConv2D(keras.layers.Conv2D):
    """keras.layers.Conv2D whose dilated stride-1 conv is ONE Conv2D op.

    Keras computes a dilated convolution through `tf.nn.convolution`, which
    (off TPU) turns it into SpaceToBatchND -> dense conv -> BatchToSpaceND:
    two extra copies of the activations each way, and at DeepLab-v2's
    dilations (the ASPP's 6-24 on a stride-8 map) mostly padding. TF's
    oneDNN kernels (tf_pixintra's default) take the dilation directly in
    Conv2D and in both of its gradients, so this layer calls
    `tf.nn.conv2d(..., dilations=...)` when oneDNN is on, the compute dtype
    is float32 and the strides are 1. Otherwise (TF's Eigen CPU kernels
    have no dilated filter gradient: "Current CPU implementations do not
    yet support dilation rates larger than 1"; float16 / bfloat16 compute)
    it is Keras' Conv2D. The same weights and the same convolution either
    way; only the float rounding of the sums may differ. DeepLab-v2 uses it
    for the ASPP branches and for backbone convs of at most
    resnet.NATIVE_DILATION_MAX_FILTERS filters; ResNet-101's wider ones are
    faster as Keras' SpaceToBatch convs (benchmarks/dilated_conv.py).
    """

    def convolution_op(self, inputs, kernel):
        if (max(self.dilation_rate) == 1 or max(self.strides) != 1
                or self.data_format != "channels_last"
                or inputs.dtype != tf.float32 or not compat.onednn_enabled()):
            return super().convolution_op(inputs, kernel)
        return tf.nn.conv2d(inputs, kernel, strides=1,
                            padding=self.padding.upper(),
                            dilations=list(self.dilation_rate))
