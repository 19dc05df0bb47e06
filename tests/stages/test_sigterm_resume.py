"""SIGTERM / Ctrl-C during a training step: the checkpoint is consistent and a
resume ends with the very weights of an uninterrupted run.

The signal is sent from inside the compiled train step, after every
optimizer has applied it: the moment at which a handler that raises would
fire (the step done, its step count not yet recorded).
"""

import os
import signal

import numpy as np
import pytest
import tensorflow as tf

from adapter_fixtures import (compile_tiny, make_dataset_fn, stage1_batches,
                              tiny_discriminators, tiny_generator, weights_of)
from tf_pixintra.adapters.inter import InterDomainAdapter
from tf_pixintra.stages import training

STEPS = 6


class SignalledAdapter(InterDomainAdapter):
    """Sends `signum` to this process inside train step number `at`."""

    at, signum = None, signal.SIGTERM

    def train_step(self, data):
        logs = super().train_step(data)
        iterations = self.g_optimizer.iterations

        def send(step):
            if self.at is not None and int(step) == self.at:
                os.kill(os.getpid(), self.signum)
            return np.int64(0)
        with tf.control_dependencies(list(logs.values())):
            tf.py_function(send, [tf.identity(iterations.value)], tf.int64)
        return logs


def new_adapter(at=None, signum=signal.SIGTERM):
    adapter = SignalledAdapter(tiny_generator(seed=11),
                               *tiny_discriminators(seed=11))
    adapter.at, adapter.signum = at, signum
    compile_tiny(adapter, lr=0.01, decay_steps=STEPS)
    return adapter


def state(adapter):
    opts = (adapter.g_optimizer, adapter.d_main_optimizer,
            adapter.d_aux_optimizer)
    return (weights_of(adapter.generator, adapter.d_main, adapter.d_aux)
            + [v.numpy().copy() for o in opts for v in o.variables])


def test_sigterm_mid_step_checkpoints_that_step_and_resumes_exactly(tmp_path):
    at = 3
    make = make_dataset_fn(stage1_batches(8))
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        training.fit(new_adapter(at=at), make, STEPS, str(tmp_path / "b"),
                     checkpoint_every=2, verbose=0)
    assert (signal.getsignal(signal.SIGTERM),
            signal.getsignal(signal.SIGINT)) == handlers
    # Saved at the step the signal came in: the step counter and every
    # optimizer's iterations (the LR schedule position) agree.
    checkpoints = str(tmp_path / "b")
    assert tf.train.latest_checkpoint(checkpoints).endswith(f"ckpt-{at}")
    restored = new_adapter()
    _, step = training.restore(restored, checkpoints)
    iterations = [int(o.iterations) for o in (
        restored.g_optimizer, restored.d_main_optimizer,
        restored.d_aux_optimizer)]
    assert int(step) == at and iterations == [at, at, at]

    resumed = new_adapter()
    skipped = []
    training.fit(resumed, lambda skip: skipped.append(skip) or make(skip),
                 STEPS, checkpoints, checkpoint_every=2, verbose=0)
    assert skipped == [at]
    straight = new_adapter()
    training.fit(straight, make, STEPS, str(tmp_path / "a"),
                 checkpoint_every=2, verbose=0)
    for a, b in zip(state(resumed), state(straight)):
        np.testing.assert_array_equal(a, b)


def test_stop_votes_are_summed_over_replicas():
    """The per-step vote of the multi-worker stop: any replica's vote counts.

    Checked on two in-process replicas (the same replica-context all-reduce
    runs across workers under MultiWorkerMirroredStrategy).
    """
    # ReductionToOneDevice: no collective ops, whose instance keys would
    # clash with those of other in-process MirroredStrategy tests.
    strategy = tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"],
        cross_device_ops=tf.distribute.ReductionToOneDevice())
    agree = training.agreement_fn(strategy)
    for votes, expected in (([0.0, 0.0], 0.0), ([0.0, 1.0], 1.0),
                            ([1.0, 1.0], 2.0)):
        per_replica = strategy.experimental_distribute_values_from_function(
            lambda ctx, v=votes: tf.constant(v[ctx.replica_id_in_sync_group]))
        out = strategy.experimental_local_results(agree(per_replica))
        assert [float(x) for x in out] == [expected, expected]
