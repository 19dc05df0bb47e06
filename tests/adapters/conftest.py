"""Strategies for the adapter tests."""

import pytest
import tensorflow as tf

from tf_pixintra import runtime


@pytest.fixture
def mirrored():
    """Two CPU replicas (with collective keys of their own: tests/conftest.py)."""
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.fixture
def one_device():
    """What --strategy=one_device runs under: TF's default strategy."""
    return runtime.make_strategy("one_device")
