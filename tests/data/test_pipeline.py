"""Tests for tf_pixintra.data.pipeline (tiny 16x24 images, CPU)."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import tfrecord_helpers as R
import tolerances as T
from tf_pixintra import losses
from tf_pixintra.data import pipeline
from tf_pixintra.data import tfrecords
from tf_pixintra.errors import ConfigError, DataError
from tf_pixintra.models.preprocessing import CAFFE_MEAN_BGR

H, W = 16, 24


def coordinate_features():
    """Maps whose values encode their pixel's (row, col).

    image channel 0 = row, channel 1 = col; label = col; pseudo_label = row;
    hard_mask = (row + col) % 2; z = (row * W + col) / (H * W).
    """
    rows, cols = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    image = np.stack([rows, cols, np.full_like(rows, 7)], -1).astype(np.float32)
    return {
        "image": tf.constant(image),
        "label": tf.constant(cols.astype(np.uint8)),
        "pseudo_label": tf.constant(rows.astype(np.uint8)),
        "hard_mask": tf.constant(((rows + cols) % 2).astype(np.uint8)),
        "z": tf.constant(((rows * W + cols) / (H * W)).astype(np.float32)),
        "name": tf.constant("x"),
    }


def check_maps_agree(out):
    """All nearest-resampled maps must come from the same source pixel."""
    row = out["pseudo_label"].numpy().astype(np.int64)
    col = out["label"].numpy().astype(np.int64)
    np.testing.assert_array_equal(out["hard_mask"].numpy(), (row + col) % 2)
    # z = float32((row W + col) / (H W)) is copied (nearest), then * H * W in
    # float32: 2 roundings of values below H W.
    np.testing.assert_allclose(out["z"].numpy() * H * W, row * W + col,
                               rtol=0, atol=T.gamma(2) * H * W)
    return row, col


def test_crop_and_flip_move_all_maps_together():
    flipped = cropped_at = 0
    for seed in range(8):
        out = pipeline.augment(coordinate_features(), crop_size=(8, 12), flip=True,
                               seed=(3, seed))
        assert out["image"].shape == (8, 12, 3) and out["label"].shape == (8, 12)
        assert out["name"].numpy() == b"x"
        row, col = check_maps_agree(out)
        image = out["image"].numpy()
        np.testing.assert_array_equal(image[..., 0], row)
        np.testing.assert_array_equal(image[..., 1], col)
        # A crop is a contiguous block: rows step by +1, columns by +1 or -1.
        assert (np.diff(row, axis=0) == 1).all()
        steps = np.diff(col, axis=1)
        assert (steps == 1).all() or (steps == -1).all()
        flipped += int((steps == -1).all())
        cropped_at += int(row[0, 0] != 0 or col.min() != 0)
    assert 0 < flipped < 8  # Both outcomes occur over 8 seeds.
    assert cropped_at > 0


def test_scaling_keeps_image_and_maps_aligned():
    for seed in range(6):
        out = pipeline.augment(coordinate_features(), crop_size=(8, 12),
                               scale_range=(0.6, 1.8), flip=True, seed=(5, seed))
        row, col = check_maps_agree(out)
        image = out["image"].numpy()
        # Bilinear samples the coordinate ramp at the point whose nearest
        # pixel the maps took: at most half a pixel apart.
        assert np.abs(image[..., 0] - row).max() <= 0.5 + 1e-4
        assert np.abs(image[..., 1] - col).max() <= 0.5 + 1e-4


def test_scaling_changes_the_size_before_the_crop():
    out = pipeline.augment(coordinate_features(), scale_range=(2.0, 2.0), seed=(0, 0))
    assert out["image"].shape == (32, 48, 3) and out["z"].shape == (32, 48)
    # Nearest neighbour at exactly 2x repeats each source pixel twice.
    np.testing.assert_array_equal(out["label"].numpy()[0], np.repeat(np.arange(W), 2))


def test_nearest_neighbour_keeps_label_values():
    rng = np.random.default_rng(0)
    values = np.array([0, 5, 18, 255], np.uint8)
    label = rng.choice(values, (H, W))
    features = {"image": tf.zeros([H, W, 3]), "label": tf.constant(label)}
    for seed in range(5):
        out = pipeline.augment(features, crop_size=(10, 10), scale_range=(0.7, 1.3),
                               seed=(1, seed))
        assert set(np.unique(out["label"].numpy())) <= set(values.tolist())
    resized = pipeline.resize(features, (7, 33))["label"].numpy()
    assert resized.shape == (7, 33) and set(np.unique(resized)) <= set(values.tolist())


def test_padding_values_when_scaled_image_is_smaller_than_crop():
    features = coordinate_features()
    features["image"] = features["image"] + 100.0  # Distinguish content from pad.
    features["hard_mask"] = tf.ones([H, W], tf.uint8)
    features["z"] = tf.ones([H, W], tf.float32)
    out = pipeline.augment(features, crop_size=(H, W), scale_range=(0.5, 0.5),
                           seed=(0, 0))
    inside = (slice(0, 8), slice(0, 12))
    for key, pad in (("image", 0.0), ("label", 255), ("pseudo_label", 255),
                     ("hard_mask", 255), ("z", 0.0)):
        value = out[key].numpy()
        assert (value[8:] == pad).all() and (value[:, 12:] == pad).all(), key
    assert (out["image"].numpy()[inside] >= 100.0).all()
    assert (out["hard_mask"].numpy()[inside] == 1).all()
    assert (out["z"].numpy()[inside] == 1.0).all()


def test_padded_pixels_are_neither_easy_nor_hard():
    """Pad 255 in M: the losses' valid mask is exactly the scaled image."""
    features = coordinate_features()
    hard = np.zeros((H, W), np.uint8)
    hard[:, W // 2:] = 1                      # right half hard, left half easy
    features["hard_mask"] = tf.constant(hard)
    out = pipeline.augment(features, crop_size=(H, W), scale_range=(0.5, 0.5),
                           seed=(0, 0))
    m, valid = losses.hard_mask_and_valid(out["hard_mask"])
    expected_valid = np.zeros((H, W), np.float32)
    expected_valid[:8, :12] = 1.0
    np.testing.assert_array_equal(valid.numpy(), expected_valid)
    inside = out["hard_mask"].numpy()[:8, :12]
    assert set(np.unique(inside)) == {0, 1}   # both subdomains survive scaling
    np.testing.assert_array_equal(m.numpy()[:8, :12], inside)
    assert not m.numpy()[8:].any() and not m.numpy()[:, 12:].any()


def test_unknown_per_pixel_key_is_refused():
    with pytest.raises(ValueError, match="depth"):
        pipeline.augment({"image": tf.zeros([H, W, 3]), "depth": tf.zeros([H, W])},
                         crop_size=(4, 4))


# ------------------------------------------------------------ decoding


def save_png(path, array, mode=None, palette=None):
    image = Image.fromarray(array, mode) if mode else Image.fromarray(array)
    if palette is not None:
        image.putpalette(palette)
    image.save(path)
    return str(path)


def test_cityscapes_grayscale_labels_through_lut(tmp_path):
    ids = np.array([[7, 8, 26, 0], [33, 255, 6, 24]], np.uint8)
    path = save_png(tmp_path / "l.png", ids)
    out = pipeline.load_label(path, "cityscapes").numpy()
    np.testing.assert_array_equal(out, [[0, 1, 13, 255], [18, 255, 255, 11]])


def test_gta5_palette_labels_through_lut(tmp_path):
    # TF would expand palettes to RGB; the ids are the palette indices.
    # Entries 0..6 share black, like GTA5's palette.
    palette = [0, 0, 0] * 7 + [128, 64, 128, 244, 35, 232]
    palette += [(i * 37) % 256 for i in range(3 * 256 - len(palette))]
    palette[3 * 26:3 * 26 + 3] = [0, 0, 142]
    ids = np.array([[7, 8, 0, 3], [26, 6, 7, 8]], np.uint8)
    path = save_png(tmp_path / "p.png", ids, "P", palette)
    assert open(path, "rb").read()[25] == 3  # Colour type 3: palette.
    out = pipeline.load_label(path, "gta5").numpy()
    np.testing.assert_array_equal(out, [[0, 1, 255, 255], [13, 255, 0, 1]])


def test_palette_colour_shared_by_two_classes_is_read_by_index(tmp_path):
    palette = [0, 0, 0] * 256
    palette[3 * 7:3 * 7 + 3] = [9, 9, 9]
    palette[3 * 8:3 * 8 + 3] = [9, 9, 9]  # road and sidewalk: same colour.
    path = save_png(tmp_path / "p.png", np.array([[7, 8]], np.uint8), "P", palette)
    np.testing.assert_array_equal(pipeline.load_label(path, "gta5").numpy(), [[0, 1]])


def streamed_label(path, label_format):
    """`load_label` inside tf.data, as the training streams call it."""
    dataset = tf.data.Dataset.from_tensors(path).map(
            lambda p: pipeline.load_label(p, label_format))
    return next(iter(dataset)).numpy()


def test_a_bad_label_file_is_named(tmp_path):
    path = save_png(tmp_path / "rgb.png", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=f"{path}: label PNG has mode RGB"):
        streamed_label(path, "gta5")


def test_synthia_16bit_labels_through_lut(tmp_path):
    ids = np.array([[3, 4, 21, 1], [300, 19, 0, 65535]], np.uint16)
    junk = np.full_like(ids, 4000)  # Other channels must be ignored.
    png = tf.io.encode_png(np.stack([ids, junk, junk], -1)).numpy()
    (tmp_path / "s.png").write_bytes(png)
    out = streamed_label(str(tmp_path / "s.png"), "synthia")
    np.testing.assert_array_equal(out, [[0, 1, 3, 10], [255, 15, 255, 255]])


def test_8bit_png_given_as_synthia_is_an_error(tmp_path):
    path = save_png(tmp_path / "eight.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match="16-bit"):
        streamed_label(path, "synthia")


# ------------------------------------------------------------ datasets


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Four 16x24 images (pixel = 10 * index + channel) and label-id PNGs."""
    root = tmp_path_factory.mktemp("files")
    images, label_files = [], []
    for i in range(4):
        image = np.zeros((H, W, 3), np.uint8) + np.array([0, 1, 2], np.uint8)
        image += np.uint8(10 * i)
        images.append(save_png(root / f"img{i}.png", image))
        ids = np.where(np.arange(W)[None, :] % 2 == 0, 7, 26) * np.ones((H, 1))
        label_files.append(save_png(root / f"lab{i}.png", ids.astype(np.uint8)))
    return images, label_files


def batches(dataset, n):
    return [{k: v.numpy() for k, v in b.items()} for b in dataset.take(n)]


def test_source_dataset_same_seed_same_batches(files):
    images, label_files = files
    kwargs = dict(label_format="cityscapes", size=(H, W), crop_size=(8, 12),
                  scale_range=(0.75, 1.5), flip=True, batch_size=2)
    a = batches(pipeline.source_dataset(images, label_files, seed=1, **kwargs), 4)
    b = batches(pipeline.source_dataset(images, label_files, seed=1, **kwargs), 4)
    c = batches(pipeline.source_dataset(images, label_files, seed=2, **kwargs), 4)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["label"], y["label"])
    assert any(not np.array_equal(x["image"], y["image"]) or
               not np.array_equal(x["label"], y["label"]) for x, y in zip(a, c))
    assert a[0]["image"].shape == (2, 8, 12, 3) and a[0]["image"].dtype == np.float32
    assert a[0]["label"].shape == (2, 8, 12) and a[0]["label"].dtype == np.uint8
    assert set(np.unique(np.concatenate([x["label"] for x in a]))) <= {0, 13, 255}


def test_source_dataset_preprocesses_and_keeps_order(files):
    images, label_files = files
    ds = pipeline.source_dataset(images, label_files, "gta5", None, batch_size=1,
                                 shuffle=False, repeat=False)
    out = batches(ds, 10)
    assert len(out) == 4
    for i, b in enumerate(out):
        r, g, bl = 10 * i, 10 * i + 1, 10 * i + 2
        expected = np.array([bl, g, r], np.float32) - np.array(CAFFE_MEAN_BGR, np.float32)
        # No resize: one float32 subtraction of the same float32 mean, as here.
        np.testing.assert_array_equal(b["image"][0, 3, 5], expected)
        np.testing.assert_array_equal(b["label"][0, 0, :4], [0, 13, 0, 13])


def test_shuffled_epochs_are_permutations(files):
    images, _ = files
    ds = pipeline.target_dataset(images, None, batch_size=1, seed=3)
    firsts = [int(round(b["image"][0, 0, 0, 2] + CAFFE_MEAN_BGR[2])) // 10
              for b in batches(ds, 12)]
    for epoch in range(3):
        assert sorted(firsts[4 * epoch:4 * epoch + 4]) == [0, 1, 2, 3]
    assert firsts[:4] != firsts[4:8] or firsts[4:8] != firsts[8:]


def test_target_dataset_drops_the_last_partial_batch(files):
    images, _ = files
    ds = pipeline.target_dataset(images[:3], (8, 12), batch_size=2, shuffle=False,
                                 repeat=False)
    out = batches(ds, 10)
    assert len(out) == 1 and set(out[0]) == {"image"}
    assert out[0]["image"].shape == (2, 8, 12, 3)


def test_bad_arguments_raise_config_error(files):
    images, label_files = files
    with pytest.raises(ConfigError, match="label_format"):
        pipeline.source_dataset(images, label_files, "kitti", (H, W))
    with pytest.raises(ConfigError, match="scale_range"):
        pipeline.target_dataset(images, (H, W), scale_range=(1.5, 0.5))
    with pytest.raises(ConfigError, match="images but"):
        pipeline.source_dataset(images, label_files[:2], "gta5", (H, W))


# ------------------------------------------------------------ pseudo labels


def write_pseudo_records(directory, n=5, num_shards=2):
    """Records whose image encodes (index, row, col); maps encode (row, col)."""
    rows, cols = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    hard = ((rows + cols) % 2).astype(np.uint8)
    examples = []
    for i in range(n):
        image = np.stack([rows * 10, cols * 10, np.full_like(rows, i)], -1)
        pseudo = np.where(hard == 1, 255, rows).astype(np.uint8)
        z = np.where(hard == 1, (cols + 1) / 32.0, 0.0)
        examples.append(tfrecords.encode_example(image.astype(np.uint8), pseudo, hard,
                                                 z, f"img{i}"))
    return R.write_records(str(directory), "pl", examples, num_shards,
                                   {"alpha": 0.85})


def test_pseudo_label_dataset_aligned_and_reproducible(tmp_path):
    index = write_pseudo_records(tmp_path)
    kwargs = dict(size=(H, W), crop_size=(8, 12), scale_range=(0.8, 1.25), flip=True,
                  batch_size=2, seed=4)
    a = batches(pipeline.pseudo_label_dataset(index, **kwargs), 4)
    b = batches(pipeline.pseudo_label_dataset(index, **kwargs), 4)
    for x, y in zip(a, b):
        for key in ("image", "pseudo_label", "hard_mask", "z"):
            np.testing.assert_array_equal(x[key], y[key])
    assert set(a[0]) == {"image", "pseudo_label", "hard_mask", "z"}
    assert a[0]["z"].dtype == np.float32 and a[0]["hard_mask"].dtype == np.uint8
    for x in a:
        hard = x["hard_mask"]
        # Pseudo label 255 exactly on hard pixels; Z zero exactly on easy ones.
        np.testing.assert_array_equal(x["pseudo_label"] == 255, hard == 1)
        np.testing.assert_array_equal(x["z"] > 0, hard == 1)
        # Easy pixels: pseudo label = source row; the image's R channel holds
        # 10 * row, bilinearly sampled within half a pixel of it.
        red = x["image"][..., 2] + CAFFE_MEAN_BGR[2]
        easy = hard == 0
        assert np.abs(red[easy] - 10.0 * x["pseudo_label"][easy]).max() <= 5.0 + 1e-3


def test_pseudo_label_dataset_unshuffled_keeps_write_order(tmp_path):
    index = write_pseudo_records(tmp_path, n=5, num_shards=2)
    ds = pipeline.pseudo_label_dataset(index, batch_size=1, shuffle=False,
                                       repeat=False)
    order = [int(round(b["image"][0, 0, 0, 0] + CAFFE_MEAN_BGR[0]))
             for b in batches(ds, 10)]
    assert order == [0, 1, 2, 3, 4]


def test_pseudo_label_dataset_names_the_bad_record(tmp_path):
    good = tfrecords.encode_example(np.zeros((H, W, 3), np.uint8),
                                    np.zeros((H, W), np.uint8),
                                    np.zeros((H, W), np.uint8),
                                    np.zeros((H, W)), "good")
    png = lambda a: tf.io.encode_png(a[..., None]).numpy()  # noqa: E731
    bad = tfrecords._build_example(  # pylint: disable=protected-access
            tf.io.encode_png(np.zeros((H, W, 3), np.uint8)).numpy(),
            png(np.full((H, W), 40, np.uint8)), png(np.zeros((H, W), np.uint8)),
            png(np.zeros((H, W), np.uint16)), "bad", H, W)
    index = R.write_records(str(tmp_path), "v", [good, good, good, bad], 2, {})
    with pytest.raises(DataError, match=r"v-00001-of-00002.tfrecord: record 1: "
                       "pseudo_label has value 40"):
        pipeline.pseudo_label_dataset(index, batch_size=1)
    # validate=False (records this run wrote, checked by encode_example):
    # the stream itself checks nothing.
    ds = pipeline.pseudo_label_dataset(index, batch_size=1, shuffle=False,
                                       repeat=False, validate=False)
    assert len(batches(ds, 10)) == 4
