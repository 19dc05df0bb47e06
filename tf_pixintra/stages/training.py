"""The training loop every adapter runs under: fit, checkpoints, exact resume.

A stage trains `total_steps` steps with `adapter.fit`. Checkpoints (G, both
Ds, all three optimizers: slots, iteration counts and therefore the LR
schedule position) are written every `checkpoint_every` steps and when the
process is interrupted (Ctrl-C or SIGTERM: training stops at the end of the
current step, where the step counter and every optimizer's `iterations`
agree, and saves there; see `stop_signal`). A restarted stage restores the
newest checkpoint and skips the batches already consumed: the input pipeline
is deterministic per element, so a resumed run sees the same batches and ends
with the same weights as an uninterrupted one.

Under MultiWorkerMirroredStrategy every worker saves (TF's multi-worker
convention: saving is a collective step), but only the chief writes to the
real checkpoint directory; the others write to `<dir>/workertemp_<task id>`,
deleted when `fit` returns. Every worker restores from the real directory,
which must therefore be on a file system all workers share.
"""

import math

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tf_pixintra import compat
from tf_pixintra import io_utils
from tf_pixintra import runtime
from tf_pixintra.errors import DataError
from tf_pixintra.errors import TrainingDiverged
from tf_pixintra.stages.stop_signal import StopSignal


class _PeriodicCheckpoint(keras.callbacks.Callback):
    """Counts steps, checks the losses, checkpoints, evaluates, stops on request.

    Runs at each step boundary, the only place where the step counter and
    every optimizer's `iterations` agree: a stop requested by SIGTERM/Ctrl-C
    (`stop`) ends `fit` here, and `_fit` saves the checkpoint after it.
    """

    def __init__(self, manager, step_var, start, every, eval_fn, eval_every,
                 stop=None):
        super().__init__()
        self.manager, self.step_var = manager, step_var
        self.start, self.every = start, every
        self.eval_fn, self.eval_every = eval_fn, eval_every
        self.stop = stop
        self.stopped = False
        self.history = []
        self._agree = None

    def on_train_batch_end(self, batch, logs=None):
        step = self.start + batch + 1
        _check_finite(step, logs)   # before a diverged state is saved
        self.step_var.assign(step)
        if step % self.every == 0:
            self.manager.save(checkpoint_number=step)
        if self.eval_fn is not None and self.eval_every and (
                step % self.eval_every == 0):
            result = self.eval_fn(step)
            self.history.append({"step": step, **result})
            logging.info("step %d: target mIoU %.2f", step, result["miou"])
        if self._stop_requested():
            self.stopped = True
            self.model.stop_training = True

    def _stop_requested(self):
        """This worker's stop request, agreed over all workers (multi-worker).

        Every worker runs this all-reduce after every step, so a SIGTERM on
        one worker stops all of them after the same step instead of leaving
        the others waiting in the next step's gradient all-reduce (what
        tf.distribute.experimental.PreemptionCheckpointHandler does for a
        custom training loop).
        """
        local = self.stop is not None and self.stop.requested
        strategy = self.model.distribute_strategy
        if not compat.in_multi_worker_mode(strategy):
            return local
        if self._agree is None:
            self._agree = agreement_fn(strategy)
        votes = self._agree(tf.constant(1.0 if local else 0.0))
        return float(strategy.experimental_local_results(votes)[0]) > 0.0


def agreement_fn(strategy):
    """tf.function(vote): the sum of every replica's vote, on every replica."""
    @tf.function
    def agree(vote):
        def replica_fn(v):
            # A copy made on this replica's device: the all-reduce takes its
            # destination from the value's device (none for a host input).
            v = tf.identity(v)
            context = tf.distribute.get_replica_context()
            return context.all_reduce(tf.distribute.ReduceOp.SUM, v)
        return strategy.run(replica_fn, args=(vote,))
    return agree


def _check_finite(step, logs):
    """Raises TrainingDiverged when a logged loss is NaN or infinite.

    The logged values are means since the last logging-interval reset
    (`summaries.IntervalMeans`), so a non-finite loss makes its own step's
    logged mean non-finite: the first one found is at that step.
    """
    for name, value in sorted((logs or {}).items()):
        if not name.startswith("loss"):
            continue
        value = float(np.asarray(value).reshape(-1)[0])
        if not math.isfinite(value):
            raise TrainingDiverged(
                f"training diverged at step {step}: {name} is {value}; the "
                "stage stops unfinished (use a lower learning rate, e.g. "
                "--inter_lr_g / --intra_lr_g, in a new --run_dir)")


def restore(adapter, checkpoint_dir, write_dir=None):
    """Restores the newest checkpoint in `checkpoint_dir`; returns (manager, step).

    The manager saves to `write_dir` (default: `checkpoint_dir`).
    """
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    checkpoint = tf.train.Checkpoint(step=step_var, **adapter.checkpoint_objects())
    manager = tf.train.CheckpointManager(checkpoint, write_dir or checkpoint_dir,
                                         max_to_keep=2)
    # Newest first; a damaged one (a crash while writing it, a full disk) is
    # skipped with a warning and the next older one is tried.
    candidates = checkpoint_candidates(checkpoint_dir)
    for number, prefix in enumerate(candidates):
        try:
            checkpoint.restore(prefix).assert_existing_objects_matched()
        except (tf.errors.OpError, ValueError, AssertionError, IndexError,
                KeyError) as e:   # IndexError: a truncated file
            reason = str(getattr(e, "message", e)).strip().splitlines()
            logging.warning("%s: damaged checkpoint (%s); trying an older one",
                            prefix, reason[0] if reason else type(e).__name__)
            if number == len(candidates) - 1:
                raise DataError(
                    f"{checkpoint_dir}: no checkpoint can be restored (oldest "
                    f"tried: {prefix}: {reason[0] if reason else e}). To "
                    f"recover, delete {checkpoint_dir} and run the same "
                    "command: the stage trains again from step 0") from None
            continue
        logging.info("resumed from %s at step %d", prefix, int(step_var))
        break
    return manager, step_var


def checkpoint_candidates(checkpoint_dir):
    """Checkpoint prefixes ckpt-N in `checkpoint_dir`, newest (highest N) first."""
    found = []
    for name in (io_utils.listdir(checkpoint_dir) if io_utils.isdir(checkpoint_dir)
                 else []):
        stem = name[:-len(".index")] if name.endswith(".index") else ""
        if stem.startswith("ckpt-") and stem[5:].isdigit():
            found.append((int(stem[5:]), io_utils.join(checkpoint_dir, stem)))
    return [prefix for _, prefix in sorted(found, reverse=True)]


def checkpoint_write_dir(checkpoint_dir, chief, task_id):
    """Where this worker saves: the real directory (chief) or its temp dir."""
    if chief:
        return checkpoint_dir
    return io_utils.join(checkpoint_dir, f"workertemp_{task_id}")


def fit(adapter, make_dataset, total_steps, checkpoint_dir, *,
        checkpoint_every=1000, eval_fn=None, eval_every=0, verbose=1,
        callbacks=(), chief=None, stop_grace_s=60.0):
    """Trains `adapter` up to `total_steps`, resuming from `checkpoint_dir`.

    `make_dataset(skip)` returns the (global-batch) training dataset with the
    first `skip` batches left out. `chief` says whether this process writes
    to `checkpoint_dir`; None asks the adapter's strategy (False only on a
    non-chief multi-worker task). Callbacks with a `set_start_step(step)`
    method are told the step this call resumes from. `eval_fn(step)` returns
    an evaluation result dict (with "miou"); it runs every `eval_every`
    steps. SIGTERM or Ctrl-C stops training at the end of the current step,
    saves a checkpoint there and raises KeyboardInterrupt; a step that does
    not end within `stop_grace_s` seconds ends the process (`stop_signal`).
    A NaN or infinite loss raises TrainingDiverged before its step is saved.
    Returns (the final logged values of this call, the periodic evaluation
    history).
    """
    _, task_id, is_chief = runtime.worker_info(adapter.distribute_strategy)
    chief = is_chief if chief is None else chief
    write_dir = checkpoint_write_dir(checkpoint_dir, chief, task_id)
    try:
        return _fit(adapter, make_dataset, total_steps, checkpoint_dir,
                    write_dir, checkpoint_every, eval_fn, eval_every, verbose,
                    callbacks, stop_grace_s)
    except TrainingDiverged as e:
        where = io_utils.parent(checkpoint_dir)
        raise TrainingDiverged(f"{where}: {e}") from None
    finally:
        if write_dir != checkpoint_dir:
            io_utils.rmtree(write_dir)


def _fit(adapter, make_dataset, total_steps, checkpoint_dir, write_dir,
         checkpoint_every, eval_fn, eval_every, verbose, callbacks, stop_grace_s):
    manager, step_var = restore(adapter, checkpoint_dir, write_dir)
    start = int(step_var)
    if start >= total_steps:
        return {}, []
    iterations_at_start = _iterations(adapter)
    dataset = make_dataset(start)
    for callback in callbacks:    # steps continue from the resumed step
        if hasattr(callback, "set_start_step"):
            callback.set_start_step(start)
    with StopSignal(stop_grace_s, what="training") as stop:
        periodic = _PeriodicCheckpoint(manager, step_var, start,
                                       checkpoint_every, eval_fn, eval_every,
                                       stop)
        history = adapter.fit(dataset, epochs=1, shuffle=False,
                              steps_per_epoch=total_steps - start,
                              callbacks=[periodic, *callbacks],
                              verbose=verbose)
        step = int(step_var)
        _check_consistent(adapter, iterations_at_start, step - start, step)
        if periodic.stopped or stop.requested:  # (or after the last step)
            manager.save(checkpoint_number=step)
            logging.warning("interrupted at step %d; checkpoint saved in %s",
                            step, write_dir)
            raise KeyboardInterrupt(f"stopped at step {step}")
    if step != total_steps:
        raise RuntimeError(f"training stopped at step {step} of "
                           f"{total_steps}: the dataset ran out")
    manager.save(checkpoint_number=total_steps)
    logs = {k: float(v[-1]) for k, v in history.history.items() if v}
    return logs, periodic.history


def _iterations(adapter):
    """{name: iterations} of the optimizers that count every step.

    A LossScaleOptimizer (mixed_float16) does not count the steps it skips
    for non-finite gradients, so it is left out.
    """
    out = {}
    for name, optimizer in adapter.checkpoint_objects().items():
        if name.endswith("optimizer") and not isinstance(
                optimizer, keras.optimizers.LossScaleOptimizer):
            out[name] = int(keras.ops.convert_to_numpy(optimizer.iterations))
    return out


def _check_consistent(adapter, iterations_at_start, steps_done, step):
    """The step counter and every optimizer's iterations moved together."""
    for name, now in _iterations(adapter).items():
        if now - iterations_at_start[name] != steps_done:
            raise RuntimeError(
                f"step counter at {step} but {name}.iterations moved by "
                f"{now - iterations_at_start[name]} (expected {steps_done}): "
                "a checkpoint here would not resume exactly")
