"""TFRecords of target images with pseudo labels, hard masks and Z maps.

One record (a tf.train.Example) per target image, with the feature keys
(KEY_*) of the TF Model Garden segmentation convention plus two parallel
maps. A decoded Z differs from the stored float32 by at most 0.5/65535 plus
float32 rounding (< 1e-7): Z_MAX_ERROR.

Files: `NAME-00000-of-000NN.tfrecord` shards (`writers`) and `NAME-index.json`
(`write_index`). Records are checked against `check_maps` when written
(`encode_example`) or, for records this run did not write, by
`validate_records`; `decode_example` does no checks.
"""

import contextlib
import struct

import numpy as np
import tensorflow as tf

from tf_pixintra import io_utils
from tf_pixintra import run_layout
from tf_pixintra.data import datasets
from tf_pixintra.data import labels
from tf_pixintra.errors import DataError

INDEX_VERSION = 1
Z_SCALE = 65535
Z_MAX_ERROR = 0.5 / Z_SCALE + 1e-7

KEY_IMAGE = "image/encoded"  # RGB image, PNG
KEY_IMAGE_FORMAT = "image/format"  # b"png"
KEY_FILENAME = "image/filename"  # the image's name, UTF-8
KEY_HEIGHT = "image/height"  # int64
KEY_WIDTH = "image/width"  # int64
KEY_LABEL = "image/segmentation/class/encoded"  # pseudo label, 8-bit PNG, 255 = none
KEY_LABEL_FORMAT = "image/segmentation/class/format"  # b"png"
KEY_HARD_MASK = "image/segmentation/hard_mask/encoded"  # M (Eq. 2), 8-bit PNG, 0/1
KEY_Z = "image/segmentation/z/encoded"  # Z (Eq. 7), 16-bit PNG of round(Z * Z_SCALE)

_RECORD_HEADER = 12  # uint64 length + uint32 masked CRC of the length.
_RECORD_FOOTER = 4  # uint32 masked CRC of the data.


def check_maps(height, width, pseudo_label, hard_mask, z):
    """First violated record invariant as a sentence, or None.

    The pseudo label is 255 wherever the hard mask is 1 (Eq. 2/3: hard
    pixels carry no label).
    """
    for key, array in (("pseudo_label", pseudo_label), ("hard_mask", hard_mask),
                       ("z", z)):
        if array.shape != (height, width):
            return (f"{key} has shape {list(array.shape)}, expected "
                    f"[{height}, {width}] (the image's height and width)")
    pl = pseudo_label.astype(np.int64)
    bad = (pl >= labels.NUM_CLASSES) & (pl != labels.IGNORE_LABEL)
    if bad.any():
        return (f"pseudo_label has value {int(pl[bad][0])}, expected < "
                f"{labels.NUM_CLASSES} or {labels.IGNORE_LABEL}")
    hm = hard_mask.astype(np.int64)
    bad = (hm != 0) & (hm != 1)
    if bad.any():
        return f"hard_mask has value {int(hm[bad][0])}, expected 0 or 1"
    zf = z.astype(np.float64)
    bad = ~np.isfinite(zf) | (zf < 0.0) | (zf > 1.0)
    if bad.any():
        return f"z has value {float(zf[bad][0])}, expected a number in [0, 1]"
    bad = (hm == 1) & (pl != labels.IGNORE_LABEL)
    if bad.any():
        return (f"pseudo_label is {int(pl[bad][0])} on a hard pixel "
                f"(hard_mask == 1), expected {labels.IGNORE_LABEL}")
    return None


def _bytes_feature(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int_feature(value):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def _encode_png(array):
    return tf.io.encode_png(array[..., np.newaxis] if array.ndim == 2 else array).numpy()


def _build_example(image_png, pseudo_png, hard_png, z_png, filename, height, width):
    """The tf.train.Example, with no checks (tests use it to forge bad records)."""
    return tf.train.Example(features=tf.train.Features(feature={
        KEY_IMAGE: _bytes_feature(image_png),
        KEY_IMAGE_FORMAT: _bytes_feature(b"png"),
        KEY_FILENAME: _bytes_feature(filename.encode("utf-8")),
        KEY_HEIGHT: _int_feature(height),
        KEY_WIDTH: _int_feature(width),
        KEY_LABEL: _bytes_feature(pseudo_png),
        KEY_LABEL_FORMAT: _bytes_feature(b"png"),
        KEY_HARD_MASK: _bytes_feature(hard_png),
        KEY_Z: _bytes_feature(z_png),
    }))


def encode_z(z):
    """float Z in [0, 1] -> uint16 round(Z * 65535)."""
    return np.round(np.asarray(z, np.float64) * Z_SCALE).astype(np.uint16)


def encode_example(image, pseudo_label, hard_mask, z, filename):
    """One record as a tf.train.Example.

    image: PNG bytes of the RGB image or uint8 [H, W, 3]; pseudo_label: uint8
    trainIds [H, W], 255 = none; hard_mask: [H, W] of 0/1 (uint8 or bool);
    z: float [H, W] in [0, 1]. DataError naming `filename` when a
    `check_maps` invariant fails.
    """
    if isinstance(image, (bytes, bytearray)):
        image_png = bytes(image)
        height, width, _ = datasets.png_header(image_png, filename,
                                               "PNG-encoded RGB")
    else:
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise DataError(f"{filename}: image is {image.dtype} {list(image.shape)}, "
                            "expected uint8 [H, W, 3] RGB or PNG bytes")
        height, width = image.shape[:2]
        image_png = _encode_png(image)
    pseudo_label, hard_mask, z = map(np.asarray, (pseudo_label, hard_mask, z))
    problem = check_maps(height, width, pseudo_label, hard_mask, z)
    if problem:
        raise DataError(f"{filename}: {problem}")
    return _build_example(
            image_png, _encode_png(pseudo_label.astype(np.uint8)),
            _encode_png(hard_mask.astype(np.uint8)), _encode_png(encode_z(z)),
            filename, height, width)


_FEATURES = {key: tf.io.FixedLenFeature([], tf.string, default_value="")
             for key in (KEY_IMAGE, KEY_FILENAME, KEY_LABEL, KEY_HARD_MASK, KEY_Z)}
_FEATURES.update({key: tf.io.FixedLenFeature([], tf.int64, default_value=-1)
                  for key in (KEY_HEIGHT, KEY_WIDTH)})


def decode_example(serialized):
    """Serialized record -> dict of tensors (TF ops, usable in tf.data.map).

    image uint8 [H, W, 3], pseudo_label and hard_mask uint8 [H, W], z float32
    [H, W], filename string, height and width int64. No checks.
    """
    parsed = tf.io.parse_single_example(serialized, _FEATURES)
    z = tf.io.decode_png(parsed[KEY_Z], channels=1, dtype=tf.uint16)[..., 0]
    return {
        "image": tf.io.decode_png(parsed[KEY_IMAGE], channels=3),
        "pseudo_label": tf.io.decode_png(parsed[KEY_LABEL], channels=1)[..., 0],
        "hard_mask": tf.io.decode_png(parsed[KEY_HARD_MASK], channels=1)[..., 0],
        "z": tf.cast(z, tf.float32) / Z_SCALE,
        "filename": parsed[KEY_FILENAME],
        "height": parsed[KEY_HEIGHT],
        "width": parsed[KEY_WIDTH],
    }


def _serialize(example, where):
    if isinstance(example, tf.train.Example):
        return example.SerializeToString(deterministic=True)  # same bytes
    if isinstance(example, (bytes, bytearray)):
        return bytes(example)
    raise TypeError(f"{where}: expected tf.train.Example or serialized bytes, "
                    f"got {type(example).__name__}")


@contextlib.contextmanager
def writers(paths):
    """{key: write(example)} for TFRecord files {key: path}, as a context.

    `write` takes a tf.train.Example or serialized bytes. Each file is
    written under a temporary name and renamed when the block ends; if it
    raises, no file is left under any of the names.
    """
    with contextlib.ExitStack() as stack:
        out = {}
        for key, path in paths.items():
            tmp = stack.enter_context(io_utils.atomic_path(path))
            writer = tf.io.TFRecordWriter(tmp)
            stack.callback(writer.close)  # closed before its rename (LIFO)
            out[key] = (lambda example, writer=writer, path=path:
                        writer.write(_serialize(example, path)))
        yield out


def count_records(path):
    """Number of records in a TFRecord file, read from the record headers.

    DataError naming the file, record and byte offset if the file ends inside
    a record. CRCs are left to TensorFlow's reader.
    """
    size = io_utils.getsize(path)
    count = offset = 0
    with io_utils.open_file(path, "rb") as f:
        while offset + 8 <= size:
            f.seek(offset)
            length = struct.unpack("<Q", f.read(8))[0]
            end = offset + _RECORD_HEADER + length + _RECORD_FOOTER
            if end > size:
                break
            offset = end
            count += 1
    if offset != size:
        raise DataError(f"{path}: truncated TFRecord file: record {count} starts at "
                        f"byte {offset} but the file ends at byte {size}; expected "
                        "whole records (re-write this shard)")
    return count


def write_index(out_dir, name, num_shards, settings):
    """Checks all shards of `name` exist, counts them, writes NAME-index.json.

    Returns the index path. The index holds {"version", "name", "num_shards",
    "shards": [{"file", "num_records", "num_bytes"}], "total", "settings"}.
    """
    files = [run_layout.shard_name(name, i, num_shards) for i in range(num_shards)]
    missing = [f for f in files if not io_utils.isfile(io_utils.join(out_dir, f))]
    if missing:
        raise DataError(f"{out_dir}: missing shard(s) {', '.join(missing)}; expected "
                        f"all {num_shards} shards of {name!r} before writing the index")
    shards = []
    for f in files:
        path = io_utils.join(out_dir, f)
        shards.append({"file": f, "num_records": count_records(path),
                       "num_bytes": io_utils.getsize(path)})
    index = {"version": INDEX_VERSION, "name": name, "num_shards": num_shards,
             "shards": shards, "total": sum(s["num_records"] for s in shards),
             "settings": dict(settings or {})}
    path = io_utils.join(out_dir, run_layout.index_name(name))
    io_utils.write_json(path, index)
    return path


def read_index(index_path, check_files=True):
    """Reads NAME-index.json; adds "paths" (absolute shard paths).

    With check_files, DataError naming a shard that is missing or resized.
    """
    try:
        index = io_utils.read_json(index_path)  # DataError if damaged
    except FileNotFoundError:
        raise DataError(f"{index_path}: index file not found; expected the "
                        "NAME-index.json written by tfrecords.write_index") from None
    for key in ("name", "num_shards", "shards", "total"):
        if key not in index:
            raise DataError(f"{index_path}: index has no {key!r}; expected the keys "
                            "name, num_shards, shards, total, settings")
    directory = io_utils.parent(io_utils.absolute(index_path))
    # A shard name must stay in the index's directory (no "../", no absolute).
    index["paths"] = [io_utils.inside(directory, s["file"], index_path)
                      for s in index["shards"]]
    if check_files:
        for shard, path in zip(index["shards"], index["paths"]):
            if not io_utils.isfile(path):
                raise DataError(f"{path}: shard listed in {index_path} is missing")
            size = io_utils.getsize(path)
            if "num_bytes" in shard and size != shard["num_bytes"]:
                raise DataError(f"{path}: shard has {size} bytes, the index records "
                                f"{shard['num_bytes']}; the file is truncated or was "
                                "replaced (re-write the shard and its index)")
    return index


def validate_records(index_path):
    """Checks every record of an index; returns the index.

    DataError naming the shard and the record (0-based) that cannot be
    decoded, breaks a `check_maps` invariant or whose header size differs from
    its image; also if a shard's record count differs from the index.
    """
    index = read_index(index_path)
    for shard, path in zip(index["shards"], index["paths"]):
        count = count_records(path)
        if count != shard["num_records"]:
            raise DataError(f"{path}: {count} records, the index {index_path} "
                            f"records {shard['num_records']}")
        iterator = iter(tf.data.TFRecordDataset(path))
        for i in range(count):
            where = f"{path}: record {i}"
            try:
                record = next(iterator)
                out = decode_example(record)
            except tf.errors.OpError as e:
                raise DataError(f"{where}: cannot be read or decoded: "
                                f"{e.message.splitlines()[0]}") from None
            record_proto = tf.train.Example.FromString(record.numpy())
            z_png = record_proto.features.feature[KEY_Z].bytes_list.value[0]
            if z_png[24] != 16:
                raise DataError(f"{where}: z PNG is {z_png[24]}-bit, expected 16-bit")
            height, width = int(out["height"]), int(out["width"])
            image_hw = tuple(out["image"].shape[:2])
            if image_hw != (height, width):
                raise DataError(f"{where}: image is {list(image_hw)}, header says "
                                f"[{height}, {width}]")
            problem = check_maps(height, width, out["pseudo_label"].numpy(),
                                 out["hard_mask"].numpy(), out["z"].numpy())
            if problem:
                raise DataError(f"{where}: {problem}")
    return index
