"""Tests of the ToyScapes benchmark generator (tf_pixintra.data.toyscapes).

The generated files are read back with the project's own readers
(tf_pixintra.data.datasets), as training will read them.
"""

import math
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import tolerances as T
from tf_pixintra import io_utils
from tf_pixintra.data import datasets
from tf_pixintra.data import toyscapes
from tf_pixintra.data import toyscapes_render as render
from tf_pixintra.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
H, W = 64, 128
SEED = 3
COUNTS = {"num_source": 6, "num_target": 6, "num_val": 3}

SOURCE_NAMES = ["00001", "00002", "00003", "00004", "00005", "00006"]
TRAIN_NAMES = ["toyburg_000000_000019", "pixelstadt_000000_000019",
               "voxelheim_000000_000019", "toyburg_000001_000019",
               "pixelstadt_000001_000019", "voxelheim_000001_000019"]
VAL_NAMES = ["rendermund_000000_000019", "shaderlingen_000000_000019",
             "rendermund_000001_000019"]
# Cityscapes labelIds of the 13 classes ToyScapes draws.
DRAWN_LABEL_IDS = {7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 26}


def _tree(root):
    """{relative path: bytes} of every file under `root` but the lock file."""
    files = {}
    for folder, _, names in os.walk(root):
        for name in names:
            if name == toyscapes.LOCK_NAME:
                continue
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, root)] = f.read()
    return files


def _expected_files():
    """Hand-written relative paths of the benchmark made with COUNTS."""
    files = {"toyscapes.json", ".toyscapes"}
    for name in SOURCE_NAMES:
        files.add(f"gta5/images/{name}.png")
        files.add(f"gta5/labels/{name}.png")
    for split, names in (("train", TRAIN_NAMES), ("val", VAL_NAMES)):
        for name in names:
            city = name.split("_")[0]
            files.add(f"cityscapes/leftImg8bit/{split}/{city}/"
                      f"{name}_leftImg8bit.png")
            files.add(f"cityscapes/gtFine/{split}/{city}/"
                      f"{name}_gtFine_labelIds.png")
    return files


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """A tiny benchmark: (root, manifest, {relative path: bytes})."""
    root = str(tmp_path_factory.mktemp("toyscapes"))
    manifest = toyscapes.generate(root, SEED, height=H, width=W, workers=1,
                                  **COUNTS)
    return root, manifest, _tree(root)


def _read_split(root, dataset, split):
    """[(name, RGB, trainIds)] of a split, through the project's readers."""
    sub = "gta5" if dataset == "gta5" else "cityscapes"
    out = []
    for example in datasets.list_examples(dataset, os.path.join(root, sub),
                                          split):
        image, label = datasets.read_example(example, dataset)
        out.append((example.name, image, label))
    return out


def test_layout_and_names_are_exactly_the_real_ones(bench):
    root, manifest, files = bench
    assert set(files) == _expected_files()
    assert [n for n, _, _ in _read_split(root, "gta5", "all")] == SOURCE_NAMES
    assert ([n for n, _, _ in _read_split(root, "cityscapes", "train")]
            == sorted(TRAIN_NAMES))
    assert ([n for n, _, _ in _read_split(root, "cityscapes", "val")]
            == sorted(VAL_NAMES))
    for relative in files:
        if not relative.endswith(".png"):
            continue
        with Image.open(os.path.join(root, relative)) as image:
            is_label = "/labels/" in relative or "gtFine" in relative
            assert image.mode == ("L" if is_label else "RGB"), relative
            assert image.size == (W, H), relative
    assert manifest["version"] == toyscapes.GENERATOR_VERSION
    assert {k: manifest[k] for k in ("seed", "height", "width", *COUNTS)} == {
            "seed": SEED, "height": H, "width": W, **COUNTS}
    assert [e["name"] for e in manifest["target_images"]["train"]] == TRAIN_NAMES
    assert [e["name"] for e in manifest["target_images"]["val"]] == VAL_NAMES


def test_labels_hold_many_classes_including_thin_and_small_ones(bench):
    root, _, files = bench
    seen = set()
    for dataset, split in (("gta5", "all"), ("cityscapes", "train"),
                           ("cityscapes", "val")):
        for _, image, label in _read_split(root, dataset, split):
            assert image.shape == (H, W, 3) and label.shape == (H, W)
            assert not (label == 255).any()  # every pixel has a class
            seen |= set(np.unique(label).tolist())
    assert len(seen) >= 8, seen
    assert 5 in seen  # pole
    assert 11 in seen  # person
    assert {6, 7} & seen  # traffic light or sign
    raw_ids = set()
    for relative, data in files.items():
        if "/labels/" in relative or "gtFine" in relative:
            with Image.open(os.path.join(root, relative)) as image:
                raw_ids |= set(np.unique(np.asarray(image)).tolist())
    assert raw_ids <= DRAWN_LABEL_IDS


def test_same_seed_same_bytes_independent_of_counts_and_workers(
        bench, tmp_path):
    root, _, files = bench
    again = tmp_path / "again"
    toyscapes.generate(again, SEED, height=H, width=W, workers=1, **COUNTS)
    assert _tree(again) == files  # every byte, the manifest too

    fewer = tmp_path / "fewer"
    toyscapes.generate(fewer, SEED, 3, 3, 1, H, W, workers=2)
    fewer_files = _tree(fewer)
    images = [k for k in fewer_files if k.endswith(".png")]
    assert len(images) == 2 * (3 + 3 + 1)
    for relative in images:
        assert fewer_files[relative] == files[relative], relative

    other = tmp_path / "other"
    toyscapes.generate(other, SEED + 1, 1, 1, 1, H, W, workers=1)
    other_files = _tree(other)
    for relative in other_files:
        if relative.endswith(".png"):
            assert other_files[relative] != files[relative], relative


def test_target_colours_differ_from_source_but_stay_distinguishable(bench):
    root, _, _ = bench
    source = _read_split(root, "gta5", "all")
    target = _read_split(root, "cityscapes", "train")

    def class_means(examples):
        pixels = {}
        for _, image, label in examples:
            for k in (0, 2, 8, 10):  # road, building, vegetation, sky
                pixels.setdefault(k, []).append(image[label == k])
        return {k: np.concatenate(v).astype(np.float64).mean(0)
                for k, v in pixels.items()}

    src, tgt = class_means(source), class_means(target)
    for k in src:
        assert np.linalg.norm(src[k] - tgt[k]) > 20, k
    # Whole-image statistics differ too: the target is flatter (lower
    # contrast) and carries noise and haze.
    src_std = np.mean([img.std() for _, img, _ in source])
    tgt_std = np.mean([img.std() for _, img, _ in target])
    assert tgt_std < 0.8 * src_std
    # The target palette keeps every pair of classes apart.
    colours = np.array(list(render.TARGET_PALETTE[0].values()))
    gaps = np.linalg.norm(colours[:, None] - colours[None], axis=-1)
    assert gaps[~np.eye(len(colours), dtype=bool)].min() > 30


def test_haze_density_varies_across_target_images(bench):
    _, manifest, _ = bench
    entries = (manifest["target_images"]["train"]
               + manifest["target_images"]["val"])
    betas = [e["beta"] for e in entries]
    low, high = render.BETA_RANGE
    assert all(low <= b <= high for b in betas)
    assert len(set(betas)) == len(betas)
    assert max(betas) / min(betas) > 3


def test_haze_follows_koschmieder():
    radiance = np.full((1, 3, 3), 200.0, np.float32)
    depth = np.array([[0.0, 10.0, 1000.0]], np.float32)
    hazed = render.haze(radiance, depth, 0.1, (100.0, 100.0, 100.0))
    # 200 e^-1 + 100 (1 - e^-1) = 100 + 100 / e. float32: t = e^(-beta d)
    # is within (2 + TRANSCENDENTAL_ULPS) u relative (beta's rounding, the
    # product, exp); J t + A (1 - t) then adds 4 roundings of values <= 200,
    # and the error of t costs at most (|J| + |A|) = 300 times it.
    tol = (300.0 * (2 + T.TRANSCENDENTAL_ULPS) + 4 * 200.0) * T.U
    np.testing.assert_allclose(hazed[0, :, 0],
                               [200.0, 100.0 + 100.0 / math.e, 100.0],
                               rtol=0, atol=tol)


def _boundary_contrast(image, label, r0, r1):
    """Mean colour step across class boundaries (2 px apart) in rows r0:r1."""
    image = image.astype(np.float32)
    step = np.abs(image[r0:r1, :-2] - image[r0:r1, 2:]).sum(-1)
    boundary = label[r0:r1, :-2] != label[r0:r1, 2:]
    return step[boundary].mean()


def _far_near_ratio(image, label):
    """Boundary contrast near the horizon / in the lower half of the ground."""
    horizon = np.nonzero((label == 0).any(axis=1))[0].min()  # first road row
    far = _boundary_contrast(image, label, horizon - 3, horizon + 3)
    near = _boundary_contrast(image, label, (horizon + H) // 2, H)
    return far / near


def test_far_pixels_are_harder_than_near_ones_in_hazy_target_images(bench):
    root, manifest, _ = bench
    betas = {e["name"]: e["beta"] for split in ("train", "val")
             for e in manifest["target_images"][split]}
    target = (_read_split(root, "cityscapes", "train")
              + _read_split(root, "cityscapes", "val"))
    name, image, label = max(target, key=lambda t: betas[t[0]])
    assert _far_near_ratio(image, label) < 0.6, name
    # The clean source has no such fall-off.
    source_ratios = [_far_near_ratio(image, label)
                     for _, image, label in _read_split(root, "gta5", "all")]
    assert np.median(source_ratios) > 0.8


def test_perspective_shrinks_objects_and_narrows_the_road():
    camera = render.Camera(height=100, width=200, focal=160.0, horizon=40.0,
                           vanish_x=100.0)
    person_height = np.random.default_rng(0).uniform(1.55, 1.95)
    rows = {}
    for depth in (10.0, 20.0):
        canvas = render.Canvas(camera, render.SOURCE_PALETTE)
        render.draw_person(canvas, np.random.default_rng(0), 0.0, depth)
        rows[depth] = np.nonzero((canvas.label == render.PERSON).any(axis=1))[0]
    # Feet on the ground: row 40 + 1.5 * 160 / z (exclusive).
    assert rows[10.0].max() == 63 and rows[20.0].max() == 51
    assert abs(len(rows[10.0]) - person_height * 16) <= 1
    assert abs(len(rows[20.0]) - person_height * 8) <= 1

    # A 10 cm pole 80 m away is 0.2 px wide: still one column.
    canvas = render.Canvas(camera, render.SOURCE_PALETTE)
    render.draw_rect(canvas, (-0.05, 0.05), (0.0, 6.0), 80.0, render.POLE,
                     (1, 2, 3))
    assert (canvas.label == render.POLE).any(axis=0).sum() == 1

    # Road 6 m wide: 2 * 3 * (y - 40) / 1.5 px at pixel-centre row y.
    canvas = render.Canvas(camera, render.SOURCE_PALETTE)
    street = render.Street(road_left=3.0, road_right=3.0, walk_left=2.0,
                           walk_right=2.0, lane=50.0, end=100.0)
    render.draw_ground(canvas, street)
    assert (canvas.label[70] == render.ROAD).sum() == 122  # half width 61
    assert (canvas.label[50] == render.ROAD).sum() == 42   # half width 21
    assert (canvas.label[:40] == render.SKY).all()


def test_ensure_reuses_and_regenerates(tmp_path, monkeypatch):
    root = tmp_path / "bench"
    args = {"seed": 1, "num_source": 2, "num_target": 2, "num_val": 1,
            "height": 32, "width": 64, "workers": 1}
    paths = toyscapes.ensure_toyscapes(root, **args)
    assert paths == {"root": str(root), "manifest": str(root / "toyscapes.json"),
                     "gta5": str(root / "gta5"),
                     "cityscapes": str(root / "cityscapes")}
    first = _tree(root)
    stats = {p: os.stat(root / p).st_mtime_ns for p in first}

    def fail(*unused_args, **unused_kwargs):
        raise AssertionError("generate() called for a complete benchmark")

    with monkeypatch.context() as m:
        m.setattr(toyscapes, "generate", fail)
        assert toyscapes.ensure_toyscapes(root, **args) == paths
    assert {p: os.stat(root / p).st_mtime_ns for p in first} == stats

    # A killed run: no manifest, a half-written image. Regenerated whole.
    os.remove(root / "toyscapes.json")
    with open(root / "gta5" / "images" / "00001.png", "wb") as f:
        f.write(b"\x89PNG junk")
    toyscapes.ensure_toyscapes(root, **args)
    assert _tree(root) == first

    # Other arguments: regenerated, and no stale file of the old run stays.
    toyscapes.ensure_toyscapes(root, **{**args, "num_source": 1})
    assert os.listdir(root / "gta5" / "images") == ["00001.png"]
    manifest = io_utils.read_json(root / "toyscapes.json")
    assert manifest["num_source"] == 1


def test_never_deletes_folders_it_did_not_write(tmp_path):
    foreign = tmp_path / "gta5" / "images" / "mine.png"
    foreign.parent.mkdir(parents=True)
    foreign.write_bytes(b"user data")
    with pytest.raises(ConfigError, match="not written by ToyScapes"):
        toyscapes.ensure_toyscapes(tmp_path, 0, 1, 1, 1, 32, 64, workers=1)
    assert foreign.read_bytes() == b"user data"


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(ConfigError, match="height=8"):
        toyscapes.generate(tmp_path, 0, 1, 1, 1, 8, 64)
    with pytest.raises(ConfigError, match="seed=-1"):
        toyscapes.generate(tmp_path, -1, 1, 1, 1, 32, 64)
    assert not os.listdir(tmp_path)


def test_cli_writes_what_generate_writes(tmp_path):
    out = tmp_path / "cli"
    env = dict(os.environ, PYTHONPATH=REPO)
    result = subprocess.run(
            [sys.executable, "-m", "tf_pixintra.data.toyscapes",
             f"--out={out}", "--seed=2", "--num_source=1", "--num_target=1",
             "--num_val=1", "--height=32", "--width=64", "--workers=1"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
            check=False)
    assert result.returncode == 0, result.stderr
    assert str(out / "cityscapes") in result.stdout
    reference = tmp_path / "api"
    toyscapes.generate(reference, 2, 1, 1, 1, 32, 64, workers=1)
    assert _tree(out) == _tree(reference)


# ------------------------------------------------ "shadows" variant (control)
def _draw(variant, index=3, seed=5, split="train"):
    return toyscapes.draw_target(seed, split, index, 48, 96, variant)


def test_shadows_variant_is_deterministic_with_standard_labels():
    image, label, conditions = _draw("shadows")
    again = _draw("shadows")
    np.testing.assert_array_equal(image, again[0])
    assert conditions == again[2]
    std_image, std_label, std_conditions = _draw("standard")
    np.testing.assert_array_equal(label, std_label)     # same scene, classes
    assert {k: v for k, v in conditions.items()
            if not k.startswith("shadow")} == std_conditions
    other = toyscapes.draw_target(6, "train", 3, 48, 96, "shadows")[0]
    assert not np.array_equal(image, other)              # the seed matters


def test_shadows_darken_and_tint_part_of_the_non_sky_pixels():
    image, label, conditions = _draw("shadows")
    std_image = _draw("standard")[0]
    assert 0.05 < conditions["shadow_fraction"] < 0.8
    diff = image.astype(np.float64) - std_image.astype(np.float64)
    shadow = np.mean(diff, axis=-1) < -10.0
    assert 0.05 < np.mean(shadow) < 0.8
    # No shadow on the sky, except where the lens blur (sigma <= 1.1 px,
    # 3-sigma radius 4) spreads a shadow across the sky's border.
    near_ground = label != render.SKY
    for _ in range(4):
        near_ground = (near_ground | np.roll(near_ground, 1, 0)
                       | np.roll(near_ground, -1, 0) | np.roll(near_ground, 1, 1)
                       | np.roll(near_ground, -1, 1))
    assert not shadow[~near_ground].any()
    # Darker and bluer: red and green lose more than blue.
    loss = -diff[shadow].mean(axis=0)
    assert loss[0] > loss[2] and loss[1] > loss[2] > 0
    # Elsewhere the noise and texture are the same draws: what is left is
    # the blobs' soft edges, a few levels at most on average.
    assert np.abs(diff[~shadow]).mean() < 3.0


def test_variants_are_kept_in_their_own_directories(tmp_path):
    args = {"seed": 1, "num_source": 1, "num_target": 1, "num_val": 1,
            "height": 32, "width": 64, "workers": 1}
    std = toyscapes.ensure_toyscapes(tmp_path / "toy", **args)
    ctl = toyscapes.ensure_toyscapes(tmp_path / "toy", variant="shadows", **args)
    assert ctl["root"] == str(tmp_path / "toy_shadows")
    assert io_utils.read_json(ctl["manifest"])["variant"] == "shadows"
    assert io_utils.read_json(std["manifest"])["variant"] == "standard"
    with pytest.raises(ConfigError, match="variant=.fog.: expected one of"):
        toyscapes.ensure_toyscapes(tmp_path / "toy", variant="fog", **args)
