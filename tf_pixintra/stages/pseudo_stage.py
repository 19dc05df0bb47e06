"""The `pseudo` stage: pixel-level subdomain separation (Sec 4.1) to TFRecords.

Pass 1 predicts every target training image once with the previous round's
model and accumulates the class thresholds t_k (streaming, mergeable). The
fused prediction of each image is kept on disk at the network's output
stride (float16, ~0.3 MB for 512x1024 and 19 classes), so pass 2 needs no
second forward pass: it upsamples it once to the Stage II training
resolution, applies Eq. 2, 3 and 7, writes sharded TFRecords (image, pseudo
label, M, Z) and counts Prop. (Eq. 4) and the easy pixels for every alpha
of --alpha_sweep; then an index and a JSON summary (t_k, alpha, Prop.,
per-class easy-pixel counts, Prop. for every alpha of --alpha_sweep) are
written and the cache is deleted.

Sharding: image i belongs to shard i % num_shards. With --shard_index=-1
one process does everything. With --shard_index=k a process does shard k:
pass 1 of shard k, then, once the pass-1 files of every shard exist (their
merge is exact), pass 2 of shard k; it returns None ("waiting") until then,
and also when other shards' pass 2 is still missing. So run the same
command on every worker; once all have finished, run it again on every
worker (each does pass 2 of its shard; the last one to finish writes the
index and summary), or once with --shard_index=-1 anywhere (it does every
missing shard). Every step is resumable: a finished pass-1 file, cached
prediction or pass-2 shard is never redone.

Under --strategy=multi_worker the workers share the stage without these
flags (`peers`): worker k does shard k of as many shards as there are
workers, waits for every pass-1 file (bounded by --peer_wait_secs) and does
pass 2 of shard k; the chief waits for every pass-2 shard and writes the
index and summary, the others wait for its metrics.json. The files are
those of a one-process run with the same --num_shards, byte for byte.

Selectors: class_thresholds (Eq. 2-3), ias (IAST thresholds per image, in
place of alpha * t_k; their history starts afresh for every shard and runs
in image order within it, so the result does not depend on how shards are
spread over processes) and intrada (image-level baseline: images ranked by
mean normalised entropy; the easy share is written with full argmax labels
as the `easy` record set, the rest as the `hard` set).

Pictures: pass 2 also writes `preview_NNN.png` for the first
--num_preview_images target images (image | pseudo label | hard mask M |
Z heat map, the layout of the paper's Fig. 2; tf_pixintra.previews).
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

PNG_COMPRESSION = 1          # zlib level of the record images


def make_predictor(model, size, scales, flip):
    """image uint8 [H,W,3] -> fused probabilities at output stride, float16.

    `inference.predict_probs_batch` at input `size`, its output resized to
    the network's output grid for `size` (stride 8) instead of the image's.
    """
    predict = inference.make_predict_fn(model, size, scales, flip)
    grid = tf.constant(output_grid(model, tuple(int(v) for v in size)), tf.int32)
    return lambda image: tf.cast(predict(image[None], grid)[0], tf.float16)


def output_grid(model, size):
    """Spatial size of the network's main output for an input of `size`.

    From the model's static shape inference (no forward pass: one costs
    seconds for the paper's ResNet-101 at 512x1024); a forward pass on
    zeros if the model cannot infer it.
    """
    try:
        shape = model.compute_output_shape((1, *size, 3))
        if isinstance(shape, list):
            shape = shape[0]
        grid = [int(shape[1]), int(shape[2])]
    except (NotImplementedError, TypeError, ValueError, IndexError):
        out = model(tf.zeros((1, *size, 3)), training=False)
        logits = main_output(out)
        grid = [int(logits.shape[1]), int(logits.shape[2])]
    return grid


def full_resolution(low_res, size):
    """float16 stride-8 probabilities -> float32 [H,W,C] at `size` (bilinear)."""
    x = tf.image.resize(tf.cast(low_res[None], tf.float32), size)
    return x[0].numpy()


def training_image(image_path, size):
    """The target image as stored in the records: PNG of uint8 RGB at `size`.

    Bilinear resize, rounded. zlib level 1: about 3x faster than the
    default level on 512x1024 images, for files ~15% larger.
    """
    image = tf.image.resize(datasets.read_image(image_path), size)
    image = tf.cast(tf.round(image), tf.uint8)
    return tf.io.encode_png(image, compression=PNG_COMPRESSION).numpy()


def _shard_images(examples, shard, num_shards):
    return [(i, e) for i, e in enumerate(examples) if i % num_shards == shard]


def _cache_path(stage_dir, index):
    return io_utils.join(stage_dir, run_layout.CACHE_DIR, f"{index:06d}.npy")


def _pass_path(stage_dir, pass_number, shard, num_shards):
    return io_utils.join(stage_dir,
                         run_layout.pass_name(pass_number, shard, num_shards))


def _pass1(ctx, stage_dir, predictor, shard, num_shards, examples):
    """Predicts a shard's images, caches them, writes its pass-1 statistics.

    The statistics are the class-threshold histograms of the cached
    predictions upsampled to the training size (exactly what pass 2
    separates) and, for the intrada selector, each image's entropy score.
    """
    out = _pass_path(stage_dir, 1, shard, num_shards)
    if io_utils.exists(out):
        return
    cfg = ctx.config
    io_utils.makedirs(io_utils.join(stage_dir, run_layout.CACHE_DIR))
    size = tuple(cfg.data.target_size)
    with_entropy = cfg.pseudo.selector == "intrada"
    thresholds = subdomains.ClassThresholds(cfg.model.num_classes)
    entropy = {}
    for index, example in _progress(_shard_images(examples, shard, num_shards),
                                    stage_dir, 1, shard, num_shards):
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
    files = [_pass_path(stage_dir, 1, k, num_shards) for k in range(num_shards)]
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
    """{record set name: separate(index, probs) -> (M, label, Z) or None}.

    Called once per shard: an IAS selector's history starts with the shard.
    """
    cfg = ctx.config.pseudo
    if cfg.selector == "class_thresholds":
        return {run_layout.RECORDS: lambda i, p: subdomains.separate_pixels(
            p, thresholds, cfg.alpha)}
    if cfg.selector == "ias":
        selector = subdomains.InstanceAdaptiveSelector(
            ctx.config.model.num_classes)
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


def _pass2(ctx, stage_dir, shard, num_shards, examples, separators, thresholds,
           predictor):
    """Writes one shard of every record set and its counts (pass 2).

    Each cached prediction is loaded and upsampled once, for every record
    set and the alpha sweep. The shard files are renamed into place when
    complete; the counts file, written last, marks the shard done.
    """
    names = list(separators)
    paths = {name: io_utils.join(stage_dir, run_layout.shard_name(
        name, shard, num_shards)) for name in names}
    done_file = _pass_path(stage_dir, 2, shard, num_shards)
    if io_utils.exists(done_file) and all(map(io_utils.exists, paths.values())):
        return
    config = ctx.config
    size = tuple(config.data.target_size)
    counter = subdomains.PropCounter(config.model.num_classes,
                                     config.pseudo.alpha_sweep)
    with tfrecords.writers(paths) as write:
        for index, example in _progress(
                _shard_images(examples, shard, num_shards), stage_dir, 2, shard,
                num_shards):
            probs = full_resolution(
                _cached_prediction(stage_dir, index, example, predictor), size)
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
                write[name](tfrecords.encode_example(image, label, hard, z,
                                                     example.name))
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
    """Runs the pseudo stage of round `round_index`; returns its metrics or None.

    None means this process has done its part and other shards are missing
    (see the module docstring). Multi-worker, a finished stage whose files
    are damaged is re-made by the chief alone while the others wait.
    """
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
        peers.wait_for(ctx, [_pass_path(stage_dir, 1, k, cfg.num_shards)
                             for k in range(cfg.num_shards)],
                       "every shard's pass-1 statistics")
    merged = _merge(stage_dir, cfg.num_shards, config.model.num_classes,
                    cfg.threshold_cap)
    if merged is None:
        logging.info("pass 1 done for shards %s; waiting for the others", list(shards))
        return None
    estimator, thresholds, entropy = merged
    for shard in shards:
        separators = _separators(ctx, thresholds, entropy, len(examples))
        _pass2(ctx, stage_dir, shard, cfg.num_shards, examples, separators,
               thresholds, predictor)
    if together and not ctx.is_chief:
        return _chief_summary(ctx, stage_dir)
    if together:
        peers.wait_for(ctx, [_pass_path(stage_dir, 2, k, cfg.num_shards)
                             for k in range(cfg.num_shards)],
                       "every shard's pass 2")
    return _summarise(ctx, stage_dir, thresholds, estimator, round_index)


def _chief_summary(ctx, stage_dir):
    """A non-chief worker waits for the chief's metrics.json and whole
    indexes (the chief re-makes damaged ones); returns the metrics."""
    def broken():
        for name in record_sets(ctx.config.pseudo.selector):
            try:
                tfrecords.read_index(io_utils.join(stage_dir,
                                                  run_layout.index_name(name)))
            except DataError as e:
                return str(e)
        return None
    return peers.chief_result(ctx, stage_dir, ready=broken)


def _outputs_intact(ctx, stage_dir):
    """True if every index and shard of a finished stage is whole.

    Otherwise the damaged shards are deleted (the stage re-makes them and
    the indexes from its pass-1/pass-2 files, predicting again the images
    whose cached predictions are gone) and False is returned.
    """
    intact = True
    num_shards = ctx.config.pseudo.num_shards
    for name in record_sets(ctx.config.pseudo.selector):
        index_path = io_utils.join(stage_dir, run_layout.index_name(name))
        try:
            tfrecords.read_index(index_path)
            continue
        except DataError as e:
            logging.warning("%s; re-making the pseudo labels' missing or "
                            "damaged files", e)
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
    """The cached stride-8 prediction of an image; predicted (and with
    `save` cached) if it is not there."""
    path = _cache_path(stage_dir, index)
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
        model = common.load_generator(run_layout.model_for_round(
            config, ctx.run_dir, round_index))
        return make_predictor(model, config.data.target_size,
                              config.pseudo.pseudo_scales, config.pseudo.pseudo_flip)
    return get


def record_sets(selector):
    """Names of the record sets a selector writes."""
    return ("easy", "hard") if selector == "intrada" else (run_layout.RECORDS,)


def _summarise(ctx, stage_dir, thresholds, estimator, round_index):
    """Index + summary once every shard's pass 2 exists (else None)."""
    cfg, num_classes = ctx.config.pseudo, ctx.config.model.num_classes
    names = record_sets(cfg.selector)
    counter = subdomains.PropCounter(num_classes, cfg.alpha_sweep)
    for shard in range(cfg.num_shards):
        done_file = _pass_path(stage_dir, 2, shard, cfg.num_shards)
        if not io_utils.exists(done_file):
            logging.info("pass 2 of shard %d missing; waiting for it", shard)
            return None
        counter.merge(subdomains.PropCounter.from_dict(io_utils.read_json(done_file)))
    settings = {"selector": cfg.selector, "alpha": cfg.alpha,
                "thresholds": [float(t) for t in thresholds],
                "size": list(ctx.config.data.target_size), "round": round_index}
    indexes = {name: tfrecords.write_index(stage_dir, name, cfg.num_shards, settings)
               for name in names}
    sweep = {str(a): p for a, p in counter.sweep_proportions().items()}
    summary = {
        "selector": cfg.selector, "alpha": cfg.alpha,
        "thresholds": [float(t) for t in thresholds],
        "argmax_pixels_per_class": np.asarray(estimator.counts).tolist(),
        "prop": counter.proportion,
        "easy_pixels_per_class": counter.class_easy.tolist(),
        "alpha_sweep": sweep,
        "indexes": {k: os.path.basename(v) for k, v in indexes.items()},
        "num_images": len(ctx.sources.target_train),
    }
    io_utils.write_json(io_utils.join(stage_dir, run_layout.SUMMARY_FILE), summary)
    io_utils.rmtree(io_utils.join(stage_dir, run_layout.CACHE_DIR))   # and temporaries there
    metrics = {"stage": run_layout.stage_dir_name("pseudo", round_index),
               "prop": summary["prop"], "alpha": cfg.alpha,
               "selector": cfg.selector, "alpha_sweep": sweep}
    return common.finish(ctx, stage_dir, metrics)


def _progress(items, stage_dir, pass_index, shard, num_shards):
    """`items` with a progress report, e.g. "pseudo_r1 pass 1 (shard 2 of 4)"."""
    label = f"{os.path.basename(stage_dir)} pass {pass_index}"
    if num_shards > 1:
        label += f" (shard {shard} of {num_shards})"
    return progress.track(items, label)
