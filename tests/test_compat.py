"""Each workaround of tf_pixintra.compat still answers a problem of the
installed Keras / TensorFlow. A failure here after an upgrade means the
upstream problem is gone: delete the workaround and its test.

Where the problem shows only across worker processes, the test reproduces
the piece of Keras or TensorFlow that fails there, in this process.
"""

import os
import platform

import keras
import pytest
import tensorflow as tf
from keras.src.backend.tensorflow import trainer as keras_tf_trainer

from tf_pixintra import compat


class DictModel(keras.Model):
    """A model built in __init__ whose train_step reads a dict batch."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.inner = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])

    def call(self, inputs, training=False):
        return self.inner(inputs, training=training)

    def train_step(self, data):
        return {"loss": tf.reduce_mean(self.inner(data["x"]))}


class PrebuiltDictModel(compat.PrebuiltModel, DictModel):
    pass


def _fit(model_class, strategy):
    with strategy.scope():
        model = model_class()
        model.compile(optimizer="sgd")
    data = tf.data.Dataset.from_tensors(
        {"x": tf.ones((2, 2)), "other": tf.ones((2, 3))}).repeat(2)
    return model.fit(data, verbose=0).history["loss"]


def test_fit_calls_an_unbuilt_model_on_a_dict_batch():
    """keras-team/keras#20329: the reason PrebuiltModel sets `built`.
    Two CPU replicas (tests/conftest.py) make Keras build symbolically."""
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with pytest.raises(ValueError, match="structure of `inputs`"):
        _fit(DictModel, mirrored)
    assert len(_fit(PrebuiltDictModel, mirrored)) == 1


def test_cross_device_reduction_refuses_a_dict_batch():
    """keras-team/keras#20585: why PrebuiltModel skips the symbolic build
    across workers. There Keras reduces the whole dict batch with the
    strategy's cross-device ops, whose `reduce` (shared by all of them,
    shown with ReductionToOneDevice) converts its argument to one tensor."""
    batch = {"x": tf.ones((2, 2))}
    with pytest.raises(ValueError, match="unsupported type"):
        tf.distribute.ReductionToOneDevice().reduce(
            tf.distribute.ReduceOp.MEAN, batch, destinations="/cpu:0")
    # The method PrebuiltModel overrides is still Keras' hook.
    assert "_maybe_symbolic_build" in vars(keras_tf_trainer.TensorFlowTrainer)


class TwoWorkers(tf.distribute.MultiWorkerMirroredStrategy):
    """Stands in for a two-worker strategy without starting workers: it
    says it spans several workers and reduces as the default strategy."""

    def __init__(self, multi=True):  # pylint: disable=super-init-not-called
        self._multi = multi

    @property
    def extended(self):
        return type("Extended", (), {
            "_in_multi_worker_mode": lambda _: self._multi})()

    def reduce(self, reduce_op, value, axis):
        return tf.distribute.get_strategy().reduce(reduce_op, value, axis)


def test_keras_multi_worker_test_is_ours():
    """The workarounds apply exactly where Keras takes its multi-worker
    branch (needs TF's private _in_multi_worker_mode)."""
    for strategy in (TwoWorkers(), TwoWorkers(multi=False),
                     tf.distribute.get_strategy()):
        assert compat.in_multi_worker_mode(strategy) == \
            keras_tf_trainer._collective_all_reduce_multi_worker(strategy)  # pylint: disable=protected-access
    assert compat.in_multi_worker_mode(TwoWorkers())


def test_keras_reduces_logged_scalars_across_workers_on_axis_0():
    """keras-team/keras#20585, tensorflow/tensorflow#72388: the reason for
    reducible_logs. Keras' per-step reduction of the logs, under a strategy
    that says it spans workers, fails on a scalar and takes the reshaped
    value."""
    logs = {"loss": tf.constant(0.5)}
    with pytest.raises(ValueError, match="Invalid reduction dimension 0"):
        keras_tf_trainer.reduce_per_replica(logs, TwoWorkers(), "auto")
    reduced = keras_tf_trainer.reduce_per_replica(
        compat.reducible_logs(logs, TwoWorkers()), TwoWorkers(), "auto")
    assert float(reduced["loss"]) == 0.5
    assert compat.reducible_logs(logs) is logs   # one process: unchanged


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                    reason="TF's oneDNN CPU kernels: x86-64 builds")
def test_onednn_enabled_reads_tensorflows_runtime_switch():
    """The package turns oneDNN on (tf_pixintra/__init__.py, imported before
    TF by conftest), and `onednn_enabled` must see it through TF's private
    switch: if a TF release drops or renames it, this fails instead of the
    dilated convs silently falling back to SpaceToBatch (models.layers).
    A process with TF_ENABLE_ONEDNN_OPTS=0 sees False
    (tests/models/test_layers.py, the SavedModel served without oneDNN)."""
    assert os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "1"
    assert compat.onednn_enabled()


def test_keras_batch_norm_keeps_each_replicas_own_moving_statistics():
    """Why ReplicaMeanBatchNorm exists: under two CPU replicas that see
    different halves of a batch, Keras' BatchNormalization ends with other
    moving statistics on each replica; ReplicaMeanBatchNorm with their mean on
    both (one reduced value, copied: bit for bit)."""
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    halves = mirrored.experimental_distribute_values_from_function(
        lambda ctx: tf.fill((2, 3), 10.0 * tf.cast(ctx.replica_id_in_sync_group, tf.float32)))
    results = {}
    for layer_class in (keras.layers.BatchNormalization, compat.ReplicaMeanBatchNorm):
        with mirrored.scope():
            layer = layer_class(momentum=0.5)
            layer.build((None, 3))
        mirrored.run(tf.function(lambda x, layer=layer: layer(x, training=True)),
                     args=(halves,))
        results[layer_class] = [t.numpy() for t in
                                mirrored.experimental_local_results(layer.moving_mean.value)]
    keras_first, keras_second = results[keras.layers.BatchNormalization]
    assert (keras_first == 0).all() and (keras_second == 5).all()   # 0.5 * 0 + 0.5 * 10
    ours_first, ours_second = results[compat.ReplicaMeanBatchNorm]
    assert (ours_first == 2.5).all() and (ours_second == 2.5).all()
