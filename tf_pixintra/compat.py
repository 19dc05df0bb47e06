"""Workarounds for Keras 3 / TensorFlow problems, each with its upstream report.

tests/test_compat.py shows each problem still exists; when one fails after an upgrade,
the workaround it names can go.
"""

import keras
import tensorflow as tf
# TF's runtime oneDNN switch (private; see `onednn_enabled`).
from tensorflow.python.util import _pywrap_util_port  # pylint: disable=no-name-in-module


def in_multi_worker_mode(strategy=None):
    """True under a MultiWorkerMirroredStrategy that spans several workers.

    Keras' own test (`_collective_all_reduce_multi_worker`, keras/src/backend/tensorflow/
    trainer.py; TF has no public one), so the workarounds below apply exactly where Keras
    takes its multi-worker branch (keras-team/keras#20585).
    """
    strategy = strategy or tf.distribute.get_strategy()
    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._in_multi_worker_mode())  # pylint: disable=protected-access


def reducible_logs(logs, strategy=None):
    """A train step's logs in a form Keras can reduce across workers.

    keras-team/keras#20585 (the error is tensorflow/tensorflow#72388): across workers Keras
    reduces each logged value with strategy.reduce(MEAN, axis=0), which fails on a scalar
    ("Invalid reduction dimension 0"); a batch axis of 1 makes it the mean over replicas.
    """
    if not in_multi_worker_mode(strategy):
        return logs
    return {k: tf.reshape(v, [1]) for k, v in logs.items()}


class PrebuiltModel(keras.Model):
    """A keras.Model built in __init__ that trains on dict batches.

    keras-team/keras#20329 (dict inputs): fit() builds an unbuilt model by calling it on a
    training batch, which fails when `call` takes one entry of a dict batch; a model whose
    sub-models are built already marks itself built.

    keras-team/keras#20585 (multi-worker MWMS) and #20329: even then, before training Keras
    reduces a batch across replicas, which across workers fails on a dict ("Attempt to
    convert a value ({...}) with an unsupported type"). The model and its optimizers are
    built and it compiles no loss or metric, so the symbolic build is skipped there.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.built = True

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if in_multi_worker_mode(self.distribute_strategy):
            return None
        return super()._maybe_symbolic_build(iterator=iterator,
                                             data_batch=data_batch)


def onednn_enabled():
    """Whether TensorFlow runs its oneDNN CPU kernels in this process.

    TF's own runtime answer (TF_ENABLE_ONEDNN_OPTS, read when TF loads, with TF's default
    per CPU; `tf.sysconfig` has none). False if a TF release drops the private function.
    """
    check = getattr(_pywrap_util_port, "IsMklEnabled", None)
    return bool(check and check())


@keras.saving.register_keras_serializable(package="tf_pixintra")
class ReplicaMeanBatchNorm(keras.layers.BatchNormalization):
    """BatchNormalization whose moving statistics are averaged over the replicas
    at every update, so every replica (and worker) holds the same ones.

    Keras 3's BatchNormalization creates them with aggregation "none"
    (keras/src/layers/normalization/batch_normalization.py, `build`): each
    replica then keeps the statistics of its own share of the batch, and a
    saved model holds replica 0's. Batch statistics stay per replica, as in
    TF Keras 2's BN. (Keras' `synchronized=True` all-reduces them instead,
    but its gradient is a collective, which TF refuses inside the tf.cond of
    the Stage II gradient diagnostic.)
    """

    def add_weight(self, *args, trainable=True, **kwargs):
        if not trainable:   # moving_mean, moving_variance
            kwargs["aggregation"] = "mean"
        return super().add_weight(*args, trainable=trainable, **kwargs)
