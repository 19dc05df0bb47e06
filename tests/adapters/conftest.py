"""Strategies for the adapter tests."""

import pytest
import tensorflow as tf


@pytest.fixture
def mirrored():
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.fixture
def one_device():
    return tf.distribute.OneDeviceStrategy("/cpu:0")
