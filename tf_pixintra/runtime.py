"""Devices, tf.distribute strategies and mixed precision, set up once per process.

Global batch semantics: every batch size in the configs is GLOBAL. With R
replicas each replica gets batch_size / R examples, and each loss is divided
by R before its gradient so the all-reduced (summed) gradients equal the
gradient of the global mean.
"""

import json
import os

import keras
import tensorflow as tf

from tf_pixintra import choices
from tf_pixintra.errors import ConfigError

_configured = {}


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
        raise ConfigError(
            f"cannot split the CPU into {num_devices} devices after TensorFlow "
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
            raise ConfigError("TF_CONFIG is not valid JSON: "
                              f"{os.environ['TF_CONFIG']!r}") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_physical_devices("GPU")
    if strategy == "one_device":
        # The default strategy, not OneDeviceStrategy: TF places the ops on
        # the first GPU (else the CPU) either way, and a process whose first
        # fit() runs under a OneDeviceStrategy trains 1.4-2.4x slower per
        # step on a 2-core CPU (benchmarks/fit_strategy.py; BENCHMARKS.md,
        # "Train step cost").
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
    """Makes training repeatable on one machine (the --deterministic flag).

    Turns on TF op determinism (every op picks a deterministic kernel or
    raises; reductions and scatter-adds then run in a fixed order, which is
    slower) and sets the Python, NumPy and TF global seeds from `seed`. The
    models, discriminators and input pipelines already draw from explicit
    seeds (stateless augmentation, `deterministic=True` tf.data maps), so
    the global seeds only fix whatever would otherwise draw from them.
    Call before any op runs.
    """
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
    """(index, count) of this process among the workers that share stages.

    Under MultiWorkerMirroredStrategy `count` is the number of chief and
    worker tasks in TF_CONFIG and `index` this task's place among them (the
    chief first, then the workers by task index); otherwise (0, 1).
    """
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
