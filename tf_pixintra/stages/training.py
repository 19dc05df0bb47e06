"""The training loop every adapter runs under: fit, checkpoints, exact resume.

Checkpoints (G, both Ds, all three optimizers with their slots and
iteration counts, hence the LR schedule position) are written every
`checkpoint_every` steps and, on Ctrl-C or SIGTERM, at the end of the
current step (`stop_signal`). A restarted stage restores the newest one and
skips the batches already consumed: the input pipeline is deterministic per
element, so it ends with the weights of an uninterrupted run.

Under MultiWorkerMirroredStrategy every worker saves (saving is a collective
step), but only the chief into the real directory (on a file system all
workers share, as all restore from it); the others into
`<dir>/workertemp_<task id>`, deleted when `fit` returns.
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
from tf_pixintra.errors import PeerLost
from tf_pixintra.errors import TrainingDiverged
from tf_pixintra.stages.stop_signal import StopSignal


class _PeriodicCheckpoint(keras.callbacks.Callback):
    """Counts steps, checks the losses, checkpoints, evaluates, and ends
    `fit` on a `stop` request, at the step boundary (where the step counter
    and every optimizer's `iterations` agree; `_fit` saves there)."""

    def __init__(self, manager, step_var, start, every, eval_fn, eval_every, stop=None):
        super().__init__()
        self.manager, self.step_var = manager, step_var
        self.start, self.every = start, every
        self.eval_fn, self.eval_every = eval_fn, eval_every
        self.stop, self.stopped = stop, False
        self.history = []
        self._agree = None

    def on_train_batch_end(self, batch, logs=None):
        step = self.start + batch + 1
        _check_finite(step, logs)   # before a diverged state is saved
        self.step_var.assign(step)
        if step % self.every == 0:
            self.manager.save(checkpoint_number=step)
        if self.eval_fn is not None and self.eval_every and step % self.eval_every == 0:
            result = self.eval_fn(step)
            self.history.append({"step": step, **result})
            logging.info("step %d: target mIoU %.2f", step, result["miou"])
        if self._stop_requested():
            self.stopped = True
            self.model.stop_training = True

    def _stop_requested(self):
        """This worker's stop request, agreed over all workers by an
        all-reduce after every step: a SIGTERM on one stops all after the same
        step (as tf.distribute.experimental.PreemptionCheckpointHandler does
        for a custom training loop) instead of leaving the others waiting."""
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
            return tf.distribute.get_replica_context().all_reduce(
                tf.distribute.ReduceOp.SUM, tf.identity(v))
        return strategy.run(replica_fn, args=(vote,))
    return agree


def _check_finite(step, logs):
    """Raises TrainingDiverged when a logged loss is NaN or infinite (the
    logged interval means turn non-finite at the step that diverged)."""
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
    """Restores the newest checkpoint in `checkpoint_dir`; returns (manager,
    step variable). The manager saves to `write_dir` (default: the same)."""
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    checkpoint = tf.train.Checkpoint(step=step_var, **adapter.checkpoint_objects())
    manager = tf.train.CheckpointManager(checkpoint, write_dir or checkpoint_dir, max_to_keep=2)
    # Newest first; a damaged one (a crash while writing it, a full disk) is
    # skipped with a warning and the next older one is tried.
    candidates = checkpoint_candidates(checkpoint_dir)
    for number, prefix in enumerate(candidates):
        try:
            checkpoint.restore(prefix).assert_existing_objects_matched()
            logging.info("resumed from %s at step %d", prefix, int(step_var))
            break
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
    return manager, step_var


def checkpoint_candidates(checkpoint_dir):
    """Checkpoint prefixes ckpt-N in `checkpoint_dir`, newest (highest N) first."""
    found = []
    for name in (io_utils.listdir(checkpoint_dir) if io_utils.isdir(checkpoint_dir) else []):
        stem = name[:-len(".index")] if name.endswith(".index") else ""
        if stem.startswith("ckpt-") and stem[5:].isdigit():
            found.append((int(stem[5:]), io_utils.join(checkpoint_dir, stem)))
    return [prefix for _, prefix in sorted(found, reverse=True)]


def checkpoint_write_dir(checkpoint_dir, chief, task_id):
    """Where this worker saves: the real directory (chief) or its temp dir."""
    return checkpoint_dir if chief else io_utils.join(checkpoint_dir, f"workertemp_{task_id}")


def fit(adapter, make_dataset, total_steps, checkpoint_dir, *,
        checkpoint_every=1000, eval_fn=None, eval_every=0, verbose=1,
        callbacks=(), chief=None, stop_grace_s=60.0):
    """Trains `adapter` up to `total_steps`, resuming from `checkpoint_dir`.

    `make_dataset(skip)`: the (global-batch) dataset without its first `skip`
    batches. `chief`: whether this process writes to `checkpoint_dir` (None:
    ask the strategy). Callbacks with `set_start_step(step)` are told the
    resumed step. `eval_fn(step)` -> result dict with "miou", every
    `eval_every` steps. SIGTERM or Ctrl-C saves a checkpoint at the end of
    the step and raises KeyboardInterrupt (the process ends if that takes
    over `stop_grace_s`). A NaN or infinite loss raises TrainingDiverged
    before its step is saved; a multi-worker peer that went away, PeerLost.
    Returns (final logs, evaluation history).
    """
    _, task_id, is_chief = runtime.worker_info(adapter.distribute_strategy)
    chief = is_chief if chief is None else chief
    write_dir = checkpoint_write_dir(checkpoint_dir, chief, task_id)
    try:
        return _fit(adapter, make_dataset, total_steps, checkpoint_dir,
                    write_dir, checkpoint_every, eval_fn, eval_every, verbose,
                    callbacks, stop_grace_s)
    except TrainingDiverged as e:
        raise TrainingDiverged(f"{io_utils.parent(checkpoint_dir)}: {e}") from None
    except tf.errors.UnavailableError as e:   # a collective aborted: a peer is gone
        if not compat.in_multi_worker_mode(adapter.distribute_strategy):
            raise
        lines = e.message.splitlines() or [type(e).__name__]
        reason = next((line for line in lines if "aborted by" in line), lines[0])
        raise PeerLost(
            f"{io_utils.parent(checkpoint_dir)}: a worker of the job stopped answering during "
            f"training ({reason.strip()}); the checkpoints in {checkpoint_dir} are kept: "
            "start every worker again with the same command to resume") from None
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
                                       checkpoint_every, eval_fn, eval_every, stop)
        history = adapter.fit(dataset, epochs=1, shuffle=False,
                              steps_per_epoch=total_steps - start,
                              callbacks=[periodic, *callbacks], verbose=verbose)
        step = int(step_var)
        _check_consistent(adapter, iterations_at_start, step - start, step)
        if periodic.stopped or stop.requested:  # (or after the last step)
            manager.save(checkpoint_number=step)
            logging.warning("interrupted at step %d; checkpoint saved in %s", step, write_dir)
            raise KeyboardInterrupt(f"stopped at step {step}")
    if step != total_steps:
        raise RuntimeError(f"training stopped at step {step} of "
                           f"{total_steps}: the dataset ran out")
    manager.save(checkpoint_number=total_steps)
    logs = {k: float(v[-1]) for k, v in history.history.items() if v}
    return logs, periodic.history


def _iterations(adapter):
    """{name: iterations} of the optimizers that count every step (not a
    LossScaleOptimizer: it skips steps with non-finite gradients)."""
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
