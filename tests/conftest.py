"""Shared pytest set-up: quiet TensorFlow, CPU only, two logical CPU devices.

The CPU is split into two logical devices before TensorFlow initialises, so
MirroredStrategy tests can run two replicas in this process; everything else
runs on /cpu:0 as usual.
"""

import itertools
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

# The package first: it sets TensorFlow's CPU options (oneDNN) before TF
# loads, so the tests run the kernels `python -m tf_pixintra.train` runs, and
# the worker processes some tests start (which inherit the environment) run
# the same kernels as this process.
import tf_pixintra  # noqa: E402,F401  pylint: disable=wrong-import-position
import tensorflow as tf  # noqa: E402  pylint: disable=wrong-import-position

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)


# Every MirroredStrategy of a process starts at the same collective group and
# instance keys, and TF caches each collective instance's shape by key: two
# strategies of one test process whose steps all-reduce different tensors in
# a different order then fail with "Shape mismatch in the collective
# instance" (seen with the Stage II diagnostics' extra all-reduce). TF's own
# tests give each strategy its own key base (strategy_combinations.py,
# `_mirrored_strategy_with_collective_key_base`); so does every strategy made
# in this test process. The pipeline makes one strategy per process.
_KEY_BASES = itertools.count(1)
_mirrored_init = tf.distribute.MirroredStrategy.__init__


def _mirrored_with_own_keys(self, *args, **kwargs):
    self._collective_key_base = 100000 * next(_KEY_BASES)  # pylint: disable=protected-access
    _mirrored_init(self, *args, **kwargs)


tf.distribute.MirroredStrategy.__init__ = _mirrored_with_own_keys
