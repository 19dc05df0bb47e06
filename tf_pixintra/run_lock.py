"""One writer per run directory, and the temporary files a killed writer left.

`hold(run_dir)` holds the run directory's lock for as long as the run lasts.
A second process on the same run directory is refused with one line
(ConfigError) naming the holder. Workers of a `--shard_index=k`
pseudo-label split take the lock shared: they run side by side, while an
ordinary run excludes them and they exclude it.

A local run directory: an exclusive (or shared) `flock` on
`<run_dir>/.lock`; the message names the holder's pid. The kernel drops a
flock when its holder dies (SIGKILL and power loss included), so a crash
never leaves the directory locked; the file itself stays and is reused.

A run directory on another `tf.io.gfile` file system (`gs://...`,
`ram://...`) has no file locking. There the lock is a file the holder
writes and deletes when done: `<run_dir>/.lock` for the exclusive holder,
`<run_dir>/.shared_lock.<host>.<pid>` for each shard worker. Each holds
{"host", "pid", "time", "mode"}; a thread of the holder rewrites "time"
every `HEARTBEAT_SECS`. A lock file is live until its holder deletes it;
it is stale (taken over, with a warning naming it) when its time is older
than `STALE_SECS`, or when it names this host and a pid that no longer
runs. So a killed holder blocks the directory for at most `STALE_SECS`
(hosts' clocks must agree to well within that). tf.io.gfile has no atomic
create-if-absent, so a lock file is written after checking that none is
live, and read back `SETTLE_SECS` later: of two processes that start at
the same moment, the one whose file was overwritten is refused. That needs
a file system whose reads see the last write (GCS and S3 do); the lock
guards against mistakes (a second command on a running run), not against
a race started on purpose.

Only the holder of the exclusive lock is the only writer, so it then removes
what a killed writer left behind (`remove_stray_temporaries`): the hidden
`.<name>.<random>.tmp` files and directories of `io_utils.atomic_path`, the
SavedModel exporter and the TFLite exporter, `.partial.*` model files, and
TF's `<checkpoint>_temp` directories of an unfinished checkpoint save.
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

# Names written only while a file is incomplete (renamed when whole).
_STRAY = re.compile(r"^(\..+\.tmp|\.partial\..+|ckpt-\d+_temp)$")


def hold(run_dir, shared=False):
    """Holds the run directory's lock; refuses (ConfigError) when taken.

    A context manager that yields True when this process holds the lock
    exclusively. A run directory that cannot be written (a read-only copy
    of a finished run) is not locked (yields False): nothing can write there.
    """
    if io_utils.is_url(run_dir):
        return _hold_file(run_dir, shared)
    return _hold_flock(run_dir, shared)


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
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
                        | fcntl.LOCK_NB)
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


# ------------------------------------------------- gfile run directories

def _record(mode):
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "time": time.time(), "mode": mode}


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
    except PermissionError:
        return True
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


def _live_holders(run_dir, shared):
    """[(path, record)] of the live lock files that exclude this request.

    Stale ones are deleted (with a warning) as they are found.
    """
    names = [LOCK_FILE]
    if not shared:
        names += [n for n in io_utils.listdir(run_dir)
                  if n.startswith(SHARED_PREFIX)]
    found = []
    for name in names:
        path = io_utils.join(run_dir, name)
        record = _read_record(path)
        if record is None:
            continue
        why = _stale(record)
        if why is not None:
            logging.warning("taking over the lock %s of a stopped run (%s; %s)",
                            path, _describe(record), why)
            io_utils.remove(path, missing_ok=True)
            continue
        found.append((path, record))
    return found


class _Heartbeat(threading.Thread):
    """Rewrites the lock file's time every HEARTBEAT_SECS until stopped."""

    def __init__(self, path, record):
        super().__init__(daemon=True, name="run-lock-heartbeat")
        self.path, self.record = path, record
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(HEARTBEAT_SECS):
            try:
                if not _is_mine(self.path, self.record):
                    logging.error("the run lock %s was taken over by another "
                                  "process", self.path)
                    return
                io_utils.write_json(self.path, {**self.record, "time": time.time()})
            except Exception as e:  # pylint: disable=broad-except
                # A passing network error: the next beat tries again.
                logging.warning("could not refresh the run lock %s: %s",
                                self.path, e)


def _is_mine(path, record):
    mine = _read_record(path)
    return mine is not None and mine.get("token") == record["token"]


@contextlib.contextmanager
def _hold_file(run_dir, shared):
    mode = "shared" if shared else "exclusive"
    name = (f"{SHARED_PREFIX}{socket.gethostname()}.{os.getpid()}" if shared
            else LOCK_FILE)
    path = io_utils.join(run_dir, name)
    record = {**_record(mode), "token": os.urandom(8).hex()}
    io_utils.makedirs(run_dir)
    _refuse_if_held(run_dir, shared)
    if not _write_lock(path, record):
        yield False     # read-only: nothing can write there
        return
    # Read back after a pause: a process that started at the same moment
    # and wrote over this file, or took the other kind of lock, wins.
    time.sleep(SETTLE_SECS)
    try:
        if not _is_mine(path, record):
            raise _in_use(run_dir, _describe(_read_record(path) or {}), path)
        _refuse_if_held(run_dir, shared, path)
    except ConfigError:
        if _is_mine(path, record):
            io_utils.remove(path, missing_ok=True)
        raise
    beat = _Heartbeat(path, record)
    beat.start()
    try:
        yield not shared
    finally:
        beat.stop.set()
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
    """ConfigError naming a live lock (other than `own_path`, this
    process's own once written) that excludes this request."""
    for path, record in _live_holders(run_dir, shared):
        if path != own_path:
            raise _in_use(run_dir, _describe(record), path)


# ------------------------------------------------- killed writers' files

def remove_stray_temporaries(run_dir):
    """Removes the temporaries of an earlier, killed writer; returns their paths.

    Call only while holding the exclusive lock. `workertemp_<id>` checkpoint
    directories of live multi-worker peers are not touched.
    """
    removed = []
    for root, dirs, files in io_utils.walk(run_dir):
        for name in list(dirs):
            if _STRAY.match(name):
                io_utils.rmtree(io_utils.join(root, name))
                removed.append(io_utils.join(root, name))
                dirs.remove(name)
        for name in files:
            if _STRAY.match(name):
                try:
                    io_utils.remove(io_utils.join(root, name))
                except FileNotFoundError:
                    continue
                removed.append(io_utils.join(root, name))
    if removed:
        logging.warning("removed %d temporary file(s) left by an interrupted "
                        "run in %s: %s", len(removed), run_dir,
                        ", ".join(io_utils.relpath(p, run_dir)
                                  for p in removed[:5]))
    return removed
