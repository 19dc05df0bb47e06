"""Files of run directories: local paths or any `tf.io.gfile` URL.

The one module that knows about file systems. A path with a scheme
(`gs://bucket/run`, TF's in-memory `ram://...`) goes through `tf.io.gfile`,
so the workers of a multi-worker job can share a run directory; a local
path through `os` and `open` (OSError errno values, `flock` in run_lock).

Files are written atomically: under a temporary name in the same directory,
renamed when whole (on an object store, a server-side copy and delete), so
a final name never holds a half-written file.
"""

import builtins
import contextlib
import errno
import glob as glob_lib
import io
import json
import math
import os
import posixpath
import shutil
import tempfile
import uuid

import numpy as np

from tf_pixintra.errors import DataError

SCHEME_SEPARATOR = "://"
RAM_SCHEME = "ram://"    # TF's in-memory file system (tests)


def _tf():
    # Imported on the first URL path only: the tools that never touch TF
    # (evaluate --predictions, --help, a local run's lock) skip its start-up.
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return tf


def _gfile():
    return _tf().io.gfile


def is_url(path):
    """True for a path with a scheme (`gs://b/x`, `ram://x`): a gfile path."""
    return SCHEME_SEPARATOR in os.fspath(path)


def _split_url(path):
    scheme, _, rest = os.fspath(path).partition(SCHEME_SEPARATOR)
    return scheme + SCHEME_SEPARATOR, rest


def refused_write(error):
    """True if `error` (an OSError or a gfile error) is a refused write:
    read-only, or no permission."""
    if isinstance(error, OSError):
        return error.errno in (errno.EROFS, errno.EACCES, errno.EPERM)
    return isinstance(error, _tf().errors.PermissionDeniedError)


def join(path, *parts):
    """os.path.join; keeps `scheme://` of a URL intact."""
    return os.path.join(os.fspath(path), *parts)


def absolute(path):
    """os.path.abspath for a local path; a URL normalised but kept a URL."""
    path = os.fspath(path)
    if not is_url(path):
        return os.path.abspath(path)
    scheme, rest = _split_url(path)
    return scheme + (posixpath.normpath(rest) if rest else "")


def parent(path):
    """The directory holding `path` ("." for a bare local file name)."""
    path = os.fspath(path)
    if is_url(path):
        scheme, rest = _split_url(absolute(path))
        return scheme + posixpath.dirname(rest)
    return os.path.dirname(os.path.normpath(path)) or "."


def relpath(path, start):
    """os.path.relpath, also between two URLs of one file system (across
    file systems: `path` itself)."""
    if not (is_url(path) or is_url(start)):
        return os.path.relpath(path, start)
    (scheme, rest), (other, base) = _split_url(path), _split_url(start)
    if scheme != other or not (is_url(path) and is_url(start)):
        return os.fspath(path)
    return posixpath.relpath(posixpath.normpath("/" + rest),
                             posixpath.normpath("/" + base))


def inside(directory, relative, source):
    """`directory`/`relative`; DataError naming `source` (the file or list
    that gave `relative`) if it leaves `directory`."""
    if is_url(directory):
        base = posixpath.normpath("/" + _split_url(absolute(directory))[1])
        path = posixpath.normpath(posixpath.join(base, relative))
    else:
        base = os.path.realpath(directory)
        path = os.path.realpath(os.path.join(directory, relative))
    if (os.path.isabs(relative) or is_url(relative)
            or posixpath.commonpath([base, path]) != base):
        raise DataError(f"{source}: path {relative!r} leaves {directory}; "
                        "expected a path relative to it and inside it")
    return join(directory, relative)


def exists(path):
    return _gfile().exists(path) if is_url(path) else os.path.exists(path)


def isdir(path):
    return _gfile().isdir(path) if is_url(path) else os.path.isdir(path)


def isfile(path):
    if not is_url(path):
        return os.path.isfile(path)
    try:   # one request: a data set root lists and checks every file
        return not _gfile().stat(path).is_directory
    except _tf().errors.NotFoundError:
        return False


def getsize(path):
    """Size in bytes; FileNotFoundError if missing."""
    if not is_url(path):
        return os.path.getsize(path)
    try:
        return _gfile().stat(path).length
    except _tf().errors.NotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None


def size_and_mtime(path):
    """(size in bytes, modification time in ns) of a file."""
    if not is_url(path):
        stat = os.stat(path)
        return stat.st_size, stat.st_mtime_ns
    stat = _gfile().stat(path)
    return stat.length, stat.mtime_nsec


def listdir(path):
    """Names in a directory (sorted, without the trailing "/" some object
    stores add); FileNotFoundError if it is missing."""
    if not is_url(path):
        return sorted(os.listdir(path))
    if not _gfile().isdir(path):
        raise FileNotFoundError(f"{path}: no such directory")
    names = sorted({name.rstrip("/") for name in _gfile().listdir(path)})
    if os.fspath(path).startswith(RAM_SCHEME):
        # TF's ram:// lists by prefix ("assets" lists ".extra" of
        # "assets.extra"): keep the names that exist. (Its `exists` is true
        # for a prefix of a name too: no run directory name prefixes another.)
        names = [n for n in names if _gfile().exists(join(path, n))]
    return names


def walk(path):
    """os.walk: (directory, dir names, file names), top-down; prune by
    editing the yielded dir names. A missing `path` yields nothing."""
    if not is_url(path):
        yield from os.walk(path)
    elif _gfile().isdir(path):
        dirs, files = [], []
        for name in listdir(path):
            (dirs if _gfile().isdir(join(path, name)) else files).append(name)
        yield path, dirs, files
        for name in dirs:
            yield from walk(join(path, name))


def glob(pattern):
    """Paths matching a pattern (`*` and `?`, no `**`), sorted."""
    return sorted(_gfile().glob(pattern) if is_url(pattern) else glob_lib.glob(pattern))


def makedirs(path):
    """Creates a directory and its parents; an existing one is fine."""
    if is_url(path):
        _gfile().makedirs(path)
    else:
        os.makedirs(path, exist_ok=True)


def remove(path, missing_ok=False):
    """Deletes one file; FileNotFoundError if missing, unless `missing_ok`."""
    try:
        if is_url(path):
            try:
                _gfile().remove(path)
            except _tf().errors.NotFoundError:
                raise FileNotFoundError(f"{path}: no such file") from None
        else:
            os.remove(path)
    except FileNotFoundError:
        if not missing_ok:
            raise


def rmtree(path):
    """Deletes a directory and everything below it; a missing one is fine."""
    if not is_url(path):
        shutil.rmtree(path, ignore_errors=True)
    elif _gfile().exists(path):
        with contextlib.suppress(_tf().errors.NotFoundError):
            _gfile().rmtree(path)


def rename(source, target):
    """Renames a file, replacing `target` if it exists."""
    if is_url(source) or is_url(target):
        _gfile().rename(source, target, overwrite=True)
    else:
        os.replace(source, target)


def copy_tree(source, target):
    """Copies the files below `source` to the same places below `target`."""
    for root, _, files in walk(source):
        rel = relpath(root, source)
        out = target if rel == "." else join(target, rel)
        makedirs(out)
        for name in files:
            copy_file(join(root, name), join(out, name))


def copy_file(source, target):
    """Copies one file, replacing `target` if it exists."""
    if is_url(source) or is_url(target):
        _gfile().copy(source, target, overwrite=True)
    else:
        shutil.copyfile(source, target)


def open_file(path, mode="rb"):
    """A file object (`open` or tf.io.gfile.GFile); FileNotFoundError when
    reading a missing file. Write through `atomic_path` instead."""
    if not is_url(path):
        return builtins.open(path, mode)  # pylint: disable=consider-using-with,unspecified-encoding
    if "r" in mode and not _gfile().exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    return _gfile().GFile(path, mode)


def read_bytes(path):
    """A file's content; FileNotFoundError if it is missing."""
    if not is_url(path):
        with builtins.open(path, "rb") as f:
            return f.read()
    try:
        with _gfile().GFile(path, "rb") as f:
            return f.read()
    except _tf().errors.NotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None


def read_text(path):
    return read_bytes(path).decode("utf-8")


def read_json(path):
    """A JSON file's content; DataError naming the path if it is damaged
    (empty, truncated, not UTF-8), FileNotFoundError if it is missing."""
    data = read_bytes(path)
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: damaged JSON file (not UTF-8 text at byte "
                        f"{e.start})") from None
    except json.JSONDecodeError as e:
        what = "empty file" if not data.strip() else (
            f"{e.msg} at line {e.lineno} column {e.colno}")
        raise DataError(f"{path}: damaged JSON file ({what}, {len(data)} "
                        "bytes)") from None


def load_npy(path):
    """A NumPy array saved by `save_npy` (no pickled objects)."""
    return np.load(io.BytesIO(read_bytes(path)), allow_pickle=False)


def _temporary_name(path):
    """`.<name>.<random>.tmp` beside `path` (run_lock removes strays)."""
    return join(parent(path), f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path` (for `open_file(tmp, "wb")` or
    any gfile-aware writer); renames it to `path` on success, removes it on
    an exception."""
    directory = parent(path)
    makedirs(directory)
    if is_url(path):
        tmp = _temporary_name(path)
    else:
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".",
                                   suffix=".tmp", dir=directory)
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual mode
    try:
        yield tmp
        rename(tmp, path)
    except BaseException:
        remove(tmp, missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path):
    """Yields a temporary directory path beside `path` that replaces the
    directory `path` on success (a URL has no directory rename: the files are
    copied, so `path` is whole once this returns)."""
    directory = parent(path)
    makedirs(directory)
    if is_url(path):
        tmp = _temporary_name(path)
        makedirs(tmp)
    else:
        tmp = tempfile.mkdtemp(prefix="." + os.path.basename(path) + ".",
                               suffix=".tmp", dir=directory)
    try:
        target = join(tmp, "content")
        yield target
        rmtree(path)
        if is_url(path):
            copy_tree(target, path)
        else:
            os.replace(target, path)
    finally:
        rmtree(tmp)


@contextlib.contextmanager
def local_scratch(directory, prefix):
    """Yields a new local directory (the TFLite converter's input), removed
    on exit: `<prefix><random>.tmp` in a local `directory`, where run_lock's
    clean-up finds a killed process's; for a URL, in the system's one."""
    if is_url(directory):
        scratch = tempfile.mkdtemp(prefix=prefix.lstrip("."), suffix=".tmp")
    else:
        makedirs(directory)
        scratch = tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=directory)
    try:
        yield scratch
    finally:
        rmtree(scratch)


def write_bytes(path, data):
    with atomic_path(path) as tmp:
        with open_file(tmp, "wb") as f:
            f.write(data)


def write_text(path, text):
    write_bytes(path, text.encode("utf-8"))


def write_json(path, obj):
    """Writes `obj` as indented JSON to `path` atomically; NaN and
    infinities as null (strict readers reject a bare NaN)."""
    text = json.dumps(finite_or_null(obj), indent=2, sort_keys=True, allow_nan=False)
    write_text(path, text + "\n")


def save_npy(path, array):
    """Writes a NumPy array as .npy, atomically."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    write_bytes(path, buffer.getvalue())


def finite_or_null(obj):
    """`obj` with every non-finite float (NaN, +-inf) replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_null(v) for v in obj]
    return obj
