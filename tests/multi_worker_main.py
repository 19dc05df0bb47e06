"""One worker of the two-process MultiWorkerMirroredStrategy test.

Launched by tests/test_multi_worker.py with TF_CONFIG naming this worker.
Trains a few Stage I steps of the tiny InterDomainAdapter through
`tf_pixintra.stages.training.fit` (checkpoints included) on a deterministic
in-memory dataset, then writes its final weights to `<out>.npz` and what it
saw of the checkpoint directories to `<out>.json`.
"""

import argparse
import json
import os
import signal
import sys
import time

T0 = time.monotonic()

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(HERE, "adapters"))

# pylint: disable=wrong-import-position
import keras  # noqa: E402
import numpy as np  # noqa: E402

from adapter_fixtures import (compile_tiny, make_dataset_fn,  # noqa: E402
                              stage1_batches, tiny_discriminators,
                              tiny_generator, weights_of)
from tf_pixintra import runtime  # noqa: E402
from tf_pixintra.adapters.inter import InterDomainAdapter  # noqa: E402
from tf_pixintra.errors import PeerLost  # noqa: E402
from tf_pixintra.stages import training  # noqa: E402

# Shared with the test, which builds the same run in one process.
SEED = 3
NUM_EXAMPLES = 8
GLOBAL_BATCH = 4
LR = 1e-4   # the tiny random-init model diverges (NaN) at 1e-2 in 3 steps


def build_adapter(strategy):
    """The tiny Stage I adapter, built and compiled in `strategy`'s scope."""
    with strategy.scope():
        adapter = InterDomainAdapter(tiny_generator(seed=SEED),
                                     *tiny_discriminators(seed=SEED))
        compile_tiny(adapter, lr=LR)
    return adapter


def make_dataset():
    """make_dataset(skip) over the fixed examples, global batch GLOBAL_BATCH.

    Under MultiWorkerMirroredStrategy Keras distributes it with AUTO
    sharding (DATA for an in-memory dataset): each worker gets its half of
    every global batch, as the replicas of a one-process MirroredStrategy do.
    """
    return make_dataset_fn(stage1_batches(NUM_EXAMPLES), GLOBAL_BATCH)


class _SeeCheckpointDirs(keras.callbacks.Callback):
    """Records which checkpoint files exist at the end of training."""

    def __init__(self, checkpoint_dir):
        super().__init__()
        self.checkpoint_dir = checkpoint_dir
        self.seen = {}

    def on_train_end(self, logs=None):
        for root, _, files in os.walk(self.checkpoint_dir):
            rel = os.path.relpath(root, self.checkpoint_dir)
            self.seen[rel] = sorted(files)


class _SignalAt(keras.callbacks.Callback):
    """Sends this process `signum` at the start of step `step` (1-based)."""

    def __init__(self, step, signum):
        super().__init__()
        self.step, self.signum = step, signum

    def on_train_batch_begin(self, batch, logs=None):
        if batch + 1 == self.step:
            os.kill(os.getpid(), self.signum)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="output path, no suffix")
    parser.add_argument("--checkpoint_dir", required=True)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--checkpoint_every", type=int, default=1)
    parser.add_argument("--sigterm_at", type=int, default=0,
                        help="worker 1 sends itself SIGTERM during this step")
    parser.add_argument("--crash_at", type=int, default=0,
                        help="worker 1 kills itself (SIGKILL) at the start of this step")
    args = parser.parse_args()

    times = {"imported": time.monotonic() - T0}
    strategy = runtime.make_strategy("multi_worker")
    task_type, task_id, is_chief = runtime.worker_info(strategy)
    adapter = build_adapter(strategy)
    times["built"] = time.monotonic() - T0
    seen = _SeeCheckpointDirs(args.checkpoint_dir)
    callbacks = [seen]
    for step, signum in ((args.sigterm_at, signal.SIGTERM), (args.crash_at, signal.SIGKILL)):
        if step and task_id == 1:
            callbacks.append(_SignalAt(step, signum))
    try:
        logs, _ = training.fit(adapter, make_dataset(), args.steps,
                               args.checkpoint_dir,
                               checkpoint_every=args.checkpoint_every,
                               verbose=0, callbacks=callbacks)
    except KeyboardInterrupt:   # stopped by a SIGTERM on either worker
        with open(args.out + ".json", "w", encoding="utf-8") as f:
            json.dump({"interrupted": True, "is_chief": is_chief,
                       "iterations": int(keras.ops.convert_to_numpy(
                           adapter.g_optimizer.iterations)),
                       "seen_at_train_end": seen.seen}, f)
        sys.stdout.flush()
        sys.exit(130)
    except PeerLost as e:   # worker 1 is gone (--crash_at)
        with open(args.out + ".json", "w", encoding="utf-8") as f:
            json.dump({"peer_lost": str(e), "seconds": time.monotonic() - T0}, f)
        sys.exit(3)
    times["trained"] = time.monotonic() - T0
    np.savez(args.out + ".npz",
             *weights_of(adapter.generator, adapter.d_main, adapter.d_aux))
    with open(args.out + ".json", "w", encoding="utf-8") as f:
        json.dump({"task_type": task_type, "task_id": task_id,
                   "is_chief": is_chief,
                   "replicas": strategy.num_replicas_in_sync,
                   "logs": logs, "seen_at_train_end": seen.seen,
                   "seconds": times}, f)


if __name__ == "__main__":
    main()
