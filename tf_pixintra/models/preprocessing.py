"""Caffe-style input preprocessing used by every model in this project.

The DeepLab-v2 ResNet weights of the reference code bases (and
keras.applications ResNets) expect BGR images with the Caffe ImageNet mean
subtracted and no scaling by the standard deviation.
"""

import tensorflow as tf

# Caffe ImageNet mean, BGR order.
CAFFE_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)


def caffe_preprocess(rgb):
    """RGB image(s) in [0, 255] (uint8 or float, [..., H, W, 3]) -> float32 BGR - mean."""
    # Flip before the cast: identical numbers, and a full-integer TFLite
    # conversion then moves bytes instead of mis-quantizing a float reverse.
    bgr = tf.cast(tf.reverse(rgb, axis=[-1]), tf.float32)
    return bgr - tf.constant(CAFFE_MEAN_BGR, dtype=tf.float32)


def caffe_deprocess(bgr_minus_mean):
    """Inverse of `caffe_preprocess`: float32 RGB in [0, 255]."""
    x = tf.cast(bgr_minus_mean, tf.float32) + tf.constant(CAFFE_MEAN_BGR, tf.float32)
    return tf.reverse(x, axis=[-1])
