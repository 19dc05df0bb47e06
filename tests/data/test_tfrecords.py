"""Tests for tf_pixintra.data.tfrecords (tiny 16x24 records)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import tfrecord_helpers as R
from tf_pixintra.data import tfrecords
from tf_pixintra.errors import DataError

H, W = 16, 24
# The stated bound: half a 16-bit quantisation step plus float32 rounding.
Z_BOUND = 0.5 / 65535 + 1e-7


def sample(i=0, rng=None):
    """A valid (image, pseudo_label, hard_mask, z, filename) tuple."""
    rng = rng or np.random.default_rng(i)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    hard = rng.integers(0, 2, (H, W)).astype(np.uint8)
    pseudo = np.where(hard == 1, 255, rng.integers(0, 19, (H, W))).astype(np.uint8)
    z = np.where(hard == 1, rng.random((H, W)), 0.0).astype(np.float32)
    z[0, 0], z[0, 1] = 1.0, 0.0
    hard[0, 0], pseudo[0, 0] = 1, 255
    return image, pseudo, hard, z, f"frankfurt_{i:06d}"


def png(array):
    return tf.io.encode_png(array[..., None] if array.ndim == 2 else array).numpy()


def test_round_trip_exact_maps_and_bounded_z():
    image, pseudo, hard, z, name = sample(0)
    z[1, :6] = [1e-9, 0.5 / 65535, 1.5 / 65535, 0.3333333, 0.99999, 0.7]
    out = tfrecords.decode_example(
            tfrecords.encode_example(image, pseudo, hard, z, name).SerializeToString())
    np.testing.assert_array_equal(out["image"].numpy(), image)
    np.testing.assert_array_equal(out["pseudo_label"].numpy(), pseudo)
    np.testing.assert_array_equal(out["hard_mask"].numpy(), hard)
    assert out["pseudo_label"].dtype == tf.uint8 and out["z"].dtype == tf.float32
    error = np.abs(out["z"].numpy().astype(np.float64) - z.astype(np.float64))
    assert error.max() <= Z_BOUND
    assert tfrecords.Z_MAX_ERROR <= 1e-3 and tfrecords.Z_MAX_ERROR == pytest.approx(
            Z_BOUND)
    assert out["z"].numpy()[0, 0] == 1.0 and out["z"].numpy()[0, 1] == 0.0
    assert out["filename"].numpy() == name.encode()
    assert (int(out["height"]), int(out["width"])) == (H, W)


def test_png_bytes_image_and_feature_keys():
    image, pseudo, hard, z, name = sample(1)
    example = tfrecords.encode_example(png(image), pseudo, hard, z, name)
    feature = example.features.feature
    assert set(feature) == {
        "image/encoded", "image/format", "image/filename", "image/height",
        "image/width", "image/segmentation/class/encoded",
        "image/segmentation/class/format", "image/segmentation/hard_mask/encoded",
        "image/segmentation/z/encoded"}
    assert feature["image/format"].bytes_list.value[0] == b"png"
    assert feature["image/height"].int64_list.value[0] == H
    assert feature["image/width"].int64_list.value[0] == W
    assert feature["image/segmentation/z/encoded"].bytes_list.value[0][24] == 16
    out = tfrecords.decode_example(example.SerializeToString())
    np.testing.assert_array_equal(out["image"].numpy(), image)
    with pytest.raises(DataError, match=f"{name}: not a PNG .*expected "
                       "PNG-encoded RGB"):
        tfrecords.encode_example(b"GIF89a" + bytes(40), pseudo, hard, z, name)


@pytest.mark.parametrize("field, value, expected", [
    ("pseudo", 19, "pseudo_label has value 19"),
    ("hard", 2, "hard_mask has value 2"),
    ("z", 1.5, "z has value 1.5"),
    ("z", -0.25, "z has value -0.25"),
    ("pseudo_on_hard", 4, "on a hard pixel"),
    ("shape", None, "expected [16, 24]"),
])
def test_encode_refuses_bad_maps(field, value, expected):
    image, pseudo, hard, z, name = sample(2)
    if field == "pseudo":
        hard[3, 3], pseudo[3, 3] = 0, value
    elif field == "hard":
        hard[3, 3] = value
    elif field == "z":
        z[3, 3] = value
    elif field == "pseudo_on_hard":
        hard[3, 3], pseudo[3, 3] = 1, value
    else:
        pseudo = pseudo[:, :-1]
    with pytest.raises(DataError, match=name) as info:
        tfrecords.encode_example(image, pseudo, hard, z, name)
    assert expected in str(info.value)


def test_write_records_shards_index_and_order(tmp_path):
    examples = [tfrecords.encode_example(*sample(i)) for i in range(7)]
    index_path = R.write_records(str(tmp_path), "pseudo", examples, 3,
                                         {"alpha": 0.85, "round": 1})
    assert os.path.basename(index_path) == "pseudo-index.json"
    assert sorted(os.listdir(tmp_path)) == [
        "pseudo-00000-of-00003.tfrecord", "pseudo-00001-of-00003.tfrecord",
        "pseudo-00002-of-00003.tfrecord", "pseudo-index.json"]
    with open(index_path) as f:
        index = json.load(f)
    assert [s["num_records"] for s in index["shards"]] == [3, 2, 2]
    assert index["total"] == 7 and index["num_shards"] == 3
    assert index["settings"] == {"alpha": 0.85, "round": 1}
    assert [s["num_bytes"] for s in index["shards"]] == [
        os.path.getsize(tmp_path / s["file"]) for s in index["shards"]]
    # Round robin: shard 0 holds examples 0, 3, 6.
    names = [e["filename"].numpy().decode()
             for e in R.example_dataset(index_path)]
    assert names == [f"frankfurt_{i:06d}" for i in (0, 3, 6, 1, 4, 2, 5)]
    assert tfrecords.validate_records(index_path)["total"] == 7


def test_write_shard_from_several_writers_then_index(tmp_path):
    for shard in (1, 0):  # Any order, as separate processes would.
        path = R.write_shard(
                str(tmp_path), "run", shard, 2,
                (tfrecords.encode_example(*sample(10 * shard + i)) for i in range(shard + 1)))
        assert path == str(tmp_path / f"run-0000{shard}-of-00002.tfrecord")
    index = tfrecords.read_index(tfrecords.write_index(str(tmp_path), "run", 2, {}))
    assert [s["num_records"] for s in index["shards"]] == [1, 2] and index["total"] == 3


def failing_examples(n_good):
    for i in range(n_good):
        yield tfrecords.encode_example(*sample(i))
    raise RuntimeError("worker died")


def test_failed_writers_leave_no_file(tmp_path):
    with pytest.raises(RuntimeError, match="worker died"):
        R.write_shard(str(tmp_path), "x", 0, 1, failing_examples(2))
    assert os.listdir(tmp_path) == []
    with pytest.raises(RuntimeError, match="worker died"):
        R.write_records(str(tmp_path), "y", failing_examples(3), 2, {})
    assert os.listdir(tmp_path) == []


def test_write_index_names_missing_shard(tmp_path):
    R.write_shard(str(tmp_path), "m", 0, 2, [tfrecords.encode_example(*sample())])
    with pytest.raises(DataError, match="m-00001-of-00002.tfrecord"):
        tfrecords.write_index(str(tmp_path), "m", 2, {})
    assert not (tmp_path / "m-index.json").exists()


def test_missing_and_truncated_shards_are_named(tmp_path):
    examples = [tfrecords.encode_example(*sample(i)) for i in range(4)]
    index_path = R.write_records(str(tmp_path), "t", examples, 2, {})
    shard = tmp_path / "t-00001-of-00002.tfrecord"
    data = shard.read_bytes()
    shard.write_bytes(data[:-10])
    with pytest.raises(DataError, match=f"{shard}.*truncated"):
        tfrecords.read_index(index_path)
    with pytest.raises(DataError, match=f"{shard}: truncated TFRecord file: record 1"):
        tfrecords.count_records(str(shard))
    shard.unlink()
    with pytest.raises(DataError, match=f"{shard}: shard listed in .* is missing"):
        tfrecords.read_index(index_path)


def forged(kind):
    """A record that breaks one invariant (built without encode's checks)."""
    image, pseudo, hard, z, _ = sample(5)
    z16 = tfrecords.encode_z(z)
    height, width = H, W
    if kind == "label":
        hard[2, 2], pseudo[2, 2] = 0, 30
    elif kind == "mask":
        hard[2, 2] = 3
    elif kind == "hard_labelled":
        hard[2, 2], pseudo[2, 2] = 1, 7
    elif kind == "shape":
        pseudo = pseudo[:-2]
    elif kind == "header":
        height = H + 1
    z_png = png(z16) if kind != "z8bit" else png((z16 >> 8).astype(np.uint8))
    return tfrecords._build_example(  # pylint: disable=protected-access
            png(image), png(pseudo), png(hard), z_png, "bad", height, width)


@pytest.mark.parametrize("kind, message", [
    ("label", "pseudo_label has value 30"),
    ("mask", "hard_mask has value 3"),
    ("hard_labelled", "pseudo_label is 7 on a hard pixel"),
    ("shape", "pseudo_label has shape [14, 24]"),
    ("header", "image is [16, 24], header says [17, 24]"),
    ("z8bit", "z PNG is 8-bit, expected 16-bit"),
])
def test_validation_names_shard_and_record(tmp_path, kind, message):
    good = [tfrecords.encode_example(*sample(i)) for i in range(3)]
    # Example 3 of 4 goes to shard 1 as its record 1.
    index_path = R.write_records(str(tmp_path), "v", good + [forged(kind)], 2, {})
    shard = str(tmp_path / "v-00001-of-00002.tfrecord")
    with pytest.raises(DataError) as info:
        tfrecords.validate_records(index_path)
    assert str(info.value).startswith(f"{shard}: record 1: ")
    assert message in str(info.value)


def test_undecodable_record_is_named(tmp_path):
    index_path = R.write_records(
            str(tmp_path), "u", [tfrecords.encode_example(*sample()), b"not a proto"], 1, {})
    with pytest.raises(DataError, match=r"u-00000-of-00001.tfrecord: record 1: cannot"):
        tfrecords.validate_records(index_path)
