"""Atomic file writing: write to a temporary name, rename when complete.

A killed process never leaves a half-written file under its final name, and
an existing file is only replaced once the new one is whole.
"""

import contextlib
import json
import math
import os
import tempfile

from tf_pixintra.errors import DataError


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; renames it to `path` on success.

    On an exception the temporary file is removed and `path` is left untouched.
    """
    directory = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
            prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual mode
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_bytes(path, data):
    """Writes `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def write_text(path, text):
    """Writes `text` (UTF-8) to `path` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path, obj):
    """Writes `obj` as indented JSON to `path` atomically.

    NaN and infinities are not JSON: they are written as null (never as a
    bare NaN token that strict readers reject).
    """
    text = json.dumps(finite_or_null(obj), indent=2, sort_keys=True,
                      allow_nan=False)
    write_text(path, text + "\n")


def finite_or_null(obj):
    """`obj` with every non-finite float (NaN, +-inf) replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_null(v) for v in obj]
    return obj


def read_json(path):
    """Reads a JSON file.

    A damaged file (empty, truncated, not UTF-8) raises DataError naming the
    path; a missing one raises FileNotFoundError as before.
    """
    with open(path, "rb") as f:
        data = f.read()
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


def inside(directory, relative, source):
    """`directory`/`relative`, refused (DataError) if it leaves `directory`.

    `source` names the file or list that gave `relative`, for the message.
    """
    base = os.path.realpath(directory)
    path = os.path.realpath(os.path.join(directory, relative))
    if os.path.isabs(relative) or os.path.commonpath([base, path]) != base:
        raise DataError(f"{source}: path {relative!r} leaves {directory}; "
                        "expected a path relative to it and inside it")
    return os.path.join(directory, relative)
