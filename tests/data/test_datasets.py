"""Tests for tf_pixintra.data.datasets: layouts, label decoding, bad input."""

import os
import uuid

import numpy as np
import pytest
from PIL import Image

from tf_pixintra import io_utils
from tf_pixintra.data import checks
from tf_pixintra.data import datasets
from tf_pixintra.data import pipeline
from tf_pixintra.errors import ConfigError, DataError

# Cityscapes / GTA5 labelIds and their trainIds, mapped by hand from the
# Cityscapes table (0, 1, 6, 34 and 255 have no trainId).
CS_IDS = np.array([[7, 8, 11, 0],
                   [33, 26, 255, 34],
                   [24, 1, 23, 6]], dtype=np.uint8)
CS_TRAIN_IDS = np.array([[0, 1, 2, 255],
                         [18, 13, 255, 255],
                         [11, 255, 10, 255]], dtype=np.uint8)

# SYNTHIA class ids (16-bit) and their trainIds, mapped by hand (0, 13, 22,
# 1000 and 65535 have no trainId).
SYNTHIA_IDS = np.array([[3, 4, 2, 0],
                        [11, 21, 1000, 13],
                        [1, 15, 65535, 22]], dtype=np.uint16)
SYNTHIA_TRAIN_IDS = np.array([[0, 1, 2, 255],
                              [18, 3, 255, 255],
                              [10, 6, 255, 255]], dtype=np.uint8)


def _truncate(path, keep=None):
    """Cuts a file to `keep` bytes (default: half of it)."""
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:keep if keep is not None else len(data) // 2])


# --- the three layouts ------------------------------------------------------

def test_gta5_lists_sorted_and_reads_palette_indices(tmp_path, fake_datasets):
    for seed, name in enumerate(["00010", "00002", "00001"]):
        fake_datasets.write_example("gta5", tmp_path, name, CS_IDS, seed=seed)
    # Hidden files (an atomic writer's temporary, a "._" fork) are skipped.
    (tmp_path / "images" / ".00004.png.x1.tmp").write_bytes(b"partial")
    (tmp_path / "images" / "._00005.png").write_bytes(b"fork")
    examples = datasets.list_examples("gta5", tmp_path, "train")
    assert [e.name for e in examples] == ["00001", "00002", "00010"]
    assert examples[0] == datasets.Example(
            image_path=str(tmp_path / "images" / "00001.png"),
            label_path=str(tmp_path / "labels" / "00001.png"), name="00001")
    # The fixture wrote palette PNGs whose colours are not the ids.
    assert Image.open(examples[0].label_path).mode == "P"
    image, label = datasets.read_example(examples[0], "gta5")
    assert image.dtype == np.uint8 and image.shape == (3, 4, 3)
    np.testing.assert_array_equal(
            image, np.asarray(Image.open(examples[0].image_path)))
    assert label.dtype == np.uint8
    np.testing.assert_array_equal(label, CS_TRAIN_IDS)
    assert datasets.list_examples("gta5", tmp_path, "all") == examples


def test_trainid_layout_reads_labels_unmapped(tmp_path, fake_datasets):
    """The export's images/ + labels/ layout: labels hold trainIds already."""
    train_ids = np.array([[0, 13, 18], [255, 7, 4]], np.uint8)
    fake_datasets.write_example("gta5", tmp_path, "a", train_ids)
    (example,) = datasets.list_examples("trainids", tmp_path, "all")
    _, label = datasets.read_example(example, "trainids")
    np.testing.assert_array_equal(label, train_ids)   # gta5 would map 13 -> 4


def test_trainid_layout_takes_jpeg_and_bmp_images(tmp_path):
    """The export's images/ + labels/ layout lists .png, .jpg, .jpeg and
    .bmp images (as the export did before it used this reader), each with
    the trainId PNG of its stem."""
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for stem, ext in (("a", ".jpg"), ("b", ".bmp"), ("c", ".png"),
                      ("d", ".jpeg")):
        Image.new("RGB", (4, 3)).save(tmp_path / "images" / (stem + ext))
        Image.new("L", (4, 3)).save(tmp_path / "labels" / (stem + ".png"))
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    examples = datasets.list_examples("trainids", tmp_path, "all")
    assert [e.name for e in examples] == ["a", "b", "c", "d"]
    assert [os.path.basename(e.label_path) for e in examples] == [
        "a.png", "b.png", "c.png", "d.png"]


def test_synthia_16bit_first_channel(tmp_path, fake_datasets):
    _, label_path, rgb = fake_datasets.write_example(
            "synthia", tmp_path, "0000001", SYNTHIA_IDS)
    with open(label_path, "rb") as f:
        header = f.read(26)
    assert header[24] == 16 and header[25] == 2  # 16-bit RGB, as SYNTHIA
    examples = datasets.list_examples("synthia", tmp_path, "train")
    assert [(e.name, e.label_path) for e in examples] == [
            ("0000001", str(tmp_path / "GT" / "LABELS" / "0000001.png"))]
    raw = datasets.read_label_ids(label_path, "synthia")
    assert raw.dtype == np.uint16
    np.testing.assert_array_equal(raw, SYNTHIA_IDS)
    image, label = datasets.read_example(examples[0], "synthia")
    np.testing.assert_array_equal(image, rgb)
    assert label.dtype == np.uint8
    np.testing.assert_array_equal(label, SYNTHIA_TRAIN_IDS)


def test_cityscapes_splits_cities_and_label_names(tmp_path, fake_datasets):
    fake_datasets.write_dataset("cityscapes", tmp_path, {
            "zurich_000000_000019": CS_IDS,
            "aachen_000001_000019": CS_IDS,
            "aachen_000000_000019": CS_IDS})
    fake_datasets.write_example("cityscapes", tmp_path, "frankfurt_000000_000294",
                                CS_IDS[:2], split="val")
    train = datasets.list_examples("cityscapes", tmp_path, "train")
    assert [e.name for e in train] == ["aachen_000000_000019",
                                       "aachen_000001_000019",
                                       "zurich_000000_000019"]
    assert train[0].image_path == str(
            tmp_path / "leftImg8bit" / "train" / "aachen"
            / "aachen_000000_000019_leftImg8bit.png")
    assert train[0].label_path == str(
            tmp_path / "gtFine" / "train" / "aachen"
            / "aachen_000000_000019_gtFine_labelIds.png")
    _, label = datasets.read_example(train[2], "cityscapes")
    np.testing.assert_array_equal(label, CS_TRAIN_IDS)
    val = datasets.list_examples("cityscapes", tmp_path, "val")
    assert [e.name for e in val] == ["frankfurt_000000_000294"]
    _, label = datasets.read_example(val[0], "cityscapes")
    np.testing.assert_array_equal(label, CS_TRAIN_IDS[:2])


def test_list_files_select_subsets(tmp_path, fake_datasets):
    gta = tmp_path / "gta5"
    for name in ["00001", "00002", "00003"]:
        fake_datasets.write_example("gta5", gta, name, CS_IDS)
    gta_list = tmp_path / "gta5_list.txt"
    gta_list.write_text("00003.png\n\n   00001.png  \n00003.png\n")
    examples = datasets.list_examples("gta5", gta, "train", list_file=gta_list)
    assert [e.name for e in examples] == ["00001", "00003"]
    # With a list file any split name is fine; without one it is not.
    assert datasets.list_examples("gta5", gta, "val", list_file=gta_list) == examples
    with pytest.raises(DataError, match="no split folders"):
        datasets.list_examples("gta5", gta, "val")

    cs = tmp_path / "cityscapes"
    fake_datasets.write_dataset("cityscapes", cs, {
            "aachen_000000_000019": CS_IDS, "bremen_000001_000019": CS_IDS,
            "bremen_000002_000019": CS_IDS})
    cs_list = tmp_path / "cs_list.txt"
    cs_list.write_text("bremen/bremen_000002_000019_leftImg8bit.png\n"
                       "aachen/aachen_000000_000019_leftImg8bit.png\n")
    examples = datasets.list_examples("cityscapes", cs, "train", list_file=cs_list)
    assert [e.name for e in examples] == ["aachen_000000_000019",
                                          "bremen_000002_000019"]
    assert examples[1].label_path == str(
            cs / "gtFine" / "train" / "bremen"
            / "bremen_000002_000019_gtFine_labelIds.png")


def test_list_file_entry_missing(tmp_path, fake_datasets):
    fake_datasets.write_example("gta5", tmp_path, "00001", CS_IDS)
    list_file = tmp_path / "list.txt"
    list_file.write_text("00001.png\n00042.png\n")
    with pytest.raises(DataError) as info:
        datasets.list_examples("gta5", tmp_path, "train", list_file=list_file)
    message = str(info.value)
    assert str(list_file) in message and "line 2" in message
    assert str(tmp_path / "images" / "00042.png") in message
    with pytest.raises(DataError, match="list file does not exist"):
        datasets.list_examples("gta5", tmp_path, "train",
                               list_file=tmp_path / "nope.txt")
    list_file.write_text("\n\n")
    with pytest.raises(DataError, match="no images found"):
        datasets.list_examples("gta5", tmp_path, "train", list_file=list_file)


# --- image decoding -------------------------------------------------------

def test_read_image_converts_grey_palette_and_rgba(tmp_path):
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((2, 3), 9, np.uint8), mode="L").save(grey)
    np.testing.assert_array_equal(datasets.read_image(grey),
                                  np.full((2, 3, 3), 9, np.uint8))
    palette = tmp_path / "palette.png"
    image = Image.fromarray(np.array([[0, 1]], np.uint8), mode="P")
    image.putpalette([10, 20, 30, 40, 50, 60] + [0] * 762)
    image.save(palette)
    np.testing.assert_array_equal(datasets.read_image(palette),
                                  [[[10, 20, 30], [40, 50, 60]]])
    rgba = tmp_path / "rgba.png"
    Image.fromarray(np.array([[[1, 2, 3, 4]]], np.uint8), mode="RGBA").save(rgba)
    np.testing.assert_array_equal(datasets.read_image(rgba), [[[1, 2, 3]]])


def test_corrupt_and_truncated_images(tmp_path, fake_datasets):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"this is not a png file at all")
    with pytest.raises(DataError, match="cannot decode image") as info:
        datasets.read_image(corrupt)
    assert str(corrupt) in str(info.value)

    image_path, _, _ = fake_datasets.write_example(
            "gta5", tmp_path, "00001", np.zeros((64, 64), np.uint8))
    _truncate(image_path)
    example = datasets.list_examples("gta5", tmp_path, "train")[0]
    with pytest.raises(DataError, match="cannot decode image") as info:
        datasets.read_example(example, "gta5")
    assert image_path in str(info.value)

    with pytest.raises(DataError, match="does not exist") as info:
        datasets.read_image(tmp_path / "missing.png")
    assert str(tmp_path / "missing.png") in str(info.value)


# --- label decoding -------------------------------------------------------

def test_label_size_differs_from_image_size(tmp_path, fake_datasets):
    image_path, label_path, _ = fake_datasets.write_example(
            "cityscapes", tmp_path, "aachen_000000_000019", CS_IDS,
            image_size=(5, 7))
    example = datasets.list_examples("cityscapes", tmp_path, "train")[0]
    with pytest.raises(DataError) as info:
        datasets.read_example(example, "cityscapes")
    message = str(info.value)
    assert image_path in message and label_path in message
    assert "4x3" in message and "7x5" in message


def test_synthia_8bit_label_rejected(tmp_path, fake_datasets):
    fake_datasets.write_rgb(str(tmp_path / "RGB" / "0000001.png"), 3, 4)
    label_path = str(tmp_path / "GT" / "LABELS" / "0000001.png")
    fake_datasets.write_label_ids(label_path, CS_IDS)
    example = datasets.list_examples("synthia", tmp_path, "train")[0]
    with pytest.raises(DataError) as info:
        datasets.read_example(example, "synthia")
    message = str(info.value)
    assert label_path in message
    assert "expected a 16-bit PNG" in message and "found 8-bit" in message


def test_synthia_truncated_or_non_png_label(tmp_path, fake_datasets):
    _, label_path, _ = fake_datasets.write_example(
            "synthia", tmp_path, "0000001", np.full((16, 16), 3, np.uint16))
    _truncate(label_path)
    with pytest.raises(DataError, match="cannot decode 16-bit") as info:
        datasets.read_label(label_path, "synthia")
    assert label_path in str(info.value)
    with open(label_path, "wb") as f:
        f.write(b"GIF89a" + b"\0" * 40)
    with pytest.raises(DataError, match="not a PNG") as info:
        datasets.read_label(label_path, "synthia")
    assert label_path in str(info.value)


def test_colour_label_rejected_for_label_id_data_sets(tmp_path, fake_datasets):
    path = str(tmp_path / "labels" / "00001.png")
    fake_datasets.write_rgb(path, 2, 2)
    with pytest.raises(DataError, match="mode RGB") as info:
        datasets.read_label(path, "gta5")
    assert path in str(info.value)


# --- listing errors -------------------------------------------------------

def test_image_without_label(tmp_path, fake_datasets):
    fake_datasets.write_example("synthia", tmp_path, "0000001", SYNTHIA_IDS)
    fake_datasets.write_rgb(str(tmp_path / "RGB" / "0000002.png"), 3, 4)
    with pytest.raises(DataError, match="label file missing") as info:
        datasets.list_examples("synthia", tmp_path, "train")
    message = str(info.value)
    assert str(tmp_path / "RGB" / "0000002.png") in message
    assert str(tmp_path / "GT" / "LABELS" / "0000002.png") in message
    examples = datasets.list_examples("synthia", tmp_path, "train",
                                      require_labels=False)
    assert [(e.name, e.label_path is None) for e in examples] == [
            ("0000001", False), ("0000002", True)]
    image, label = datasets.read_example(examples[1], "synthia")
    assert image.shape == (3, 4, 3) and label is None


def test_empty_and_wrong_roots(tmp_path, fake_datasets):
    missing = tmp_path / "does_not_exist"
    with pytest.raises(DataError, match="does not exist") as info:
        datasets.list_examples("gta5", missing, "train")
    assert str(missing) in str(info.value)

    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(DataError, match="not a directory") as info:
        datasets.list_examples("cityscapes", a_file, "train")
    assert str(a_file) in str(info.value)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="GTA5 layout") as info:
        datasets.list_examples("gta5", empty, "train")
    assert str(empty / "images") in str(info.value)

    # A Cityscapes root handed to the SYNTHIA reader.
    cs = tmp_path / "cityscapes"
    fake_datasets.write_example("cityscapes", cs, "aachen_000000_000019", CS_IDS)
    with pytest.raises(DataError, match="SYNTHIA-RAND-CITYSCAPES layout") as info:
        datasets.list_examples("synthia", cs, "train")
    assert str(cs / "RGB") in str(info.value)
    # A missing Cityscapes split names the splits that exist.
    with pytest.raises(DataError, match="no split 'vall'.*found: train") as info:
        datasets.list_examples("cityscapes", cs, "vall")
    assert str(cs / "leftImg8bit" / "vall") in str(info.value)

    # Folders present but no labels folder, then no images at all.
    (empty / "images").mkdir()
    with pytest.raises(DataError, match="missing label folder") as info:
        datasets.list_examples("gta5", empty, "train")
    assert str(empty / "labels") in str(info.value)
    (empty / "labels").mkdir()
    with pytest.raises(DataError, match="no images found") as info:
        datasets.list_examples("gta5", empty, "train")
    assert str(empty / "images") in str(info.value)


def test_unknown_dataset(tmp_path):
    with pytest.raises(ConfigError,
                       match="dataset='kitti': expected one of gta5, synthia, cityscapes"):
        datasets.list_examples("kitti", tmp_path, "train")


def test_data_sets_on_a_gfile_url_read_as_local_ones(tmp_path, fake_datasets, monkeypatch):
    """GTA5 and Cityscapes copied to TF's in-memory ram:// file system (a
    stand-in for gs:// and the other tf.io.gfile URLs): the same examples, a
    list file there, the same arrays from the readers and the training
    stream, the up-front check and its fingerprint; a missing root or label
    is the same DataError."""
    for name in ("00001", "00002"):
        fake_datasets.write_example("gta5", tmp_path / "gta5", name, CS_IDS)
    for name, split in (("aachen_000000_000019", "train"), ("zurich_000001_000019", "val")):
        fake_datasets.write_example("cityscapes", tmp_path / "cs", name, CS_IDS, split=split)
    url = f"ram://data-{uuid.uuid4().hex[:8]}"
    io_utils.copy_tree(str(tmp_path), url)
    io_utils.write_text(f"{url}/gta5_list.txt", "00002.png\n")

    for dataset, root, split in (("gta5", "gta5", "all"), ("cityscapes", "cs", "train"),
                                 ("cityscapes", "cs", "val")):
        local = datasets.list_examples(dataset, tmp_path / root, split)
        remote = datasets.list_examples(dataset, f"{url}/{root}", split)
        assert [e.name for e in remote] == [e.name for e in local]
        assert remote[0].image_path.startswith(f"{url}/{root}/")
        for a, b in zip(local, remote):
            for x, y in zip(datasets.read_example(a, dataset), datasets.read_example(b, dataset)):
                np.testing.assert_array_equal(x, y)
        def check(examples, record=None):
            return checks.check_lists(
                [checks.ListToCheck(split, dataset, tuple(examples), True)], record)
        record = f"{url}/check-{root}-{split}.json"
        local_warnings, remote_warnings = check(local), check(remote, record)
        assert [w.replace(url, str(tmp_path)) for w in remote_warnings] == local_warnings
        with monkeypatch.context() as m:   # unchanged files: the record, no decoding
            m.setattr(checks, "check_list", None)
            assert check(remote, record) == remote_warnings
    listed = datasets.list_examples("gta5", f"{url}/gta5", "all",
                                    list_file=f"{url}/gta5_list.txt")
    assert [e.name for e in listed] == ["00002"]

    def first_batch(examples):
        stream = pipeline.source_dataset([e.image_path for e in examples],
                                         [e.label_path for e in examples], "gta5", (3, 4),
                                         batch_size=2, shuffle=False, repeat=False)
        return next(iter(stream))
    local, remote = (first_batch(datasets.list_examples("gta5", root, "all"))
                     for root in (tmp_path / "gta5", f"{url}/gta5"))
    for key in ("image", "label"):
        np.testing.assert_array_equal(local[key].numpy(), remote[key].numpy())

    with pytest.raises(DataError, match="data set root does not exist"):
        datasets.list_examples("gta5", f"{url}/nothing", "all")
    io_utils.remove(f"{url}/gta5/labels/00001.png")
    with pytest.raises(DataError, match="00001.png: label file missing"):
        datasets.list_examples("gta5", f"{url}/gta5", "all")
