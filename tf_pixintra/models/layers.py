"""Custom Keras layers of tf_pixintra's networks.

Every layer here is registered for `.keras` (de)serialisation under the
package name "tf_pixintra", so saved models load without `custom_objects`
once `tf_pixintra.models` has been imported.
"""

import keras
import tensorflow as tf

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
