"""Checkpoints and exact resume of the training loop."""

import os
import signal

import numpy as np
import pytest
import tensorflow as tf

from adapter_fixtures import (Crash, compile_tiny, make_dataset_fn,
                              stage1_batches, tiny_discriminators,
                              tiny_generator, weights_of)
from tf_pixintra.adapters.inter import InterDomainAdapter
from tf_pixintra.stages import training


def new_adapter():
    adapter = InterDomainAdapter(tiny_generator(seed=11),
                                 *tiny_discriminators(seed=11))
    compile_tiny(adapter, lr=0.01, decay_steps=6)
    return adapter


def state(adapter):
    opts = (adapter.g_optimizer, adapter.d_main_optimizer, adapter.d_aux_optimizer)
    return (weights_of(adapter.generator, adapter.d_main, adapter.d_aux),
            [v.numpy().copy() for o in opts for v in o.variables])


def test_crashed_and_resumed_run_matches_uninterrupted(tmp_path):
    data = stage1_batches(8)
    make = make_dataset_fn(data, batch_size=2)
    straight = new_adapter()
    training.fit(straight, make, 6, str(tmp_path / "a"), checkpoint_every=2,
                 verbose=0)

    crashed = new_adapter()
    with pytest.raises(RuntimeError, match="simulated crash"):
        training.fit(crashed, make, 6, str(tmp_path / "b"), checkpoint_every=2,
                     verbose=0, callbacks=[Crash(at=3)])
    # The crash came after step 3: the newest checkpoint is step 2.
    assert tf.train.latest_checkpoint(str(tmp_path / "b")).endswith("-2")
    resumed = new_adapter()
    skipped = []
    logs, _ = training.fit(
        resumed, lambda skip: skipped.append(skip) or make(skip), 6,
        str(tmp_path / "b"), checkpoint_every=2, verbose=0)
    assert skipped == [2]
    assert int(resumed.g_optimizer.iterations) == 6
    assert logs["lr_g"] == pytest.approx(0.0, abs=1e-12)  # poly decay ended
    (weights_a, slots_a), (weights_b, slots_b) = state(straight), state(resumed)
    # Same machine, same traced step, same batches, restored state bit for
    # bit: a resume is exact, not close.
    for a, b in zip(weights_a + slots_a, weights_b + slots_b):
        np.testing.assert_array_equal(a, b)


def test_ctrl_c_saves_a_checkpoint_at_the_current_step(tmp_path):
    """SIGINT (Ctrl-C) during step 3 stops after it and checkpoints step 3."""
    class Interrupt(tf.keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 2:
                os.kill(os.getpid(), signal.SIGINT)

    adapter = new_adapter()
    with pytest.raises(KeyboardInterrupt):
        training.fit(adapter, make_dataset_fn(stage1_batches(4)), 6,
                     str(tmp_path), checkpoint_every=100, verbose=0,
                     callbacks=[Interrupt()])
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("-3")
    again = new_adapter()
    _, step = training.restore(again, str(tmp_path))
    assert int(step) == 3 and int(again.g_optimizer.iterations) == 3


def test_finished_training_is_not_repeated(tmp_path):
    make = make_dataset_fn(stage1_batches(4))
    training.fit(new_adapter(), make, 2, str(tmp_path), verbose=0)
    calls = []
    logs, history = training.fit(new_adapter(), lambda s: calls.append(s), 2,
                                 str(tmp_path), verbose=0)
    assert calls == [] and logs == {} and history == []
    assert os.path.exists(str(tmp_path / "checkpoint"))


def test_checkpoints_on_a_gfile_url_are_found_newest_first():
    """A run directory on TF's ram:// file system (any tf.io.gfile URL):
    the resume path lists and restores its checkpoints."""
    directory = "ram://training-ckpt/inter/checkpoints"
    variable = tf.Variable(0.0)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=variable),
                                         directory, max_to_keep=3)
    for step in (2, 10, 4):
        variable.assign(float(step))
        manager.save(checkpoint_number=step)
    candidates = training.checkpoint_candidates(directory)
    assert candidates == [f"{directory}/ckpt-{n}" for n in (10, 4, 2)]
    tf.train.Checkpoint(v=variable).restore(candidates[0]).assert_consumed()
    assert float(variable) == 10.0
    assert training.checkpoint_candidates("ram://training-ckpt/none") == []
