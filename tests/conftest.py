"""Shared pytest set-up: quiet TensorFlow, CPU only, two logical CPU devices.

The CPU is split into two logical devices before TensorFlow initialises, so
MirroredStrategy tests can run two replicas in this process; everything else
runs on /cpu:0 as usual.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import tensorflow as tf  # noqa: E402  pylint: disable=wrong-import-position

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
