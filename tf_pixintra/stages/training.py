"""The training loop every adapter runs under: fit, checkpoints, exact resume.

A stage trains `total_steps` steps with `adapter.fit`. Checkpoints (G, both
Ds, all three optimizers: slots, iteration counts and therefore the LR
schedule position) are written every `checkpoint_every` steps and when the
process is interrupted (Ctrl-C or SIGTERM). A restarted stage restores the
newest checkpoint and skips the batches already consumed: the input pipeline
is deterministic per element, so a resumed run sees the same batches and ends
with the same weights as an uninterrupted one.

Under MultiWorkerMirroredStrategy every worker saves (TF's multi-worker
convention: saving is a collective step), but only the chief writes to the
real checkpoint directory; the others write to `<dir>/workertemp_<task id>`,
deleted when `fit` returns. Every worker restores from the real directory,
which must therefore be on a file system all workers share.
"""

import contextlib
import os
import shutil
import signal

import keras
import tensorflow as tf
from absl import logging

from tf_pixintra import runtime


class _PeriodicCheckpoint(keras.callbacks.Callback):
    def __init__(self, manager, step_var, start, every, eval_fn, eval_every):
        super().__init__()
        self.manager, self.step_var = manager, step_var
        self.start, self.every = start, every
        self.eval_fn, self.eval_every = eval_fn, eval_every
        self.history = []

    def on_train_batch_end(self, batch, logs=None):
        step = self.start + batch + 1
        self.step_var.assign(step)
        if step % self.every == 0:
            self.manager.save(checkpoint_number=step)
        if self.eval_fn is not None and self.eval_every and (
                step % self.eval_every == 0):
            result = self.eval_fn()
            self.history.append({"step": step, **result})
            logging.info("step %d: target mIoU %.2f", step, result["miou"])


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM raises KeyboardInterrupt, so a killed job checkpoints first."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def restore(adapter, checkpoint_dir, write_dir=None):
    """Restores the newest checkpoint in `checkpoint_dir`; returns (manager, step).

    The manager saves to `write_dir` (default: `checkpoint_dir`).
    """
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    checkpoint = tf.train.Checkpoint(step=step_var, **adapter.checkpoint_objects())
    manager = tf.train.CheckpointManager(checkpoint, write_dir or checkpoint_dir,
                                         max_to_keep=2)
    latest = tf.train.latest_checkpoint(checkpoint_dir)
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
        logging.info("resumed from %s at step %d", latest, int(step_var))
    return manager, step_var


def checkpoint_write_dir(checkpoint_dir, chief, task_id):
    """Where this worker saves: the real directory (chief) or its temp dir."""
    if chief:
        return checkpoint_dir
    return os.path.join(checkpoint_dir, f"workertemp_{task_id}")


def fit(adapter, make_dataset, total_steps, checkpoint_dir, *,
        checkpoint_every=1000, eval_fn=None, eval_every=0, verbose=1,
        callbacks=(), chief=None):
    """Trains `adapter` up to `total_steps`, resuming from `checkpoint_dir`.

    `make_dataset(skip)` returns the (global-batch) training dataset with the
    first `skip` batches left out. `chief` says whether this process writes
    to `checkpoint_dir`; None asks the adapter's strategy (False only on a
    non-chief multi-worker task). Callbacks with a `set_start_step(step)`
    method are told the step this call resumes from. Returns (the final
    logged values of this call, the periodic evaluation history).
    """
    _, task_id, is_chief = runtime.worker_info(adapter.distribute_strategy)
    chief = is_chief if chief is None else chief
    write_dir = checkpoint_write_dir(checkpoint_dir, chief, task_id)
    try:
        return _fit(adapter, make_dataset, total_steps, checkpoint_dir,
                    write_dir, checkpoint_every, eval_fn, eval_every, verbose,
                    callbacks)
    finally:
        if write_dir != checkpoint_dir:
            shutil.rmtree(write_dir, ignore_errors=True)


def _fit(adapter, make_dataset, total_steps, checkpoint_dir, write_dir,
         checkpoint_every, eval_fn, eval_every, verbose, callbacks):
    manager, step_var = restore(adapter, checkpoint_dir, write_dir)
    start = int(step_var)
    if start >= total_steps:
        return {}, []
    periodic = _PeriodicCheckpoint(manager, step_var, start, checkpoint_every,
                                   eval_fn, eval_every)
    dataset = make_dataset(start)
    all_callbacks = [periodic, *callbacks]
    for callback in callbacks:    # steps continue from the resumed step
        if hasattr(callback, "set_start_step"):
            callback.set_start_step(start)
    try:
        with _sigterm_as_interrupt():
            history = adapter.fit(dataset, epochs=1, shuffle=False,
                                  steps_per_epoch=total_steps - start,
                                  callbacks=all_callbacks, verbose=verbose)
    except KeyboardInterrupt:
        manager.save(checkpoint_number=int(step_var))
        logging.warning("interrupted at step %d; checkpoint saved in %s",
                        int(step_var), write_dir)
        raise
    if int(step_var) != total_steps:
        raise RuntimeError(f"training stopped at step {int(step_var)} of "
                           f"{total_steps}: the dataset ran out")
    manager.save(checkpoint_number=total_steps)
    logs = {k: float(v[-1]) for k, v in history.history.items() if v}
    return logs, periodic.history

