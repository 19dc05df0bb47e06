"""The `pseudo` stage: pixel-level subdomain separation (Sec 4.1) to TFRecords.

Pass 1 predicts each target training image with the previous round's model,
caches the prediction at output stride (float16) and accumulates the class
thresholds t_k. Pass 2 upsamples each cached prediction to the Stage II size,
applies Eq. 2, 3 and 7 and writes sharded TFRecords (image, pseudo label, M,
Z), `preview_NNN.png` for the first --num_preview_images images (Fig. 2) and
the counts of Prop. (Eq. 4) for every alpha of --alpha_sweep; then the index
and summary.json, and the cache is deleted.

Sharding: image i is in shard i % num_shards. --shard_index=-1 does every
shard. --shard_index=k does pass 1 of shard k and, once every shard's pass-1
file exists (their merge is exact), pass 2 of shard k; until then, and while
other shards' pass 2 is missing, `run` returns None: run the same command on
every worker twice (the last to finish writes the index and summary), or the
second time once with --shard_index=-1. Finished pass files, cached
predictions and shards are kept. Under --strategy=multi_worker (`peers`)
worker k does shard k of one shard per worker and the chief the index and
summary: the files of a one-process run, byte for byte.

Selectors: class_thresholds (Eq. 2-3); ias (IAST per-image thresholds in
place of alpha * t_k, their history restarting with each shard so that the
result does not depend on the processes); intrada (image-level baseline:
images ranked by mean normalised entropy, the easy share with argmax labels
as the `easy` record set, the rest as `hard`).
"""

import functools
import io
import os

import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image

from tf_pixintra import inference
from tf_pixintra import io_utils
from tf_pixintra import previews
from tf_pixintra import progress
from tf_pixintra import run_layout
from tf_pixintra import subdomains
from tf_pixintra.data import datasets
from tf_pixintra.data import tfrecords
from tf_pixintra.errors import DataError
from tf_pixintra.models import main_output
from tf_pixintra.stages import common
from tf_pixintra.stages import peers


def make_predictor(model, size, scales, flip):
    """image uint8 [H,W,3] -> fused probabilities float16 at the network's
    output grid (stride 8) for input `size`, not for the image's size."""
    predict = inference.make_predict_fn(model, size, scales, flip)
    grid = tf.constant(output_grid(model, tuple(int(v) for v in size)), tf.int32)
    return lambda image: tf.cast(predict(image[None], grid)[0], tf.float16)


def output_grid(model, size):
    """Spatial size of the network's main output for an input of `size`:
    static shape inference (a ResNet-101 forward pass costs seconds), else a
    forward pass on zeros."""
    try:
        shape = model.compute_output_shape((1, *size, 3))
        shape = shape[0] if isinstance(shape, list) else shape
        return [int(shape[1]), int(shape[2])]
    except (NotImplementedError, TypeError, ValueError, IndexError):
        shape = main_output(model(tf.zeros((1, *size, 3)), training=False)).shape
    return [int(shape[1]), int(shape[2])]


def full_resolution(low_res, size):
    """float16 stride-8 probabilities -> float32 [H,W,C] at `size` (bilinear)."""
    return tf.image.resize(tf.cast(low_res[None], tf.float32), size)[0].numpy()


def training_image(image_path, size):
    """The target image as stored in the records: PNG of uint8 RGB at `size`
    (bilinear, rounded; zlib level 1 is much faster than the default)."""
    image = tf.image.resize(datasets.read_image(image_path), size)
    image = tf.cast(tf.round(image), tf.uint8)
    return tf.io.encode_png(image, compression=1).numpy()


def _pass_path(stage_dir, pass_number, shard, num_shards):
    return io_utils.join(stage_dir, run_layout.pass_name(pass_number, shard, num_shards))


def _pass_paths(stage_dir, pass_number, num_shards):
    return [_pass_path(stage_dir, pass_number, k, num_shards) for k in range(num_shards)]


def _pass1(ctx, stage_dir, predictor, shard, num_shards, examples):
    """Predicts and caches a shard's images; writes its pass-1 statistics:
    the class-threshold histograms of the predictions at the training size
    (what pass 2 separates) and, for intrada, each image's entropy score."""
    out = _pass_path(stage_dir, 1, shard, num_shards)
    if io_utils.exists(out):
        return
    cfg = ctx.config
    io_utils.makedirs(io_utils.join(stage_dir, run_layout.CACHE_DIR))
    size = tuple(cfg.data.target_size)
    with_entropy = cfg.pseudo.selector == "intrada"
    thresholds = subdomains.ClassThresholds(cfg.model.num_classes)
    entropy = {}
    for index, example in _progress(examples, stage_dir, 1, shard, num_shards):
        probs = full_resolution(_cached_prediction(
            stage_dir, index, example, predictor, save=True), size)
        thresholds.update(probs)
        if with_entropy:
            entropy[str(index)] = float(subdomains.image_entropy_scores(probs))
    stats = {"thresholds": thresholds.to_dict(), "entropy": entropy}
    if peers.shared(ctx):
        stats["worker"] = ctx.task_index   # who made the shard, for the record
    io_utils.write_json(out, stats)


def _merge(stage_dir, num_shards, num_classes, cap):
    """Exact merge of every shard's pass-1 file; None until all exist."""
    files = _pass_paths(stage_dir, 1, num_shards)
    if not all(io_utils.exists(path) for path in files):
        return None
    merged = subdomains.ClassThresholds(num_classes)
    entropy = {}
    for path in files:
        part = io_utils.read_json(path)
        merged.merge(subdomains.ClassThresholds.from_dict(part["thresholds"]))
        entropy.update({int(k): v for k, v in part["entropy"].items()})
    return merged, merged.result(cap=cap), entropy


def _separators(ctx, thresholds, entropy, num_images):
    """{record set name: separate(index, probs) -> (M, label, Z) or None};
    called once per shard (an IAS selector's history starts with it)."""
    cfg = ctx.config.pseudo
    if cfg.selector == "class_thresholds":
        return {run_layout.RECORDS: lambda i, p: subdomains.separate_pixels(
            p, thresholds, cfg.alpha)}
    if cfg.selector == "ias":
        selector = subdomains.InstanceAdaptiveSelector(ctx.config.model.num_classes)
        return {run_layout.RECORDS: lambda i, p: subdomains.separate_pixels_with_thresholds(
            p, selector.thresholds_for(p))}
    scores = np.array([entropy[i] for i in range(num_images)])
    easy, _ = subdomains.rank_images_by_entropy(scores, cfg.intrada_lambda)
    easy = set(int(i) for i in easy)

    def easy_set(i, p):
        if i not in easy:
            return None
        label = subdomains.intrada_pseudo_labels(p)
        return np.zeros(label.shape, np.uint8), label, np.zeros(label.shape, np.float32)

    def hard_set(i, p):
        if i in easy:
            return None
        shape = p.shape[:-1]
        return (np.ones(shape, np.uint8), np.full(shape, 255, np.uint8),
                (1.0 - p.max(axis=-1)).astype(np.float32))
    return {"easy": easy_set, "hard": hard_set}


def _pass2(ctx, stage_dir, shard, num_shards, examples, separators, thresholds, predictor):
    """Writes one shard of every record set, then its counts file (pass 2),
    which marks the shard done. Each prediction is upsampled once."""
    names = list(separators)
    paths = {name: io_utils.join(stage_dir, run_layout.shard_name(
        name, shard, num_shards)) for name in names}
    done_file = _pass_path(stage_dir, 2, shard, num_shards)
    if io_utils.exists(done_file) and all(map(io_utils.exists, paths.values())):
        return
    config = ctx.config
    size = tuple(config.data.target_size)
    counter = subdomains.PropCounter(config.model.num_classes, config.pseudo.alpha_sweep)
    with tfrecords.writers(paths) as write:
        for index, example in _progress(examples, stage_dir, 2, shard, num_shards):
            probs = full_resolution(_cached_prediction(stage_dir, index, example, predictor), size)
            counter.update_sweep(probs, thresholds)
            image = None
            for name in names:
                picked = separators[name](index, probs)
                if picked is None:
                    continue
                hard, label, z = picked
                counter.update(hard, label)
                if image is None:
                    image = training_image(example.image_path, size)
                write[name](tfrecords.encode_example(image, label, hard, z, example.name))
                if index < config.pseudo.num_preview_images:
                    _write_preview(stage_dir, index, image, picked)
    io_utils.write_json(done_file, counter.to_dict())


def _write_preview(stage_dir, index, image_png, picked):
    """preview_NNN.png of target image `index` (Fig. 2 layout), atomically."""
    hard, label, z = picked
    with Image.open(io.BytesIO(image_png)) as decoded:
        image = np.asarray(decoded.convert("RGB"))
    previews.save_png(previews.preview(image, label, hard, z),
                      io_utils.join(stage_dir, run_layout.PREVIEW_FILE.format(index)))


def run(ctx, round_index):
    """Runs the pseudo stage of round `round_index`; returns its metrics, or
    None while other shards are missing. Multi-worker, the chief alone
    re-makes a finished stage's damaged files while the others wait."""
    stage_dir = ctx.stage_dir(run_layout.stage_dir_name("pseudo", round_index))
    done = run_layout.completed(stage_dir)
    together = peers.shared(ctx)
    if done is not None and together and not ctx.is_chief:
        return _chief_summary(ctx, stage_dir)
    if done is not None and _outputs_intact(ctx, stage_dir):
        return done
    cfg, config = ctx.config.pseudo, ctx.config
    examples = list(ctx.sources.target_train)
    shards = (range(cfg.num_shards)
              if cfg.shard_index < 0 or (together and done is not None)
              else [cfg.shard_index])
    predictor = _lazy_predictor(ctx, round_index)
    for shard in shards:
        _pass1(ctx, stage_dir, predictor, shard, cfg.num_shards, examples)
    if together:
        peers.wait_for(ctx, _pass_paths(stage_dir, 1, cfg.num_shards),
                       "every shard's pass-1 statistics")
    merged = _merge(stage_dir, cfg.num_shards, config.model.num_classes, cfg.threshold_cap)
    if merged is None:
        logging.info("pass 1 done for shards %s; waiting for the others", list(shards))
        return None
    estimator, thresholds, entropy = merged
    for shard in shards:
        separators = _separators(ctx, thresholds, entropy, len(examples))
        _pass2(ctx, stage_dir, shard, cfg.num_shards, examples, separators, thresholds, predictor)
    if together and not ctx.is_chief:
        return _chief_summary(ctx, stage_dir)
    if together:
        peers.wait_for(ctx, _pass_paths(stage_dir, 2, cfg.num_shards), "every shard's pass 2")
    return _summarise(ctx, stage_dir, thresholds, estimator, round_index)


def _chief_summary(ctx, stage_dir):
    """A non-chief worker waits for the chief's metrics.json and whole
    indexes (the chief re-makes damaged ones); returns the metrics."""
    def broken():
        for name in record_sets(ctx.config.pseudo.selector):
            try:
                tfrecords.read_index(io_utils.join(stage_dir, run_layout.index_name(name)))
            except DataError as e:
                return str(e)
        return None
    return peers.chief_result(ctx, stage_dir, ready=broken)


def _outputs_intact(ctx, stage_dir):
    """True if every index and shard of a finished stage is whole; else
    deletes the damaged shards (re-made from the pass files) and is False."""
    intact = True
    num_shards = ctx.config.pseudo.num_shards
    for name in record_sets(ctx.config.pseudo.selector):
        index_path = io_utils.join(stage_dir, run_layout.index_name(name))
        try:
            tfrecords.read_index(index_path)
            continue
        except DataError as e:
            logging.warning("%s; re-making the pseudo labels' missing or damaged files", e)
            intact = False
        try:
            index = tfrecords.read_index(index_path, check_files=False)
            recorded = {s["file"]: s.get("num_bytes") for s in index["shards"]}
        except DataError:
            recorded = {}
        for shard in range(num_shards):
            path = io_utils.join(stage_dir, run_layout.shard_name(name, shard, num_shards))
            if not io_utils.exists(path):
                continue
            size = recorded.get(os.path.basename(path))
            try:
                tfrecords.count_records(path)
                damaged = size is not None and io_utils.getsize(path) != size
            except DataError:
                damaged = True
            if damaged:
                logging.warning("%s: damaged shard deleted; it is written again", path)
                io_utils.remove(path)
    return intact


def _cached_prediction(stage_dir, index, example, predictor, save=False):
    """The cached stride-8 prediction of an image, else predicted now (and
    cached if `save`)."""
    path = io_utils.join(stage_dir, run_layout.CACHE_DIR, f"{index:06d}.npy")
    if io_utils.exists(path):
        return io_utils.load_npy(path)
    low = predictor()(datasets.read_image(example.image_path)).numpy()
    if save:
        io_utils.save_npy(path, low)
    return low


def _lazy_predictor(ctx, round_index):
    """() -> predictor; loads the model on first use (not when resuming pass 2)."""
    config = ctx.config

    @functools.cache
    def get():
        model = common.load_generator(run_layout.model_for_round(config, ctx.run_dir, round_index))
        return make_predictor(model, config.data.target_size,
                              config.pseudo.pseudo_scales, config.pseudo.pseudo_flip)
    return get


def record_sets(selector):
    """Names of the record sets a selector writes."""
    return ("easy", "hard") if selector == "intrada" else (run_layout.RECORDS,)


def _summarise(ctx, stage_dir, thresholds, estimator, round_index):
    """Index + summary once every shard's pass 2 exists (else None)."""
    cfg, num_classes = ctx.config.pseudo, ctx.config.model.num_classes
    counter = subdomains.PropCounter(num_classes, cfg.alpha_sweep)
    for shard, done_file in enumerate(_pass_paths(stage_dir, 2, cfg.num_shards)):
        if not io_utils.exists(done_file):
            logging.info("pass 2 of shard %d missing; waiting for it", shard)
            return None
        counter.merge(subdomains.PropCounter.from_dict(io_utils.read_json(done_file)))
    thresholds = [float(t) for t in thresholds]
    settings = {"selector": cfg.selector, "alpha": cfg.alpha, "thresholds": thresholds,
                "size": list(ctx.config.data.target_size), "round": round_index}
    indexes = {name: tfrecords.write_index(stage_dir, name, cfg.num_shards, settings)
               for name in record_sets(cfg.selector)}
    sweep = {str(a): p for a, p in counter.sweep_proportions().items()}
    summary = {
        "selector": cfg.selector, "alpha": cfg.alpha, "thresholds": thresholds,
        "argmax_pixels_per_class": np.asarray(estimator.counts).tolist(),
        "prop": counter.proportion, "easy_pixels_per_class": counter.class_easy.tolist(),
        "alpha_sweep": sweep, "indexes": {k: os.path.basename(v) for k, v in indexes.items()},
        "num_images": len(ctx.sources.target_train)}
    io_utils.write_json(io_utils.join(stage_dir, run_layout.SUMMARY_FILE), summary)
    io_utils.rmtree(io_utils.join(stage_dir, run_layout.CACHE_DIR))   # and temporaries there
    metrics = {"stage": run_layout.stage_dir_name("pseudo", round_index),
               "prop": summary["prop"], "alpha": cfg.alpha,
               "selector": cfg.selector, "alpha_sweep": sweep}
    return common.finish(ctx, stage_dir, metrics)


def _progress(examples, stage_dir, pass_index, shard, num_shards):
    """(index, example) of shard `shard` (index % num_shards), with a progress
    report, e.g. "pseudo_r1 pass 1 (shard 2 of 4)"."""
    label = f"{os.path.basename(stage_dir)} pass {pass_index}"
    if num_shards > 1:
        label += f" (shard {shard} of {num_shards})"
    return progress.track([(i, e) for i, e in enumerate(examples)
                           if i % num_shards == shard], label)
