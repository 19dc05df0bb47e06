"""Workers of a multi-worker run waiting for each other's files.

Outside the (data-parallel) training stages, the workers share the work
through files of the run directory (on a file system all of them see): one
pseudo shard per worker; eval and export on the chief, the others waiting
for its metrics.json. A wait is bounded by --peer_wait_secs (PeerTimeout).
"""

import os
import time

from absl import logging

from tf_pixintra import io_utils
from tf_pixintra import run_layout
from tf_pixintra.errors import PeerTimeout

FIRST_POLL_SECS = 0.2    # the first polls come quickly (a short stage) ...
MAX_POLL_SECS = 1.0      # ... then every second (a file test is cheap)


def shared(ctx):
    """Whether other workers share this run's non-training stages."""
    return ctx.num_workers > 1


def who(ctx):
    """"worker 1 of 2 (the chief)", for the log and the messages."""
    chief = " (the chief)" if ctx.is_chief else ""
    return f"worker {ctx.task_index} of {ctx.num_workers}{chief}"


def wait_for(ctx, paths, what, ready=None, clock=None, sleep=None):
    """Returns once every file of `paths` exists and `ready()` (else why
    the files are not usable) is None; PeerTimeout after --peer_wait_secs.
    `clock` and `sleep` default to time.monotonic and time.sleep."""
    clock, sleep = clock or time.monotonic, sleep or time.sleep
    limit = float(ctx.config.run.peer_wait_secs)
    start, poll, logged = clock(), FIRST_POLL_SECS, False
    while True:
        missing = [path for path in paths if not io_utils.exists(path)]
        reason = None if missing or ready is None else ready()
        if not missing and reason is None:
            if logged:
                logging.info("%s: %s ready after %.1f s", who(ctx), what, clock() - start)
            return
        waited = clock() - start
        if waited >= limit:
            detail = f"missing: {', '.join(missing)}" if missing else f"not ready: {reason}"
            raise PeerTimeout(
                f"{who(ctx)} waited {waited:.0f} s for {what} ({detail}). A "
                "peer has stopped or is slower than --peer_wait_secs="
                f"{limit:g}: see its log, then run the same command on every "
                "worker (finished work is kept)")
        if not logged:
            logging.info("%s waits for %s (%s)", who(ctx), what,
                         ", ".join(missing) if missing else reason)
            logged = True
        sleep(min(poll, max(0.0, limit - waited)))
        poll = min(2 * poll, MAX_POLL_SECS)


def chief_result(ctx, stage_dir, ready=None):
    """A non-chief's share of a chief-only stage: waits for its metrics.json
    (and `ready`, as for `wait_for`) and returns the metrics."""
    name = os.path.basename(stage_dir.rstrip("/"))
    wait_for(ctx, [io_utils.join(stage_dir, run_layout.METRICS_FILE)],
             f"the chief's {name} stage", ready)
    return run_layout.completed(stage_dir)
