"""Tests of tf_pixintra.evaluate: scoring PNGs, scoring a model, the CLI,
and agreement with the official Cityscapes evaluator (cityscapesscripts)."""

import importlib
import json
import math
import os
import re
import subprocess
import sys
import uuid

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tf_pixintra import evaluate
from tf_pixintra import io_utils
from tf_pixintra.data import datasets
from tf_pixintra.data.labels import CITYSCAPES_LUT, CLASS_NAMES, PALETTE
from tf_pixintra.errors import ConfigError, DataError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Two tiny Cityscapes val images (2x4) in two cities, labelIds.
# A: road x4 / car x2 / unlabeled x2.  B: building x4 / road x4.
GT = {
    ("aachen", "aachen_000000_000019"): [[7, 7, 7, 7], [26, 26, 0, 0]],
    ("bochum", "bochum_000000_000313"): [[11, 11, 11, 11], [7, 7, 7, 7]],
}
PRED = {
    # Road: 2 hits, one as sidewalk (8), one as "unlabeled" (0: a miss);
    # car: 1 hit, 1 as road; the two ignored pixels count nowhere.
    "aachen_000000_000019": [[7, 7, 8, 0], [26, 7, 26, 7]],
    "bochum_000000_000313": [[11, 11, 11, 11], [7, 7, 7, 7]],
}
# road TP 6 FN 2 FP 1; sidewalk FP only; building 4/4; car TP 1 FN 1.
EXPECTED_IOU = {"road": 600 / 9, "sidewalk": 0.0, "building": 100.0, "car": 50.0}
EXPECTED_MIOU = (600 / 9 + 0 + 100 + 50) / 4


def write_png(path, array, dtype=np.uint8):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.asarray(array, dtype)).save(path)


def make_cityscapes(root, gt=GT, seed=0):
    """Fake Cityscapes val tree: leftImg8bit images and gtFine labelIds."""
    rng = np.random.default_rng(seed)
    for (city, stem), ids in gt.items():
        ids = np.asarray(ids)
        write_png(os.path.join(root, "gtFine", "val", city, stem + "_gtFine_labelIds.png"),
                  ids)
        image = rng.integers(0, 256, ids.shape + (3,))
        write_png(os.path.join(root, "leftImg8bit", "val", city,
                               stem + "_leftImg8bit.png"), image)


def image_path(root, city, stem):
    return os.path.join(root, "leftImg8bit", "val", city, stem + "_leftImg8bit.png")


@pytest.fixture
def scored_tree(tmp_path):
    root = str(tmp_path / "cityscapes")
    make_cityscapes(root)
    preds = str(tmp_path / "preds")
    # Nested <city>/<stem>.png for A, the flat image name for B.
    write_png(os.path.join(preds, "aachen", "aachen_000000_000019.png"),
              PRED["aachen_000000_000019"])
    write_png(os.path.join(preds, "bochum_000000_000313_leftImg8bit.png"),
              PRED["bochum_000000_000313"])
    return root, preds


def assert_expected(result, classes=19):
    assert result["num_images"] == 2
    assert result["miou"] == pytest.approx(EXPECTED_MIOU)
    assert len(result["iou"]) == classes
    for name, value in result["iou"].items():
        if name in EXPECTED_IOU:
            assert value == pytest.approx(EXPECTED_IOU[name])
        else:
            assert value is None


def test_score_label_id_pngs_by_hand(scored_tree, tmp_path, capsys):
    root, preds = scored_tree
    out = str(tmp_path / "out" / "result.json")
    result = evaluate.cli(["evaluate", "--dataset=cityscapes", f"--root={root}",
                           "--split=val", f"--predictions={preds}", f"--json={out}"])
    assert_expected(result)
    with open(out) as f:
        assert json.load(f) == json.loads(json.dumps(result))
    printed = capsys.readouterr().out
    assert "| Method | road | sidewalk | build." in printed
    assert "| preds | 66.7 | 0.0 | 100.0 | - |" in printed
    for classes in (16, 13):
        result = evaluate.cli(["evaluate", f"--root={root}", f"--predictions={preds}",
                               f"--classes={classes}"])
        assert_expected(result, classes)


def test_score_train_id_pngs(scored_tree, tmp_path):
    root, _ = scored_tree
    preds = str(tmp_path / "train_preds")
    for (city, stem), _ in GT.items():
        train_ids = CITYSCAPES_LUT[np.asarray(PRED[stem])]  # unlabeled -> 255.
        write_png(os.path.join(preds, city, stem + ".png"), train_ids)
    examples = datasets.list_examples("cityscapes", root, "val")
    assert_expected(evaluate.score_predictions(examples, "cityscapes", preds, "trainids"))


def test_missing_or_bad_prediction_is_a_clear_error(scored_tree, tmp_path):
    root, preds = scored_tree
    os.remove(os.path.join(preds, "bochum_000000_000313_leftImg8bit.png"))
    expected = os.path.join(preds, "bochum", "bochum_000000_000313.png")
    with pytest.raises(DataError, match=re.escape(
            f"no prediction for image {image_path(root, 'bochum', 'bochum_000000_000313')}"
            f": expected one PNG named bochum_000000_000313*.png at any depth "
            f"under {preds} (e.g. {expected})")):
        evaluate.cli(["evaluate", f"--root={root}", f"--predictions={preds}"])
    write_png(expected, np.zeros((3, 4)))
    with pytest.raises(DataError, match="4x3 but ground truth .*4x2"):
        evaluate.cli(["evaluate", f"--root={root}", f"--predictions={preds}"])
    write_png(expected, np.zeros((2, 4, 3)))
    with pytest.raises(DataError, match="single-channel"):
        evaluate.cli(["evaluate", f"--root={root}", f"--predictions={preds}"])
    with pytest.raises(ConfigError, match="exactly one"):
        evaluate.cli(["evaluate", f"--root={root}"])
    with pytest.raises(ConfigError, match="need --model"):
        evaluate.cli(["evaluate", f"--root={root}", f"--predictions={preds}",
                      f"--write_color={tmp_path}"])


def test_prediction_files_are_found_like_cityscapesscripts(tmp_path):
    root = str(tmp_path / "cityscapes")
    make_cityscapes(root)
    examples = datasets.list_examples("cityscapes", root, "val")
    preds = tmp_path / "preds"
    a = preds / "x" / "y" / "aachen_000000_000019_pred.png"
    b = preds / "bochum_000000_000313_leftImg8bit.png"
    for path in (a, b, preds / "zurich_000000_000019.png"):  # zurich: no image
        write_png(str(path), np.zeros((2, 4)))
    (preds / "aachen_000000_000019.txt").write_text("not a PNG")
    assert evaluate.find_predictions(str(preds), examples, "cityscapes") == {
            image_path(root, "aachen", "aachen_000000_000019"): str(a),
            image_path(root, "bochum", "bochum_000000_000313"): str(b)}
    second = preds / "aachen" / "aachen_000000_000019.png"
    write_png(str(second), np.zeros((2, 4)))
    with pytest.raises(DataError, match=re.escape(
            f"2 predictions for image "
            f"{image_path(root, 'aachen', 'aachen_000000_000019')}: {second}, "
            f"{a}; expected exactly one")):
        evaluate.find_predictions(str(preds), examples, "cityscapes")
    assert evaluate.prediction_path("/w", image_path(root, "ulm", "ulm_1_2"),
                                    "cityscapes") == "/w/ulm/ulm_1_2.png"

    # GTA5: the stem followed by anything; "10_pred.png" belongs to "10".
    gta = str(tmp_path / "gta5")
    for name in ("1", "10"):
        write_png(os.path.join(gta, "images", name + ".png"), np.zeros((2, 2, 3)))
        write_png(os.path.join(gta, "labels", name + ".png"), [[7, 7], [7, 7]])
    gta_preds = tmp_path / "gta_preds"
    write_png(str(gta_preds / "1.png"), np.zeros((2, 2)))
    write_png(str(gta_preds / "deep" / "10_pred.png"), np.zeros((2, 2)))
    examples = datasets.list_examples("gta5", gta, "all")
    assert evaluate.find_predictions(str(gta_preds), examples, "gta5") == {
            os.path.join(gta, "images", "1.png"): str(gta_preds / "1.png"),
            os.path.join(gta, "images", "10.png"):
                str(gta_preds / "deep" / "10_pred.png")}
    os.remove(gta_preds / "1.png")
    with pytest.raises(DataError, match=re.escape(
            f"no prediction for image {os.path.join(gta, 'images', '1.png')}: "
            f"expected one PNG named 1*.png at any depth under {gta_preds} "
            f"(e.g. {gta_preds / '1.png'})")):
        evaluate.find_predictions(str(gta_preds), examples, "gta5")


def test_images_sharing_a_file_name_are_refused(tmp_path):
    gta = str(tmp_path / "gta5")
    for folder in ("a", "b"):
        write_png(os.path.join(gta, "images", folder, "00001.png"),
                  np.zeros((2, 2, 3)))
        write_png(os.path.join(gta, "labels", folder, "00001.png"),
                  [[7, 7], [7, 7]])
    listed = tmp_path / "list.txt"
    listed.write_text("a/00001.png\nb/00001.png\n")
    examples = datasets.list_examples("gta5", gta, "all", str(listed))
    both = (f"images {os.path.join(gta, 'images', 'a', '00001.png')} and "
            f"{os.path.join(gta, 'images', 'b', '00001.png')} share the "
            "prediction name 00001")
    out = tmp_path / "out"
    with pytest.raises(DataError, match=re.escape(both + ": --write_*")):
        evaluate.evaluate_model(None, examples, "gta5", (8, 8),
                                write_trainids=str(out))
    assert not out.exists()
    write_png(str(tmp_path / "preds" / "00001.png"), np.zeros((2, 2)))
    with pytest.raises(DataError, match=re.escape(both + ": --predictions")):
        evaluate.score_predictions(examples, "gta5", str(tmp_path / "preds"),
                                   "trainids")


def test_gta5_and_synthia_scoring(tmp_path):
    import tensorflow as tf  # Only to write the 16-bit 3-channel SYNTHIA label.

    gta = str(tmp_path / "gta5")
    write_png(os.path.join(gta, "images", "00001.png"), np.zeros((2, 2, 3)))
    write_png(os.path.join(gta, "labels", "00001.png"), [[7, 7], [24, 0]])
    write_png(os.path.join(tmp_path, "gta_preds", "00001.png"), [[0, 1], [11, 11]])
    result = evaluate.cli(["evaluate", "--dataset=gta5", f"--root={gta}", "--split=all",
                           f"--predictions={tmp_path / 'gta_preds'}",
                           "--prediction_format=trainids"])
    # road TP 1 FN 1; sidewalk FP only; person 1/1; the unlabeled pixel ignored.
    assert result["iou"]["road"] == 50.0 and result["iou"]["sidewalk"] == 0.0
    assert result["miou"] == pytest.approx(50.0)

    syn = str(tmp_path / "synthia")
    write_png(os.path.join(syn, "RGB", "0000001.png"), np.zeros((2, 2, 3)))
    label = np.zeros((2, 2, 3), np.uint16)
    label[..., 0] = [[3, 3], [10, 2]]  # road, road, person, building.
    os.makedirs(os.path.join(syn, "GT", "LABELS"))
    with open(os.path.join(syn, "GT", "LABELS", "0000001.png"), "wb") as f:
        f.write(tf.io.encode_png(label).numpy())
    write_png(os.path.join(tmp_path, "syn_preds", "0000001.png"), [[0, 9], [11, 2]])
    args = ["evaluate", "--dataset=synthia", f"--root={syn}", "--split=all",
            f"--predictions={tmp_path / 'syn_preds'}", "--prediction_format=trainids"]
    # road 1/2 (FN: terrain), terrain FP only (not in the 13), person, building 1.
    result = evaluate.cli(args + ["--classes=13"])
    assert result["miou"] == pytest.approx((50 + 100 + 100) / 3)
    assert result["iou"]["road"] == 50.0 and "terrain" not in result["iou"]
    assert evaluate.cli(args)["miou"] == pytest.approx((50 + 0 + 100 + 100) / 4)


def constant_car_model():
    """Stand-in [main, aux] model at output stride 8 that predicts car (13) only."""
    x = keras.Input((None, None, 3))
    heads = []
    for favoured in (13, 0):
        bias = np.zeros(19, np.float32)
        bias[favoured] = 4.0
        heads.append(keras.layers.Conv2D(
                19, 3, strides=8, padding="same", kernel_initializer="zeros",
                bias_initializer=keras.initializers.Constant(bias))(x))
    return keras.Model(x, heads)


def test_model_mode_writes_pngs_and_scores(tmp_path):
    root = str(tmp_path / "cityscapes")
    make_cityscapes(root)
    run = tmp_path / "run"
    (run / "stage1").mkdir(parents=True)
    constant_car_model().save(run / "stage1" / "model.keras")
    (run / "run.json").write_text(json.dumps({"model": "stage1/model.keras",
                                              "eval_size": [16, 32]}))
    assert evaluate.default_size(str(run)) == (16, 32)
    assert evaluate.default_size(str(tmp_path)) == (512, 1024)
    dirs = {kind: str(tmp_path / kind) for kind in ("ids", "train", "color")}
    out = str(tmp_path / "model.json")
    result = evaluate.cli([
            "evaluate", f"--root={root}", f"--model={run}", "--scales=0.9,1.0",
            "--flip", f"--write_labelids={dirs['ids']}",
            f"--write_trainids={dirs['train']}", f"--write_color={dirs['color']}",
            f"--json={out}"])
    # Every pixel is car: car TP 2 / (2 + FP 12); road 0/8; building 0/4.
    assert result["num_images"] == 2
    assert result["iou"]["car"] == pytest.approx(100 * 2 / 14)
    assert result["iou"]["road"] == 0.0 and result["iou"]["building"] == 0.0
    assert result["miou"] == pytest.approx(100 * 2 / 14 / 3)
    with open(out) as f:
        assert json.load(f)["miou"] == pytest.approx(result["miou"])
    for (city, stem) in GT:
        name = os.path.join(city, stem + ".png")
        ids = np.array(Image.open(os.path.join(dirs["ids"], name)))
        train = np.array(Image.open(os.path.join(dirs["train"], name)))
        color = np.array(Image.open(os.path.join(dirs["color"], name)))
        assert ids.shape == (2, 4) and np.all(ids == 26)  # car labelId.
        assert train.shape == (2, 4) and np.all(train == 13)
        assert color.shape == (2, 4, 3) and np.all(color == PALETTE[13])
    leftovers = [f for d in dirs.values() for _, _, fs in os.walk(d) for f in fs
                 if f.endswith(".tmp")]
    assert not leftovers
    # The written label-id PNGs score the same in --predictions mode.
    again = evaluate.cli(["evaluate", f"--root={root}", f"--predictions={dirs['ids']}"])
    assert again == result


def test_model_run_and_outputs_on_a_gfile_url(tmp_path):
    """--model, --write_labelids, --predictions and --json on TF's ram://
    (any tf.io.gfile URL): the run directory of a multi-worker job."""
    root = str(tmp_path / "cityscapes")
    make_cityscapes(root)
    run = f"ram://evaluate-{uuid.uuid4().hex[:8]}/run"
    tf.io.gfile.makedirs(f"{run}/stage1")
    constant_car_model().save(f"{run}/stage1/model.keras")
    io_utils.write_json(f"{run}/run.json", {"model": "stage1/model.keras",
                                           "eval_size": [16, 32]})
    assert evaluate.default_size(run) == (16, 32)
    assert evaluate.default_size(f"{run}/stage1/model.keras") == (16, 32)
    ids, out = f"{run}/ids", f"{run}/model.json"
    result = evaluate.cli(["evaluate", f"--root={root}", f"--model={run}",
                           f"--write_labelids={ids}", f"--json={out}"])
    assert result["iou"]["car"] == pytest.approx(100 * 2 / 14)
    assert io_utils.read_json(out)["miou"] == pytest.approx(result["miou"])
    again = evaluate.cli(["evaluate", f"--root={root}", f"--predictions={ids}"])
    assert again == result


def test_evaluate_model_is_importable_without_flags(tmp_path):
    root = str(tmp_path / "cityscapes")
    make_cityscapes(root)
    examples = datasets.list_examples("cityscapes", root, "val")
    result = evaluate.evaluate_model(constant_car_model(), examples, "cityscapes",
                                     (8, 16), classes=13)
    assert len(result["iou"]) == 13
    assert result["miou"] == pytest.approx(100 * 2 / 14 / 3)


def test_cli_entry_point_runs_as_a_module(scored_tree, tmp_path):
    root, preds = scored_tree
    out = str(tmp_path / "cli.json")
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
            [sys.executable, "-m", "tf_pixintra.evaluate", "--dataset=cityscapes",
             f"--root={root}", "--split=val", f"--predictions={preds}",
             "--prediction_format=labelids", "--classes=19", f"--json={out}"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with open(out) as f:
        assert_expected(json.load(f))
    done = subprocess.run(
            [sys.executable, "-m", "tf_pixintra.evaluate", f"--root={root}",
             f"--predictions={tmp_path / 'nowhere'}"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "nowhere is not a directory" in done.stderr


def test_agrees_with_the_official_cityscapes_evaluator(tmp_path, monkeypatch):
    """Random label-id maps, scored by cityscapesscripts 2.3.0 and by us."""
    rng = np.random.default_rng(7)
    root = str(tmp_path / "cityscapes")
    preds = str(tmp_path / "results")
    all_ids = np.arange(34)
    gt_ids = all_ids[~np.isin(all_ids, [31, 32])]  # train absent; motorcycle FP-only.
    pred_ids = all_ids[all_ids != 31]
    gt = {}
    for i, city in enumerate(("aachen", "bochum", "bochum", "zurich")):
        stem = f"{city}_{i:06d}_{19 + i:06d}"
        labels = rng.choice(gt_ids, size=(24, 40))
        gt[(city, stem)] = labels
        pred = np.where(rng.random(labels.shape) < 0.6, labels,
                        rng.choice(pred_ids, size=labels.shape))
        write_png(os.path.join(preds, city, stem + ".png"), pred)
    make_cityscapes(root, gt)

    examples = datasets.list_examples("cityscapes", root, "val")
    ours = evaluate.score_predictions(examples, "cityscapes", preds, "labelids", 19)

    official, args = _official_evaluator(monkeypatch, root, preds)
    gt_files = sorted(os.path.join(root, "gtFine", "val", city,
                                   stem + "_gtFine_labelIds.png") for city, stem in gt)
    pred_files = [official.getPrediction(args, f) for f in gt_files]
    theirs = official.evaluateImgLists(pred_files, gt_files, args)

    assert math.isnan(theirs["classScores"]["train"]) and ours["iou"]["train"] is None
    assert theirs["classScores"]["motorcycle"] == 0.0
    assert ours["iou"]["motorcycle"] == 0.0
    for name in CLASS_NAMES:
        if ours["iou"][name] is not None:
            assert abs(ours["iou"][name] / 100 - theirs["classScores"][name]) < 1e-6
    assert 0.1 < theirs["averageScoreClasses"] < 0.9
    assert abs(ours["miou"] / 100 - theirs["averageScoreClasses"]) < 1e-6


def _official_evaluator(monkeypatch, root, preds):
    """cityscapesscripts' pixel-level evaluator reading `preds` (it reads the
    environment at import and caches the walk in `args`)."""
    monkeypatch.setenv("CITYSCAPES_DATASET", root)
    monkeypatch.setenv("CITYSCAPES_RESULTS", preds)
    official = importlib.import_module(
            "cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling")
    args = official.args
    monkeypatch.setattr(args, "evalInstLevelScore", False)  # np.in1d: numpy 2.x.
    monkeypatch.setattr(args, "JSONOutput", False)
    monkeypatch.setattr(args, "quiet", True)
    monkeypatch.setattr(args, "predictionPath", None)
    monkeypatch.setattr(args, "predictionWalk", None)
    return official, args


def test_official_evaluator_finds_and_scores_the_same_files(tmp_path,
                                                            monkeypatch):
    """Predictions named <city>_<seq>_<frame>_pred.png in nested folders."""
    rng = np.random.default_rng(11)
    root = str(tmp_path / "cityscapes")
    preds = str(tmp_path / "results")
    ids = np.arange(34)
    gt, ours_expected = {}, {}
    folders = ("", "deep/er", "lindau", "a/b/c")
    for i, city in enumerate(("frankfurt", "frankfurt", "lindau", "munster")):
        stem = f"{city}_{i:06d}_{19 + i:06d}"  # frankfurt_000000_000019, ...
        labels = rng.choice(ids, size=(12, 20))
        gt[(city, stem)] = labels
        pred = np.where(rng.random(labels.shape) < 0.7, labels,
                        rng.choice(ids, size=labels.shape))
        path = os.path.join(preds, folders[i], stem + "_pred.png")
        write_png(path, pred)
        ours_expected[image_path(root, city, stem)] = path
    make_cityscapes(root, gt)
    examples = datasets.list_examples("cityscapes", root, "val")
    assert evaluate.find_predictions(preds, examples, "cityscapes") == (
            ours_expected)
    ours = evaluate.cli(["evaluate", f"--root={root}", f"--predictions={preds}"])

    official, args = _official_evaluator(monkeypatch, root, preds)
    gt_files = sorted(os.path.join(root, "gtFine", "val", city,
                                   stem + "_gtFine_labelIds.png") for city, stem in gt)
    pred_files = [official.getPrediction(args, f) for f in gt_files]
    assert sorted(pred_files) == sorted(ours_expected.values())
    theirs = official.evaluateImgLists(pred_files, gt_files, args)
    # Both are ratios of the same integer pixel counts in float64 (a
    # division, and a mean of <= 19 values): a few ulp apart at most.
    for name in CLASS_NAMES:
        if ours["iou"][name] is None:
            assert math.isnan(theirs["classScores"][name])
        else:
            assert abs(ours["iou"][name] / 100
                       - theirs["classScores"][name]) < 1e-12
    assert 0.1 < theirs["averageScoreClasses"] < 0.9
    assert abs(ours["miou"] / 100 - theirs["averageScoreClasses"]) < 1e-12

    # A second file for one image: both evaluators refuse.
    write_png(os.path.join(preds, "z", "frankfurt_000000_000019_leftImg8bit.png"),
              np.zeros((12, 20)))
    args.predictionWalk = None
    with pytest.raises(SystemExit):
        official.getPrediction(args, gt_files[0])
    with pytest.raises(DataError, match="2 predictions for image .*"
                                        "frankfurt_000000_000019_leftImg8bit"):
        evaluate.cli(["evaluate", f"--root={root}", f"--predictions={preds}"])
