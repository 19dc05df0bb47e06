"""Bad data is refused before training, by name (issue 17, item 2).

Library-level: the up-front checks of a run's lists (`sources.check`,
`data/checks.py`), the one image reader, and paths that must stay inside
their root or run directory. One CLI case checks the user-visible contract:
one line, exit status 2, no traceback, nothing written.
"""

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tf_pixintra import evaluate
from tf_pixintra import export
from tf_pixintra import inference
from tf_pixintra import run_layout
from tf_pixintra.data import checks
from tf_pixintra.data import datasets
from tf_pixintra.data import pipeline
from tf_pixintra.data import tfrecords
from tf_pixintra.errors import ConfigError, DataError
from tf_pixintra.stages import sources

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROAD, CAR = 7, 26   # Cityscapes / GTA5 label ids with a class


def gta5(root, fake, names=("00001", "00002"), ids=ROAD, label_size=None):
    """A tiny GTA5-layout source set of 16x32 images; returns its examples."""
    for seed, name in enumerate(names):
        image_path, label_path, _ = fake.write_example(
            "gta5", root, name, np.full((16, 32), ids, np.uint8), seed=seed)
        if label_size is not None and name == names[-1]:
            fake.write_label_ids(label_path, np.full(label_size, ids, np.uint8),
                                 palette=True)
    return tuple(datasets.list_examples("gta5", root, "train"))


def source_list(examples):
    return sources.Sources("gta5", examples, (), ())


def test_zero_byte_and_truncated_images_are_refused_up_front(tmp_path, fake_datasets):
    examples = gta5(tmp_path, fake_datasets)
    with open(examples[1].image_path, "wb"):
        pass                                       # zero bytes
    with pytest.raises(DataError, match="empty file, 0 bytes") as info:
        sources.check(source_list(examples), workers=2)
    assert str(info.value).startswith(examples[1].image_path + ":")

    data = open(examples[0].image_path, "rb").read()
    with open(examples[0].image_path, "wb") as f:
        f.write(data[:len(data) // 2])             # truncated
    with pytest.raises(DataError, match="cannot decode image") as info:
        sources.check(source_list(examples[:1]), workers=1)
    assert examples[0].image_path in str(info.value)
    assert f"{len(data) // 2} bytes" in str(info.value)


def test_label_of_another_size_is_refused_for_source_and_validation(
        tmp_path, fake_datasets):
    examples = gta5(tmp_path / "gta5", fake_datasets, label_size=(8, 16))
    with pytest.raises(DataError, match=r"label size 16x8 \(WxH\) differs from "
                       r"the size 32x16") as info:
        sources.check(source_list(examples), workers=2)
    assert str(info.value).startswith(examples[-1].label_path + ":")

    # A validation label of another size: refused up front and by evaluation.
    image_path, label_path, _ = fake_datasets.write_example(
        "cityscapes", tmp_path / "cs", "aachen_000000_000001",
        np.full((8, 16), ROAD, np.uint8), split="val", image_size=(16, 32))
    val = tuple(datasets.list_examples("cityscapes", tmp_path / "cs", "val"))
    with pytest.raises(DataError, match="differs from the size") as info:
        sources.check(sources.Sources("gta5", (), (), val), workers=1)
    assert label_path in str(info.value)
    with pytest.raises(DataError, match="differs from the size") as info:
        evaluate.evaluate_model(None, list(val), "cityscapes", size=(16, 32))
    assert label_path in str(info.value)


def test_label_values_without_a_label_id_warn_per_file_and_value(
        tmp_path, fake_datasets, caplog):
    examples = gta5(tmp_path, fake_datasets)
    ids = np.full((16, 32), ROAD, np.uint8)
    ids[:2, :3] = 250
    ids[5, 5] = 99
    fake_datasets.write_label_ids(examples[1].label_path, ids, palette=True)
    with caplog.at_level(logging.WARNING):
        lines = sources.check(source_list(examples), workers=2)
    assert lines == [f"{examples[1].label_path}: label values 99 (1 px), 250 "
                     "(6 px) are no gta5 label id; read as ignore (255)"]
    assert lines[0] in caplog.text


def test_labels_without_one_labelled_pixel_stop_the_run(tmp_path, fake_datasets):
    examples = gta5(tmp_path, fake_datasets, ids=250)
    with pytest.raises(DataError, match=r"no pixel of the 2 source label files "
                       r"has a class \(values 250\).*loss_seg 0") as info:
        sources.check(source_list(examples), workers=2)
    assert str(info.value).startswith(examples[0].label_path + ":")
    # Ids of void classes only (0: unlabeled) are known, but still no class.
    examples = gta5(tmp_path / "void", fake_datasets, ids=0)
    with pytest.raises(DataError, match="only ids without a class"):
        sources.check(source_list(examples), workers=1)


def test_16_bit_grey_images_read_the_same_on_every_path(tmp_path):
    values = (np.arange(16 * 32, dtype=np.uint32).reshape(16, 32) * 127).astype(np.uint16)
    path = str(tmp_path / "grey16.png")
    with open(path, "wb") as f:
        f.write(tf.io.encode_png(values[..., None]).numpy())
    expected = np.repeat((values >> 8).astype(np.uint8)[..., None], 3, axis=-1)
    np.testing.assert_array_equal(datasets.read_image(path), expected)
    np.testing.assert_array_equal(export.read_bounded_image(path), expected)
    # The training stream reads the same pixels (datasets.decode_image).
    streamed = next(iter(pipeline.target_dataset([path], None, shuffle=False,
                                                 repeat=False)))["image"][0]
    bgr_mean = np.array([104.00698793, 116.66876762, 122.67891434], np.float32)
    np.testing.assert_allclose(streamed.numpy() + bgr_mean,
                               expected[..., ::-1].astype(np.float32), atol=1e-4)
    assert expected.mean() < 128   # not read as all white (255)


def test_list_entries_outside_the_root_are_refused(tmp_path, fake_datasets):
    root = tmp_path / "a" / "b" / "gta5"
    gta5(root, fake_datasets)
    outside = tmp_path / "a" / "outside" / "x.png"
    fake_datasets.write_rgb(str(outside), 4, 4)
    entry = "../../../outside/x.png"
    assert os.path.isfile(os.path.join(root, "images", entry))
    list_file = tmp_path / "list.txt"
    list_file.write_text("00001.png\n" + entry + "\n")
    with pytest.raises(DataError, match="leaves the image folder") as info:
        datasets.list_examples("gta5", root, "train", list_file=str(list_file))
    assert entry in str(info.value) and str(list_file) in str(info.value)


def test_index_and_run_json_paths_stay_inside_their_run_dir(tmp_path):
    stage = tmp_path / "run" / "pseudo_r1"
    stage.mkdir(parents=True)
    (tmp_path / "run" / "x.tfrecord").write_bytes(b"")
    index = stage / run_layout.index_name("target")
    index.write_text(json.dumps({"name": "target", "num_shards": 1, "total": 0,
                                 "shards": [{"file": "../x.tfrecord"}]}))
    with pytest.raises(DataError, match="leaves") as info:
        tfrecords.read_index(str(index))
    assert str(index) in str(info.value) and "../x.tfrecord" in str(info.value)

    run_dir = tmp_path / "run"
    (tmp_path / "evil.keras").write_bytes(b"")
    for model in ("../evil.keras", str(tmp_path / "evil.keras")):
        (run_dir / "run.json").write_text(json.dumps({"model": model}))
        with pytest.raises(ConfigError, match="leaves") as info:
            inference.resolve_model_path(str(run_dir))
        assert str(run_dir / "run.json") in str(info.value)


def test_lists_that_passed_are_not_decoded_again(tmp_path, fake_datasets, monkeypatch):
    examples = gta5(tmp_path / "gta5", fake_datasets)
    record = str(tmp_path / "run" / sources.CHECK_RECORD)
    sources.check(source_list(examples), str(tmp_path / "run"), workers=1)
    assert os.path.isfile(record)
    decoded = []
    real = checks.check_list
    monkeypatch.setattr(checks, "check_list",
                        lambda entry, workers=None: decoded.append(entry.name)
                        or real(entry, workers))
    sources.check(source_list(examples), str(tmp_path / "run"), workers=1)
    assert decoded == []
    os.utime(examples[0].label_path, ns=(0, 0))   # a changed file: checked again
    sources.check(source_list(examples), str(tmp_path / "run"), workers=1)
    assert decoded == ["source"]


@pytest.mark.e2e
def test_cli_refuses_an_empty_image_with_one_line_and_writes_nothing(
        tmp_path, fake_datasets):
    src, tgt = tmp_path / "gta5", tmp_path / "cs"
    gta5(src, fake_datasets)
    fake_datasets.write_example("cityscapes", tgt, "aachen_000000_000001",
                                np.full((16, 32), ROAD, np.uint8))
    with open(src / "images" / "00002.png", "wb"):
        pass
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "tf_pixintra.train", "--flagfile",
         os.path.join(ROOT, "configs", "toyscapes_smoke.cfg"), "--notoyscapes",
         "--source_dataset=gta5", f"--source_root={src}", f"--target_root={tgt}",
         f"--run_dir={run_dir}", "--stage=inter", "--inter_steps=1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
    assert errors == [f"error: {src / 'images' / '00002.png'}: cannot decode image "
                      "(empty file, 0 bytes); expected a complete, readable "
                      "image file"]
    assert "Traceback" not in result.stderr
    written = [os.path.join(d, f) for d, _, files in os.walk(run_dir) for f in files]
    assert [os.path.basename(p) for p in written] in ([], [".lock"])
