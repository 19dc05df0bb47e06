"""Custom Keras layers, registered for `.keras` loading (package "tf_pixintra").

Saved models load without `custom_objects` once `tf_pixintra.models` is
imported.
"""

import keras
import tensorflow as tf

from tf_pixintra import compat

_INTERPOLATIONS = ("bilinear", "nearest")


@keras.saving.register_keras_serializable(package="tf_pixintra")
class ResizeLike(keras.layers.Layer):
    """`ResizeLike()([x, reference])`: x [B, h, w, C] -> [B, H, W, C].

    H, W: the dynamic spatial size of `reference` (paper Sec 5.1: D's map is
    upsampled to the input size). Bilinear is half-pixel, PyTorch's
    `align_corners=False`.
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
        resized = tf.image.resize(x, tf.shape(reference)[1:3],
                                  method=self.interpolation)
        return tf.cast(resized, x.dtype)

    def compute_output_shape(self, input_shape):
        x_shape, ref_shape = input_shape
        return (x_shape[0], ref_shape[1], ref_shape[2], x_shape[-1])

    def get_config(self):
        return {**super().get_config(), "interpolation": self.interpolation}


@keras.saving.register_keras_serializable(package="tf_pixintra")
class LeakyReLU(keras.layers.LeakyReLU):
    """keras.layers.LeakyReLU whose gradient reads the layer's OUTPUT.

    Bitwise the same values and gradients (slope >= 0: y > 0 exactly where
    x > 0). TF's gradient reads the input, a second reader of the conv + bias
    output, which oneDNN's grappler remapper ignores when it fuses them
    (`FindContractionWithActivation` in tensorflow/tensorflow,
    tensorflow/core/grappler/optimizers/remapper.cc) and then fails (README).
    """

    def __init__(self, negative_slope=0.3, **kwargs):
        super().__init__(negative_slope=negative_slope, **kwargs)
        if not self.negative_slope >= 0:
            raise ValueError(f"LeakyReLU: negative_slope={negative_slope!r}; "
                             "expected >= 0 (the gradient reads the sign of "
                             "the output)")

    def call(self, inputs):
        alpha = self.negative_slope

        @tf.custom_gradient
        def forward(x):
            y = tf.nn.leaky_relu(x, alpha=alpha)

            def grad(dy):
                return tf.raw_ops.LeakyReluGrad(gradients=dy, features=y,
                                                alpha=alpha)
            return y, grad
        return forward(inputs)


@keras.saving.register_keras_serializable(package="tf_pixintra")
class DilatedConv2D(keras.layers.Conv2D):
    """keras.layers.Conv2D whose dilated stride-1 conv is ONE Conv2D op.

    Keras wraps a dilated conv in SpaceToBatchND / BatchToSpaceND. With
    oneDNN on, float32 compute and strides 1 this layer calls
    `tf.nn.conv2d(..., dilations=...)`, which oneDNN runs directly, gradients
    included; otherwise (TF's Eigen CPU kernels have no dilated filter
    gradient; float16 / bfloat16) it is Keras' Conv2D. Same weights and
    convolution; only the float rounding of the sums may differ.
    """

    def convolution_op(self, inputs, kernel):
        if (max(self.dilation_rate) == 1 or max(self.strides) != 1
                or self.data_format != "channels_last"
                or inputs.dtype != tf.float32 or not compat.onednn_enabled()):
            return super().convolution_op(inputs, kernel)
        return tf.nn.conv2d(inputs, kernel, strides=1,
                            padding=self.padding.upper(),
                            dilations=list(self.dilation_rate))
