"""io_utils on a local directory and on a tf.io.gfile URL (TF's ram://)."""

import errno
import os
import uuid

import numpy as np
import pytest
import tensorflow as tf

from tf_pixintra import io_utils
from tf_pixintra.errors import DataError


@pytest.fixture(params=["local", "ram"])
def root(request, tmp_path):
    """An empty directory: a local one, or a fresh ram:// one."""
    if request.param == "local":
        return str(tmp_path)
    path = f"ram://io-{uuid.uuid4().hex[:8]}/dir"
    io_utils.makedirs(path)
    return path


def test_url_paths_keep_their_scheme():
    assert io_utils.is_url("gs://b/run") and not io_utils.is_url("/tmp/run")
    assert io_utils.join("ram://a/b", "c", "d.json") == "ram://a/b/c/d.json"
    assert io_utils.absolute("ram://a/./b/../c/") == "ram://a/c"
    assert io_utils.absolute("run") == os.path.abspath("run")
    assert io_utils.parent("ram://a/b/c.json") == "ram://a/b"
    assert io_utils.parent("gs://bucket/run/") == "gs://bucket"
    assert io_utils.parent("c.json") == "."
    assert io_utils.relpath("ram://a/b/inter/model.keras", "ram://a/b") \
        == "inter/model.keras"
    assert io_utils.relpath("ram://a/b/x", "gs://a/b") == "ram://a/b/x"
    assert io_utils.relpath("/r/inter/m.keras", "/r") == "inter/m.keras"


@pytest.mark.parametrize("directory", ["ram://a/run", "gs://b/run", "/tmp/run"])
def test_inside_refuses_a_path_that_leaves_the_directory(directory):
    assert io_utils.inside(directory, "x/y.tfrecord", "index.json") \
        == f"{directory}/x/y.tfrecord"
    for bad in ("../other/x", "x/../../y", "/etc/passwd", "gs://other/x"):
        with pytest.raises(DataError, match=f"index.json: path .* leaves {directory}"):
            io_utils.inside(directory, bad, "index.json")


def test_files_round_trip_and_queries(root):
    path = io_utils.join(root, "sub", "a.json")
    io_utils.write_json(path, {"x": float("nan"), "y": [1, 2]})
    assert io_utils.read_json(path) == {"x": None, "y": [1, 2]}
    assert io_utils.exists(path) and io_utils.isfile(path)
    assert io_utils.isdir(io_utils.join(root, "sub")) and not io_utils.isdir(path)
    assert io_utils.getsize(path) == len(io_utils.read_bytes(path))
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    io_utils.save_npy(io_utils.join(root, "a.npy"), array)
    np.testing.assert_array_equal(io_utils.load_npy(io_utils.join(root, "a.npy")),
                                  array)
    io_utils.write_text(path, "new")          # replaces the file
    assert io_utils.read_text(path) == "new"
    # No temporary file is left beside the written ones.
    assert io_utils.listdir(root) == ["a.npy", "sub"]
    assert io_utils.listdir(io_utils.join(root, "sub")) == ["a.json"]
    assert io_utils.glob(io_utils.join(root, "*.npy")) == [io_utils.join(root, "a.npy")]
    io_utils.remove(path)
    assert not io_utils.exists(path)
    io_utils.remove(path, missing_ok=True)
    with pytest.raises(FileNotFoundError):
        io_utils.remove(path)
    io_utils.rmtree(root)
    assert not io_utils.exists(root)
    io_utils.rmtree(root)                     # a missing one is fine


def test_missing_and_damaged_files_are_named(root):
    missing = io_utils.join(root, "none.json")
    for read in (io_utils.read_json, io_utils.read_bytes, io_utils.getsize):
        with pytest.raises(FileNotFoundError):
            read(missing)
    with pytest.raises(FileNotFoundError):
        io_utils.listdir(io_utils.join(root, "nodir"))
    damaged = io_utils.join(root, "bad.json")
    io_utils.write_bytes(damaged, b'{"a": ')
    with pytest.raises(DataError, match=f"{damaged}: damaged JSON file"):
        io_utils.read_json(damaged)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(root):
    path = io_utils.join(root, "keep.txt")
    io_utils.write_text(path, "old")
    with pytest.raises(RuntimeError):
        with io_utils.atomic_path(path) as tmp:
            with io_utils.open_file(tmp, "wb") as f:
                f.write(b"half")
            raise RuntimeError("killed")
    assert io_utils.read_text(path) == "old"
    assert io_utils.listdir(root) == ["keep.txt"]


def test_tfrecord_writer_through_atomic_path(root):
    path = io_utils.join(root, "x.tfrecord")
    with io_utils.atomic_path(path) as tmp:
        with tf.io.TFRecordWriter(tmp) as writer:
            writer.write(b"abc")
    assert [r.numpy() for r in tf.data.TFRecordDataset(path)] == [b"abc"]


def test_atomic_dir_replaces_a_directory_when_whole(root):
    target = io_utils.join(root, "model", "1")
    for content in ("first", "second"):
        with io_utils.atomic_dir(target) as tmp:
            io_utils.write_text(io_utils.join(tmp, "assets.extra", "f"), content)
            io_utils.write_text(io_utils.join(tmp, "v.pb"), content)
    assert io_utils.read_text(io_utils.join(target, "assets.extra", "f")) == "second"
    with pytest.raises(RuntimeError):
        with io_utils.atomic_dir(target) as tmp:
            io_utils.write_text(io_utils.join(tmp, "v.pb"), "third")
            raise RuntimeError("killed")
    assert io_utils.read_text(io_utils.join(target, "v.pb")) == "second"
    assert io_utils.listdir(io_utils.join(root, "model")) == ["1"]
    assert [(io_utils.relpath(d, target), sorted(f)) for d, _, f in
            io_utils.walk(target)] == [(".", ["v.pb"]), ("assets.extra", ["f"])]


def test_ram_listing_shows_only_what_exists():
    """TF's ram:// lists names that merely share a prefix ("assets" lists
    ".extra" of "assets.extra"); io_utils filters them out."""
    root = f"ram://list-{uuid.uuid4().hex[:8]}"
    for name in ("a/x", "a.extra/y", "ab"):
        io_utils.write_text(f"{root}/{name}", "1")
    assert io_utils.listdir(f"{root}/a") == ["x"]
    assert sorted(f for _, _, files in io_utils.walk(f"{root}/a")
                  for f in files) == ["x"]


def test_local_scratch_is_on_local_disk_and_removed(tmp_path):
    for directory in (str(tmp_path / "out"), "ram://scratch/out"):
        with io_utils.local_scratch(directory, ".tflite_source.") as scratch:
            assert os.path.isdir(scratch)
            if not io_utils.is_url(directory):
                assert os.path.dirname(scratch) == directory
        assert not os.path.exists(scratch)


def test_refused_write_knows_both_kinds_of_error():
    assert io_utils.refused_write(OSError(errno.EROFS, "read-only"))
    assert not io_utils.refused_write(OSError(errno.ENOSPC, "full"))
    assert io_utils.refused_write(
        tf.errors.PermissionDeniedError(None, None, "no"))
    assert not io_utils.refused_write(tf.errors.NotFoundError(None, None, "x"))
