"""The pseudo stage (Sec 4.1): records, summary, sharding, resume, selectors.

A tiny DeepLab-v2 (ResNet-18, width 0.125, random weights) labels six
ToyScapes target images (48x96, resized to 32x64). The expected pseudo
labels, masks and Z maps are recomputed here from the model, with the
fusion rule written out again (softmax of the main head, float16 cache,
bilinear upsampling to the training size) and numpy/subdomains calls, and
compared with what the stage wrote.
"""

import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_pixintra import config as config_lib
from tf_pixintra import io_utils
from tf_pixintra import models
from tf_pixintra import subdomains
from tf_pixintra.data import datasets
from tf_pixintra.data import tfrecords
from tf_pixintra.data import toyscapes
from tf_pixintra.stages import common
from tf_pixintra.stages import pseudo_stage
from tf_pixintra.stages import sources

NUM_IMAGES = 6
IMAGE_SIZE = (48, 96)       # ToyScapes images
TRAIN_SIZE = (32, 64)       # --target_size: pass 2 resizes to it
ALPHA = 0.85
SWEEP = (0.5, 0.85, 1.0)


# ------------------------------------------------------------------ set-up

@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """ToyScapes data + a saved tiny generator, shared by the module."""
    root = tmp_path_factory.mktemp("pseudo")
    data_dir = str(root / "toyscapes")
    toyscapes.ensure_toyscapes(data_dir, seed=0, num_source=1,
                               num_target=NUM_IMAGES, num_val=1,
                               height=IMAGE_SIZE[0], width=IMAGE_SIZE[1],
                               workers=1)
    model = models.build_deeplab_v2(19, depth=18, width=0.125, seed=3)
    model_path = str(root / "model.keras")
    model.save(model_path)
    return {"root": root, "data_dir": data_dir, "model_path": model_path}


def make_context(bench, name, **pseudo):
    """A Context whose run directory holds the tiny model as inter/model.keras."""
    run_dir = str(bench["root"] / name)
    os.makedirs(os.path.join(run_dir, "inter"), exist_ok=True)
    shutil.copy(bench["model_path"],
                os.path.join(run_dir, "inter", common.MODEL_FILE))
    pseudo.setdefault("alpha", ALPHA)
    pseudo.setdefault("alpha_sweep", SWEEP)
    method = "intrada" if pseudo.get("selector") == "intrada" else "cts"
    config = config_lib.Config(
        data=config_lib.DataConfig(
            toyscapes=True, toyscapes_dir=bench["data_dir"],
            toyscapes_counts=(1, NUM_IMAGES, 1),
            toyscapes_image_size=IMAGE_SIZE, target_size=TRAIN_SIZE),
        model=config_lib.ModelConfig(depth=18, width=0.125),
        optim=config_lib.OptimConfig(), inter=config_lib.InterConfig(),
        pseudo=config_lib.PseudoConfig(**pseudo),
        intra=config_lib.IntraConfig(method=method),
        run=config_lib.RunConfig(run_dir=run_dir))
    config_lib.validate(config)
    return common.Context(config, run_dir, None,
                          sources.resolve(config.data, need_source=False))


def stage_dir(ctx, round_index=1):
    return os.path.join(ctx.run_dir, pseudo_stage.stage_name(round_index))


def read_records(ctx, name=pseudo_stage.RECORDS):
    """{filename: decoded record as numpy} after validating every record."""
    index_path = os.path.join(stage_dir(ctx), tfrecords.index_name(name))
    tfrecords.validate_records(index_path)
    out = {}
    for record in tfrecords.example_dataset(index_path, validate=False):
        key = record["filename"].numpy().decode()
        assert key not in out, f"{key} written twice"
        out[key] = {k: v.numpy() for k, v in record.items() if k != "filename"}
    return out


def summary_of(ctx):
    return io_utils.read_json(os.path.join(stage_dir(ctx),
                                           pseudo_stage.SUMMARY_FILE))


def images_of(ctx):
    return [(e.name, datasets.read_image(e.image_path))
            for e in ctx.sources.target_train]


def expected_probs(model, images, scales=(1.0,), flip=False):
    """{name: fused probabilities} of [(name, image)], all images in one batch.

    Fusion: mean over scales (and mirrors) of the softmax of the main logits
    resized to the stride-8 grid; rounded to float16 (the cache), then
    upsampled bilinearly to TRAIN_SIZE.
    """
    batch = np.stack([image for _, image in images])
    grid = model(tf.zeros((1, *TRAIN_SIZE, 3)), training=False)[0].shape[1:3]
    fused = []
    for scale in scales:
        h, w = (int(round(v * scale)) for v in TRAIN_SIZE)
        x = models.caffe_preprocess(tf.image.resize(batch, (h, w)))
        for flipped in ((False, True) if flip else (False,)):
            logits = model(x[:, :, ::-1] if flipped else x, training=False)[0]
            if flipped:
                logits = logits[:, :, ::-1]
            fused.append(tf.nn.softmax(tf.image.resize(logits, grid)))
    low = np.float16((sum(fused) / len(fused)).numpy())
    probs = tf.image.resize(low.astype(np.float32), TRAIN_SIZE).numpy()
    return {name: p for (name, _), p in zip(images, probs)}


def expected_thresholds(all_probs):
    estimator = subdomains.ClassThresholds(19)
    for probs in all_probs.values():
        estimator.update(probs)
    return estimator, estimator.result(cap=0.9)


def expected_image(image):
    return np.round(tf.image.resize(image, TRAIN_SIZE).numpy()).astype(np.uint8)


@pytest.fixture(scope="module")
def reference(bench):
    """One complete single-process run and the independently computed maps."""
    ctx = make_context(bench, "reference")
    calls = []
    original = pseudo_stage.make_predictor

    def counting(*args, **kwargs):
        predict = original(*args, **kwargs)
        return lambda image: calls.append(1) or predict(image)
    pseudo_stage.make_predictor = counting
    try:
        metrics = pseudo_stage.run(ctx, 1)
    finally:
        pseudo_stage.make_predictor = original
    model = keras.saving.load_model(bench["model_path"], compile=False)
    probs = expected_probs(model, images_of(ctx))
    estimator, thresholds = expected_thresholds(probs)
    return {"ctx": ctx, "metrics": metrics, "calls": len(calls), "model": model,
            "probs": probs, "estimator": estimator, "thresholds": thresholds,
            "records": read_records(ctx), "summary": summary_of(ctx)}


def assert_same_records(got, want):
    assert sorted(got) == sorted(want)
    for key in want:
        for field in ("image", "pseudo_label", "hard_mask", "z"):
            np.testing.assert_array_equal(got[key][field], want[key][field],
                                          err_msg=f"{key} {field}")


# ------------------------------------------------------------------- tests

def test_records_and_summary_follow_eq_2_3_4_7(reference):
    ctx, records, summary = (reference["ctx"], reference["records"],
                             reference["summary"])
    assert reference["calls"] == NUM_IMAGES      # one forward pass per image
    thresholds = reference["thresholds"]
    np.testing.assert_array_equal(np.float32(summary["thresholds"]), thresholds)
    assert summary["argmax_pixels_per_class"] == \
        reference["estimator"].counts.tolist()
    assert len(records) == NUM_IMAGES
    images = dict(images_of(ctx))
    easy = total = 0
    class_easy = np.zeros(19, np.int64)
    for name, probs in reference["probs"].items():
        hard, label, z = subdomains.separate_pixels(probs, thresholds, ALPHA)
        record = records[name]
        np.testing.assert_array_equal(record["image"], expected_image(images[name]))
        np.testing.assert_array_equal(record["pseudo_label"], label, err_msg=name)
        np.testing.assert_array_equal(record["hard_mask"], hard, err_msg=name)
        np.testing.assert_allclose(record["z"], z, atol=tfrecords.Z_MAX_ERROR)
        easy += int(np.sum(record["hard_mask"] == 0))
        total += record["hard_mask"].size
        class_easy += np.bincount(label[label < 19], minlength=19)
    assert 0.0 < easy / total < 1.0              # both subdomains are present
    assert summary["prop"] == pytest.approx(easy / total, abs=1e-12)
    assert summary["easy_pixels_per_class"] == class_easy.tolist()
    assert summary["num_images"] == NUM_IMAGES
    assert set(summary["alpha_sweep"]) == {str(a) for a in SWEEP}
    assert summary["alpha_sweep"][str(ALPHA)] == pytest.approx(summary["prop"],
                                                               abs=1e-12)
    for alpha in SWEEP:
        n = sum(int(np.sum(subdomains.separate_pixels(p, thresholds, alpha)[0] == 0))
                for p in reference["probs"].values())
        assert summary["alpha_sweep"][str(alpha)] == pytest.approx(n / total,
                                                                   abs=1e-12)
    assert reference["metrics"]["prop"] == summary["prop"]
    assert common.completed(stage_dir(ctx)) == reference["metrics"]
    assert not os.path.exists(os.path.join(stage_dir(ctx), pseudo_stage.CACHE_DIR))


def test_two_shard_processes_match_one_process(bench, reference):
    ctx0 = make_context(bench, "sharded", num_shards=2, shard_index=0)
    ctx1 = make_context(bench, "sharded", num_shards=2, shard_index=1)
    out = stage_dir(ctx0)
    assert pseudo_stage.run(ctx0, 1) is None     # pass 1 of shard 0; waiting
    assert not os.path.exists(os.path.join(out, "target-00000-of-00002.tfrecord"))
    assert pseudo_stage.run(ctx1, 1) is None     # pass 1 + pass 2 of shard 1
    assert os.path.exists(os.path.join(out, "target-00001-of-00002.tfrecord"))
    assert not os.path.exists(os.path.join(out, "target-00000-of-00002.tfrecord"))
    metrics = pseudo_stage.run(ctx0, 1)          # pass 2 of shard 0, summary
    assert metrics == reference["metrics"]
    assert pseudo_stage.run(ctx1, 1) == metrics  # complete: nothing redone
    summary = summary_of(ctx0)
    assert summary == reference["summary"]
    index = tfrecords.read_index(os.path.join(out, tfrecords.index_name("target")))
    assert [s["num_records"] for s in index["shards"]] == [3, 3]
    assert_same_records(read_records(ctx0), reference["records"])


def test_resume_redoes_only_the_missing_shard(bench, reference, monkeypatch):
    ctx = make_context(bench, "resumed", num_shards=2)
    out = stage_dir(ctx)

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash before the summary")
    with monkeypatch.context() as patch:
        patch.setattr(pseudo_stage, "_summarise", crash)
        with pytest.raises(RuntimeError, match="simulated crash"):
            pseudo_stage.run(ctx, 1)
    kept = os.path.join(out, "target-00000-of-00002.tfrecord")
    lost = os.path.join(out, "target-00001-of-00002.tfrecord")
    before = os.stat(kept)
    os.remove(lost)           # as if shard 1's pass 2 had never finished

    def no_model(*args, **kwargs):
        raise AssertionError("pass 1 was redone")
    written = []
    encode = tfrecords.encode_example
    monkeypatch.setattr(pseudo_stage, "make_predictor", no_model)
    monkeypatch.setattr(tfrecords, "encode_example",
                        lambda *a: written.append(a[-1]) or encode(*a))
    metrics = pseudo_stage.run(ctx, 1)
    assert metrics == reference["metrics"]
    names = [e.name for e in ctx.sources.target_train]
    assert sorted(written) == sorted(names[1::2])   # shard 1's images only
    after = os.stat(kept)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert summary_of(ctx) == reference["summary"]
    assert_same_records(read_records(ctx), reference["records"])


def test_ias_selector_records(bench, reference):
    # Two shards in one process: each shard's IAS history starts afresh and
    # runs over its images in order (as it would in two processes).
    ctx = make_context(bench, "ias", selector="ias", num_shards=2)
    metrics = pseudo_stage.run(ctx, 1)
    records = read_records(ctx)
    names = list(reference["probs"])
    easy = total = 0
    for shard in (0, 1):
        selector = subdomains.InstanceAdaptiveSelector(19)
        for name in names[shard::2]:
            probs = reference["probs"][name]
            hard, label, z = subdomains.separate_pixels_with_thresholds(
                probs, selector.thresholds_for(probs))
            record = records[name]
            np.testing.assert_array_equal(record["pseudo_label"], label)
            np.testing.assert_array_equal(record["hard_mask"], hard)
            np.testing.assert_allclose(record["z"], z, atol=tfrecords.Z_MAX_ERROR)
            easy += int(np.sum(hard == 0))
            total += hard.size
    assert len(records) == NUM_IMAGES
    assert metrics["selector"] == "ias"
    assert metrics["prop"] == pytest.approx(easy / total, abs=1e-12)


def test_intrada_selector_splits_images_by_entropy(bench, reference):
    lam = 0.67
    ctx = make_context(bench, "intrada", selector="intrada", intrada_lambda=lam)
    pseudo_stage.run(ctx, 1)
    easy, hard = read_records(ctx, "easy"), read_records(ctx, "hard")
    n_easy = int(np.floor(lam * NUM_IMAGES))      # 4 of 6
    assert (len(easy), len(hard)) == (n_easy, NUM_IMAGES - n_easy)
    names = list(reference["probs"])
    scores = [float(subdomains.normalized_entropy(reference["probs"][n]).mean())
              for n in names]
    order = [names[i] for i in np.argsort(scores, kind="stable")]
    assert sorted(easy) == sorted(order[:n_easy])
    for name in easy:
        probs = reference["probs"][name]
        np.testing.assert_array_equal(easy[name]["pseudo_label"], probs.argmax(-1))
        assert not easy[name]["hard_mask"].any() and not easy[name]["z"].any()
    for name in hard:
        probs = reference["probs"][name]
        assert (hard[name]["pseudo_label"] == 255).all()
        assert (hard[name]["hard_mask"] == 1).all()
        np.testing.assert_allclose(hard[name]["z"], 1.0 - probs.max(-1),
                                   atol=tfrecords.Z_MAX_ERROR)
    summary = summary_of(ctx)
    assert set(summary["indexes"]) == {"easy", "hard"}
    # Equal image sizes: Prop. = share of easy images.
    assert summary["prop"] == pytest.approx(n_easy / NUM_IMAGES, abs=1e-12)


def test_multi_scale_flip_prediction(bench, reference):
    scales = (0.75, 1.0)
    ctx = make_context(bench, "multiscale", pseudo_scales=scales,
                       pseudo_flip=True)
    pseudo_stage.run(ctx, 1)
    records = read_records(ctx)
    probs = expected_probs(reference["model"], images_of(ctx), scales, flip=True)
    _, thresholds = expected_thresholds(probs)
    np.testing.assert_array_equal(np.float32(summary_of(ctx)["thresholds"]),
                                  thresholds)
    for name, p in probs.items():
        hard, label, _ = subdomains.separate_pixels(p, thresholds, ALPHA)
        np.testing.assert_array_equal(records[name]["pseudo_label"], label)
        np.testing.assert_array_equal(records[name]["hard_mask"], hard)
