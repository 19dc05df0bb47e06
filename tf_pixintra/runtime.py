"""Devices, tf.distribute strategies and mixed precision, set up once per process.

Batch sizes are GLOBAL: each of R replicas gets batch_size / R examples and divides each
loss by R, so the all-reduced (summed) gradients are those of the global mean.
"""

import json
import os

import keras
import tensorflow as tf

from tf_pixintra import choices
from tf_pixintra.errors import ConfigError


def split_cpu(num_devices):
    """Splits the CPU into `num_devices` logical devices (before TF starts)."""
    cpus = tf.config.list_physical_devices("CPU")
    current = tf.config.get_logical_device_configuration(cpus[0])
    if current and len(current) == num_devices:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * num_devices)
    except RuntimeError as e:
        raise ConfigError(f"cannot split the CPU into {num_devices} devices after TensorFlow "
                          f"has initialised its devices ({e})") from None


def make_strategy(strategy="one_device", devices=0):
    """The tf.distribute strategy named by --strategy / --devices."""
    choices.check("--strategy", strategy, choices.STRATEGIES)
    if strategy == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ConfigError("--strategy=multi_worker needs TF_CONFIG "
                              "(cluster and task of this worker)")
        try:
            json.loads(os.environ["TF_CONFIG"])
        except ValueError:
            raise ConfigError(
                f"TF_CONFIG is not valid JSON: {os.environ['TF_CONFIG']!r}") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_physical_devices("GPU")
    if strategy == "one_device":
        # The default strategy, not OneDeviceStrategy: TF places ops on the first GPU (else
        # the CPU) either way, and a first fit() under OneDeviceStrategy trains slower per
        # step (benchmarks/fit_strategy.py; BENCHMARKS.md, "Train step cost").
        return tf.distribute.get_strategy()
    if gpus:
        names = [f"/gpu:{i}" for i in range(len(gpus))]
        if devices:
            if devices > len(gpus):
                raise ConfigError(f"--devices={devices}: only {len(gpus)} GPUs")
            names = names[:devices]
        return tf.distribute.MirroredStrategy(names)
    count = devices or 1
    split_cpu(count)
    names = [d.name for d in tf.config.list_logical_devices("CPU")][:count]
    return tf.distribute.MirroredStrategy(names)


def set_deterministic(seed):
    """Makes training repeatable on one machine (--deterministic): TF op determinism
    (deterministic kernels, slower) and the Python, NumPy and TF global seeds from `seed`.
    Call before any op runs."""
    keras.utils.set_random_seed(int(seed))
    tf.config.experimental.enable_op_determinism()


def set_precision(policy):
    """Sets the Keras dtype policy (float32, mixed_float16, mixed_bfloat16)."""
    keras.mixed_precision.set_global_policy(policy)


def worker_info(strategy):
    """(task_type, task_id, is_chief) of this process."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return None, 0, True
    task_type, task_id = resolver.task_type, resolver.task_id
    is_chief = task_type == "chief" or (task_type == "worker" and task_id == 0)
    return task_type, task_id, is_chief


def worker_index(strategy):
    """(index, count) of this process among the chief and worker tasks of TF_CONFIG that
    share stages (the chief first, then the workers by task index); otherwise (0, 1)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return 0, 1
    spec = resolver.cluster_spec().as_dict()
    chiefs = len(spec.get("chief", ()))
    count = chiefs + len(spec.get("worker", ()))
    if resolver.task_type == "chief":
        return 0, count
    if resolver.task_type == "worker":
        return chiefs + resolver.task_id, count
    return 0, 1    # an evaluator or parameter server shares no stage
