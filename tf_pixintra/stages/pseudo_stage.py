"""The `pseudo` stage: pixel-level subdomain separation (Sec 4.1) to TFRecords.

Pass 1 predicts every target training image once with the previous round's
model and accumulates the class thresholds t_k (streaming, mergeable). The
fused prediction of each image is kept on disk at the network's output
stride (float16, ~0.3 MB for 512x1024 and 19 classes), so pass 2 needs no
second forward pass: it upsamples it to the Stage II training resolution,
applies Eq. 2, 3 and 7 and writes sharded TFRecords (image, pseudo label,
M, Z), then an index and a JSON summary (t_k, alpha, Prop. (Eq. 4),
per-class easy-pixel counts, Prop. for every alpha of --alpha_sweep).

Sharding: image i belongs to shard i % num_shards. With --shard_index=k a
process does shard k only; run the same command on every worker, then once
more anywhere: the merge of the pass-1 files is exact, and the index and
summary are written when every shard exists. With --shard_index=-1 one
process does everything.

Selectors: class_thresholds (Eq. 2-3), ias (IAST thresholds per image, in
place of alpha * t_k; their history runs in image order within a shard) and
intrada (image-level baseline: images ranked by mean normalised entropy;
the easy share is written with full argmax labels as the `easy` record set,
the rest as the `hard` set).
"""

import glob
import os

import numpy as np
import tensorflow as tf
from absl import logging

from tf_pixintra import io_utils
from tf_pixintra import subdomains
from tf_pixintra.data import datasets
from tf_pixintra.data import tfrecords
from tf_pixintra.models import caffe_preprocess
from tf_pixintra.stages import common

RECORDS = "target"
SUMMARY_FILE = "summary.json"


def stage_name(round_index):
    return f"pseudo_r{round_index}"


def model_for_round(ctx, round_index):
    """The model whose predictions make round `round_index`'s pseudo labels."""
    name = "inter" if round_index == 1 else f"intra_r{round_index - 1}"
    return os.path.join(ctx.run_dir, name, common.MODEL_FILE)


def make_predictor(model, size, scales, flip):
    """image uint8 [H,W,3] -> fused probabilities at output stride, float16.

    For each scale s (and its mirror when flip), the image is resized to
    s * size, the main head's logits are resized to the stride-8 grid of
    `size` and turned into probabilities; the probabilities are averaged.
    """
    size = tuple(int(v) for v in size)
    grid = output_grid(model, size)

    @tf.function(reduce_retracing=True)
    def predict(image):
        total = 0.0
        count = 0
        for scale in scales:
            scaled = [max(1, int(round(v * scale))) for v in size]
            x = caffe_preprocess(tf.image.resize(image[None], scaled))
            variants = [x, tf.reverse(x, axis=[2])] if flip else [x]
            for j, xin in enumerate(variants):
                out = model(xin, training=False)
                logits = out[0] if isinstance(out, (list, tuple)) else out
                logits = tf.cast(logits, tf.float32)
                if j == 1:
                    logits = tf.reverse(logits, axis=[2])
                probs = tf.nn.softmax(tf.image.resize(logits, grid), axis=-1)
                total += probs
                count += 1
        return tf.cast(total[0] / count, tf.float16)
    return predict


def output_grid(model, size):
    """Spatial size of the network's main output for an input of `size`."""
    out = model(tf.zeros((1, *size, 3)), training=False)
    logits = out[0] if isinstance(out, (list, tuple)) else out
    return [int(logits.shape[1]), int(logits.shape[2])]


def full_resolution(low_res, size):
    """float16 stride-8 probabilities -> float32 [H,W,C] at `size` (bilinear)."""
    x = tf.image.resize(tf.cast(low_res[None], tf.float32), size)
    return x[0].numpy()


def _shard_images(examples, shard, num_shards):
    return [(i, e) for i, e in enumerate(examples) if i % num_shards == shard]


def _cache_path(cache_dir, index):
    return os.path.join(cache_dir, f"{index:06d}.npy")


def _pass1(ctx, stage_dir, predictor, shard, num_shards, examples):
    """Predicts a shard's images, caches them, writes its pass-1 statistics."""
    out = os.path.join(stage_dir, f"pass1-{shard:05d}-of-{num_shards:05d}.json")
    if os.path.exists(out):
        return
    cfg = ctx.config
    cache_dir = os.path.join(stage_dir, "cache")
    os.makedirs(cache_dir, exist_ok=True)
    size = tuple(cfg.data.target_size)
    thresholds = subdomains.ClassThresholds(cfg.model.num_classes)
    entropy = {}
    for index, example in _shard_images(examples, shard, num_shards):
        path = _cache_path(cache_dir, index)
        if os.path.exists(path):
            low = np.load(path)
        else:
            low = predictor(datasets.read_image(example.image_path)).numpy()
            with io_utils.atomic_path(path) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, low)
        probs = full_resolution(low, size)
        thresholds.update(probs)
        entropy[str(index)] = float(subdomains.image_entropy_scores(probs))
    io_utils.write_json(out, {"thresholds": thresholds.to_dict(),
                              "entropy": entropy})


def _merge(stage_dir, num_shards, num_classes, cap):
    """Exact merge of every shard's pass-1 file; None until all exist."""
    files = sorted(glob.glob(os.path.join(stage_dir, f"pass1-*-of-{num_shards:05d}.json")))
    if len(files) < num_shards:
        return None
    merged = subdomains.ClassThresholds(num_classes)
    entropy = {}
    for path in files:
        part = io_utils.read_json(path)
        merged.merge(subdomains.ClassThresholds.from_dict(part["thresholds"]))
        entropy.update({int(k): v for k, v in part["entropy"].items()})
    return merged, merged.result(cap=cap), entropy


def _records(ctx, stage_dir, shard, num_shards, examples, separate, counter):
    """Yields the tf.train.Examples of one shard (pass 2)."""
    size = tuple(ctx.config.data.target_size)
    for index, example in _shard_images(examples, shard, num_shards):
        probs = full_resolution(np.load(_cache_path(
            os.path.join(stage_dir, "cache"), index)), size)
        picked = separate(index, probs)
        if picked is None:
            continue
        hard, label, z = picked
        counter.update(hard, label)
        image = tf.image.resize(datasets.read_image(example.image_path), size)
        image = tf.cast(tf.round(image), tf.uint8).numpy()
        yield tfrecords.encode_example(image, label, hard, z, example.name)


def _separators(ctx, thresholds, entropy, num_images):
    """{record set name: separate(index, probs) -> (M, label, Z) or None}."""
    cfg = ctx.config.pseudo
    if cfg.selector == "class_thresholds":
        return {RECORDS: lambda i, p: subdomains.separate_pixels(
            p, thresholds, cfg.alpha)}
    if cfg.selector == "ias":
        selector = subdomains.InstanceAdaptiveSelector(
            ctx.config.model.num_classes)
        return {RECORDS: lambda i, p: subdomains.separate_pixels_with_thresholds(
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


def run(ctx, round_index):
    """Runs the pseudo stage of round `round_index`; returns its metrics or None."""
    stage_dir = ctx.stage_dir(stage_name(round_index))
    done = common.completed(stage_dir)
    if done is not None:
        return done
    cfg, config = ctx.config.pseudo, ctx.config
    examples = list(ctx.sources.target_train)
    shards = (range(cfg.num_shards) if cfg.shard_index < 0
              else [cfg.shard_index])
    model = common.load_generator(model_for_round(ctx, round_index))
    predictor = make_predictor(model, config.data.target_size,
                               cfg.pseudo_scales, cfg.pseudo_flip)
    for shard in shards:
        _pass1(ctx, stage_dir, predictor, shard, cfg.num_shards, examples)
    merged = _merge(stage_dir, cfg.num_shards, config.model.num_classes,
                    cfg.threshold_cap)
    if merged is None:
        logging.info("pass 1 done for shards %s; waiting for the others", list(shards))
        return None
    estimator, thresholds, entropy = merged
    separators = _separators(ctx, thresholds, entropy, len(examples))
    for name, separate in separators.items():
        for shard in shards:
            counter = subdomains.PropCounter(config.model.num_classes)
            path = os.path.join(stage_dir, tfrecords.shard_name(name, shard, cfg.num_shards))
            count_file = path + ".counts.json"
            if os.path.exists(path) and os.path.exists(count_file):
                continue
            tfrecords.write_shard(stage_dir, name, shard, cfg.num_shards, _records(
                ctx, stage_dir, shard, cfg.num_shards, examples, separate, counter))
            io_utils.write_json(count_file, counter.to_dict())
    return _summarise(ctx, stage_dir, separators, thresholds, estimator, round_index)


def _summarise(ctx, stage_dir, separators, thresholds, estimator, round_index):
    """Index + summary once every shard exists (else None)."""
    cfg, num_classes = ctx.config.pseudo, ctx.config.model.num_classes
    counter = subdomains.PropCounter(num_classes)
    for name in separators:
        for shard in range(cfg.num_shards):
            count_file = os.path.join(stage_dir, tfrecords.shard_name(
                name, shard, cfg.num_shards)) + ".counts.json"
            if not os.path.exists(count_file):
                return None
            counter.merge(subdomains.PropCounter.from_dict(io_utils.read_json(count_file)))
    settings = {"selector": cfg.selector, "alpha": cfg.alpha,
                "thresholds": [float(t) for t in thresholds],
                "size": list(ctx.config.data.target_size), "round": round_index}
    indexes = {name: tfrecords.write_index(stage_dir, name, cfg.num_shards, settings)
               for name in separators}
    sweep = _alpha_sweep(ctx, stage_dir, thresholds)
    summary = {
        "selector": cfg.selector, "alpha": cfg.alpha,
        "thresholds": [float(t) for t in thresholds],
        "argmax_pixels_per_class": np.asarray(estimator.counts).tolist(),
        "prop": counter.easy / counter.total if counter.total else 0.0,
        "easy_pixels_per_class": counter.class_easy.tolist(),
        "alpha_sweep": sweep,
        "indexes": {k: os.path.basename(v) for k, v in indexes.items()},
        "num_images": len(ctx.sources.target_train),
    }
    io_utils.write_json(os.path.join(stage_dir, SUMMARY_FILE), summary)
    _drop_cache(stage_dir)
    metrics = {"stage": stage_name(round_index), "prop": summary["prop"],
               "alpha": cfg.alpha, "selector": cfg.selector,
               "alpha_sweep": sweep}
    return common.finish(ctx, stage_dir, metrics)


def _alpha_sweep(ctx, stage_dir, thresholds):
    """Prop. for every alpha of --alpha_sweep (Table 5), from the cache."""
    alphas = tuple(ctx.config.pseudo.alpha_sweep)
    counter = subdomains.PropCounter(ctx.config.model.num_classes, alphas)
    size = tuple(ctx.config.data.target_size)
    for path in sorted(glob.glob(os.path.join(stage_dir, "cache", "*.npy"))):
        counter.update_sweep(full_resolution(np.load(path), size), thresholds)
    total = max(counter.sweep_total, 1)
    return {str(a): int(n) / total for a, n in zip(alphas, counter.sweep_easy)}


def _drop_cache(stage_dir):
    for path in glob.glob(os.path.join(stage_dir, "cache", "*.npy")):
        os.remove(path)
