"""Caffe preprocessing: BGR, ImageNet mean subtracted, no scaling by std.

What the DeepLab-v2 ResNet weights of the reference code bases (and
keras.applications ResNets) expect.
"""

import tensorflow as tf

# Caffe ImageNet mean, BGR order.
CAFFE_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)


def caffe_preprocess(rgb):
    """RGB image(s) in [0, 255] (uint8 or float, [..., H, W, 3]) -> float32 BGR - mean."""
    # Flip before the cast: the exported uint8 graphs then move bytes, and
    # the TFLite int8 converter mis-quantizes a float REVERSE_V2 (wrong
    # colours).
    bgr = tf.cast(tf.reverse(rgb, axis=[-1]), tf.float32)
    return bgr - tf.constant(CAFFE_MEAN_BGR, dtype=tf.float32)
