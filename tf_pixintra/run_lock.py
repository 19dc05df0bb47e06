"""One writer per run directory, and the temporary files a killed writer left.

`hold(run_dir)` holds the run directory's lock while the run lasts; a second
process is refused (ConfigError naming the holder). Workers of a
`--shard_index=k` pseudo-label split take it shared: side by side, but
excluding (and excluded by) an ordinary run.

A local run directory: a `flock` on `<run_dir>/.lock`, which the kernel
drops when its holder dies, so a crash never leaves the directory locked.

A `tf.io.gfile` URL (`gs://...`, `ram://...`) has no file locking: the lock
is a file the holder writes and deletes, `<run_dir>/.lock` (exclusive) or
`<run_dir>/.shared_lock.<host>.<pid>` (each shard worker), holding {"host",
"pid", "time", "mode", "token"}. A thread rewrites "time" every
`HEARTBEAT_SECS`; a file older than `STALE_SECS`, or naming this host and a
pid that no longer runs, is a dead holder's and taken over with a warning
(hosts' clocks must agree to well within that). gfile has no atomic
create-if-absent, so the file is read back `SETTLE_SECS` after writing: of
two processes that start at once, the one whose file was overwritten is
refused. That needs reads that see the last write (GCS and S3 do); it
guards against mistakes, not against a race started on purpose.
"""

import contextlib
import fcntl
import os
import re
import socket
import threading
import time

from absl import logging

from tf_pixintra import io_utils
from tf_pixintra.errors import ConfigError
from tf_pixintra.errors import DataError

LOCK_FILE = ".lock"
SHARED_PREFIX = ".shared_lock."   # LOCK_FILE is no prefix of it (see io_utils.listdir)
HEARTBEAT_SECS = 30.0   # a gfile lock's holder rewrites its time this often
STALE_SECS = 300.0      # a gfile lock this old is a dead holder's
SETTLE_SECS = 1.0       # a gfile lock is read back this long after writing

# Names of incomplete files (renamed when whole): `.<name>.<random>.tmp` of
# io_utils and the exporters, `.partial.*` models, TF's `ckpt-<n>_temp`.
_STRAY = re.compile(r"^(\..+\.tmp|\.partial\..+|ckpt-\d+_temp)$")


def hold(run_dir, shared=False):
    """A context manager holding the run directory's lock; ConfigError when
    taken. Yields True when held exclusively; False, without a lock, for a
    run directory that cannot be written (nothing can write there)."""
    return (_hold_file if io_utils.is_url(run_dir) else _hold_flock)(run_dir, shared)


def _in_use(run_dir, holder, path):
    return ConfigError(
        f"--run_dir={run_dir!r} is in use by another process ({holder}, "
        f"lock {path}); wait for it to end or use another --run_dir")


@contextlib.contextmanager
def _hold_flock(run_dir, shared):
    path = os.path.join(run_dir, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        if io_utils.refused_write(e):
            yield False
            return
        raise
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _in_use(run_dir, _holder(path), path) from None
        if not shared:
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()}\n".encode())
        yield not shared
    finally:
        os.close(fd)  # releases the flock


def _holder(path):
    try:
        with open(path, "r", encoding="utf-8") as f:
            text = f.read().strip()
    except OSError:
        text = ""
    return text or "pid unknown"


def _read_record(path):
    """A lock file's record; None if it is gone or unreadable (being
    rewritten, or damaged: a damaged lock guards nothing)."""
    try:
        record = io_utils.read_json(path)
    except (FileNotFoundError, DataError):
        return None
    return record if isinstance(record, dict) else None


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:     # it runs, as another user
        pass
    return True


def _stale(record):
    """Why a lock record is a dead holder's, or None if it is live."""
    age = time.time() - float(record.get("time", 0.0))
    if age > STALE_SECS:
        return f"not refreshed for {age:.0f} s"
    pid = record.get("pid")
    if (record.get("host") == socket.gethostname() and isinstance(pid, int)
            and pid != os.getpid() and not _alive(pid)):
        return f"pid {pid} no longer runs"
    return None


def _describe(record):
    age = max(0.0, time.time() - float(record.get("time", 0.0)))
    return (f"host {record.get('host', '?')} pid {record.get('pid', '?')}, "
            f"{record.get('mode', 'exclusive')}, refreshed {age:.0f} s ago")


def _heartbeat(path, record, stop):
    """Rewrites the lock file's time every HEARTBEAT_SECS until `stop` is set."""
    while not stop.wait(HEARTBEAT_SECS):
        try:
            if not _is_mine(path, record):
                logging.error("the run lock %s was taken over by another process", path)
                return
            io_utils.write_json(path, {**record, "time": time.time()})
        except Exception as e:  # pylint: disable=broad-except
            # A passing network error: the next beat tries again.
            logging.warning("could not refresh the run lock %s: %s", path, e)


def _is_mine(path, record):
    mine = _read_record(path)
    return mine is not None and mine.get("token") == record["token"]


@contextlib.contextmanager
def _hold_file(run_dir, shared):
    name = (f"{SHARED_PREFIX}{socket.gethostname()}.{os.getpid()}" if shared
            else LOCK_FILE)
    path = io_utils.join(run_dir, name)
    record = {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time(),
              "mode": "shared" if shared else "exclusive", "token": os.urandom(8).hex()}
    io_utils.makedirs(run_dir)
    _refuse_if_held(run_dir, shared)
    if not _write_lock(path, record):
        yield False     # read-only: nothing can write there
        return
    time.sleep(SETTLE_SECS)   # then read back: see the module docstring
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(path, record, stop),
                            daemon=True, name="run-lock-heartbeat")
    try:
        if not _is_mine(path, record):
            raise _in_use(run_dir, _describe(_read_record(path) or {}), path)
        _refuse_if_held(run_dir, shared, path)
        beat.start()
        yield not shared
    finally:
        stop.set()
        if beat.is_alive():
            beat.join()
        if _is_mine(path, record):
            io_utils.remove(path, missing_ok=True)


def _write_lock(path, record):
    """Writes the lock file; False if the file system refuses writes."""
    try:
        io_utils.write_json(path, record)
    except Exception as e:  # pylint: disable=broad-except
        if io_utils.refused_write(e):
            return False
        raise
    return True


def _refuse_if_held(run_dir, shared, own_path=None):
    """ConfigError naming the first live lock file (other than `own_path`,
    this process's own) that excludes this request; stale ones are deleted."""
    names = [LOCK_FILE]
    if not shared:
        names += [n for n in io_utils.listdir(run_dir) if n.startswith(SHARED_PREFIX)]
    held = []
    for path in [io_utils.join(run_dir, name) for name in names]:
        record = _read_record(path)
        if record is None or path == own_path:
            continue
        why = _stale(record)
        if why is None:
            held.append((path, record))
        else:
            logging.warning("taking over the lock %s of a stopped run (%s; %s)",
                            path, _describe(record), why)
            io_utils.remove(path, missing_ok=True)
    if held:
        raise _in_use(run_dir, _describe(held[0][1]), held[0][0])


def remove_stray_temporaries(run_dir):
    """Removes the temporaries of an earlier, killed writer; returns their
    paths. Call only while holding the exclusive lock (`workertemp_<id>`
    checkpoint directories of live multi-worker peers are not touched)."""
    removed = []
    for root, dirs, files in io_utils.walk(run_dir):
        for name in [n for n in dirs if _STRAY.match(n)]:
            dirs.remove(name)
            io_utils.rmtree(io_utils.join(root, name))
            removed.append(io_utils.join(root, name))
        for name in [n for n in files if _STRAY.match(n)]:
            with contextlib.suppress(FileNotFoundError):
                io_utils.remove(io_utils.join(root, name))
                removed.append(io_utils.join(root, name))
    if removed:
        logging.warning("removed %d temporary file(s) left by an interrupted run in %s: %s",
                        len(removed), run_dir,
                        ", ".join(io_utils.relpath(p, run_dir) for p in removed[:5]))
    return removed
