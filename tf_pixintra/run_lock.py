"""One writer per run directory, and the temporary files a killed writer left.

`hold(run_dir)` takes an exclusive `flock` on `<run_dir>/.lock` for as long
as the run lasts. A second process on the same run directory is refused
with one line naming the holder's pid. The kernel drops a flock when its
holder dies (SIGKILL and power loss included), so a crash never leaves the
directory locked; the file itself stays and is reused. Workers of a
`--shard_index=k` pseudo-label split take the lock shared: they run side by
side, while an ordinary run excludes them and they exclude it.

Only the holder of the exclusive lock is the only writer, so it then removes
what a killed writer left behind (`remove_stray_temporaries`): the hidden
`.<name>.<random>.tmp` files and directories of `io_utils.atomic_path`, the
SavedModel exporter and the TFLite exporter, `.partial.*` model files, and
TF's `<checkpoint>_temp` directories of an unfinished checkpoint save.
"""

import contextlib
import errno
import fcntl
import os
import re
import shutil

from absl import logging

from tf_pixintra.errors import ConfigError

LOCK_FILE = ".lock"

# Names written only while a file is incomplete (renamed when whole).
_STRAY = re.compile(r"^(\..+\.tmp|\.partial\..+|ckpt-\d+_temp)$")


@contextlib.contextmanager
def hold(run_dir, shared=False):
    """Holds the run directory's lock; refuses (ConfigError) when taken.

    Yields True when this process holds the lock exclusively. A run
    directory that cannot be written (a read-only copy of a finished run) is
    not locked (yields False): nothing can write there.
    """
    path = os.path.join(run_dir, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            yield False
            return
        raise
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
                        | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"--run_dir={run_dir!r} is in use by another process "
                f"({_holder(path)}, lock {path}); wait for it to end or use "
                "another --run_dir") from None
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


def remove_stray_temporaries(run_dir):
    """Removes the temporaries of an earlier, killed writer; returns their paths.

    Call only while holding the exclusive lock. `workertemp_<id>` checkpoint
    directories of live multi-worker peers are not touched.
    """
    removed = []
    for root, dirs, files in os.walk(run_dir):
        for name in list(dirs):
            if _STRAY.match(name):
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)
                removed.append(os.path.join(root, name))
                dirs.remove(name)
        for name in files:
            if _STRAY.match(name):
                try:
                    os.remove(os.path.join(root, name))
                except FileNotFoundError:
                    continue
                removed.append(os.path.join(root, name))
    if removed:
        logging.warning("removed %d temporary file(s) left by an interrupted "
                        "run in %s: %s", len(removed), run_dir,
                        ", ".join(os.path.relpath(p, run_dir)
                                  for p in removed[:5]))
    return removed
