"""The `intra` stage: Stage II on target images only, from the pseudo labels.

Round r reads `pseudo_r<r>/` and writes `intra_r<r>/`; rounds >= 2 add the
KLD regulariser (CRST MRKLD, --intra_kld_lambda). Random scale + crop + flip
are identical on image, pseudo label, M and Z. --intra_init=fresh starts
from --backbone_weights or a random init (IntraDA's choice), =inter from the
model that made this round's pseudo labels. --intra_method=intrada trains
the image-level IntraDA baseline (paper Table 4): easy images labelled, hard
ones not, entropy-map discriminators with upsampled outputs.
"""

import functools
import os

import tensorflow as tf

from tf_pixintra import io_utils
from tf_pixintra import losses
from tf_pixintra import run_layout
from tf_pixintra.adapters.inter import InterDomainAdapter
from tf_pixintra.adapters.intra import PixelIntraAdapter
from tf_pixintra.data import pipeline
from tf_pixintra.data import tfrecords
from tf_pixintra.errors import DataError
from tf_pixintra.stages import common


def _records(ctx, round_index, name, batch_size, seed):
    data = ctx.config.data
    index = io_utils.join(ctx.run_dir, run_layout.stage_dir_name("pseudo", round_index),
                          run_layout.index_name(name))
    advice = (f"run the same command with --stage=pseudo --round={round_index} "
              "(it re-makes missing or damaged pseudo-label files), then this command again")
    if not io_utils.exists(index):
        raise FileNotFoundError(f"{index}: no pseudo labels; {advice}")
    try:
        tfrecords.read_index(index)
    except DataError as e:
        raise DataError(f"{e}. To recover, {advice}") from None
    check_shard_counts(index, round_index)
    # Records of this run's finished pseudo stage were checked as written;
    # others are checked by the offline validator before training.
    written_here = run_layout.completed(io_utils.parent(index)) is not None
    return pipeline.pseudo_label_dataset(
        index, size=data.target_size, crop_size=data.crop_size or None,
        scale_range=data.scale_range or None, flip=data.flip,
        batch_size=batch_size, seed=seed, validate=not written_here)


def check_shard_counts(index_path, round_index):
    """Every shard holds the records its index says, and some hold any
    (else the repeated stream never yields a batch: Stage II would hang)."""
    index = tfrecords.read_index(index_path)
    redo = (f"delete {os.path.dirname(index_path)} and run --stage=pseudo "
            f"--round={round_index} to write the pseudo labels again")
    total = 0
    for shard, path in zip(index["shards"], index["paths"]):
        count = tfrecords.count_records(path)
        expected = shard.get("num_records")
        if expected is not None and count != expected:
            raise DataError(f"{path}: shard holds {count} records, its index "
                            f"{index_path} says {expected}; {redo}")
        total += count
    if total == 0:
        raise DataError(f"{index_path}: its shards "
                        f"({', '.join(s['file'] for s in index['shards'])}) "
                        f"hold no records; {redo}")


def _make_dataset(ctx, round_index, method, batch_size, seed):
    def make_dataset(skip):
        if method == "intrada":
            easy = _records(ctx, round_index, "easy", batch_size, seed)
            hard = _records(ctx, round_index, "hard", batch_size, seed + 1)
            ds = tf.data.Dataset.zip((easy, hard)).map(_intrada_batch)
        else:
            ds = _records(ctx, round_index, run_layout.RECORDS, batch_size, seed)
        return ds.skip(skip).prefetch(tf.data.AUTOTUNE)
    return make_dataset


def _intrada_batch(easy, hard):
    """IntraDA batch: easy images labelled, hard ones not; the real (not
    padded) pixels of each side feed the discriminators' AUC."""
    def real(hard_mask):
        return tf.cast(tf.not_equal(hard_mask, losses.PAD_MASK), tf.float32)
    return {"source_image": easy["image"], "source_label": easy["pseudo_label"],
            "target_image": hard["image"], "source_valid": real(easy["hard_mask"]),
            "target_valid": real(hard["hard_mask"])}


def _adapter(ctx, round_index):
    """The compiled Stage II adapter of round `round_index`."""
    config, cfg = ctx.config, ctx.config.intra
    common_kwargs = {"weight_decay": config.optim.weight_decay,
                     "head_lr_mult": config.optim.head_lr_mult,
                     "diag_every": config.run.intra_diag_every}
    with ctx.strategy.scope():
        generator = common.build_generator(config.model, config.run.seed + round_index)
        if cfg.init == "inter":
            previous = common.load_generator(run_layout.model_for_round(
                config, ctx.run_dir, round_index))
            common.copy_generator_weights(previous, generator)
        d_main, d_aux = (None, None)
        if cfg.method != "none":
            d_main, d_aux = common.build_discriminators(
                config.model, config.run.seed + round_index, True, cfg.d_output_stride)
        if cfg.method == "intrada":
            adapter = InterDomainAdapter(
                generator, d_main, d_aux, variant="advent", lambda_seg_aux=cfg.lambda_seg_aux,
                lambda_adv_main=cfg.beta_main, lambda_adv_aux=cfg.beta_aux, **common_kwargs)
        else:
            adapter = PixelIntraAdapter(
                generator, d_main, d_aux, method=cfg.method, lambda_seg_aux=cfg.lambda_seg_aux,
                beta_main=cfg.beta_main, beta_aux=cfg.beta_aux,
                kld_lambda=cfg.kld_lambda if round_index >= 2 else 0.0, **common_kwargs)
        common.compile_adapter(adapter, config, cfg.lr_g, cfg.schedule_steps or cfg.steps,
                               cfg.lr_d)
    return adapter


def run(ctx, round_index):
    """Runs Stage II round `round_index`; returns its metrics."""
    name = run_layout.stage_dir_name("intra", round_index)
    cfg = ctx.config.intra
    return common.train_evaluate_finish(
        ctx, name, functools.partial(_adapter, ctx, round_index),
        _make_dataset(ctx, round_index, cfg.method, cfg.batch_size,
                      ctx.config.run.seed + 10 * round_index), cfg.steps,
        {"stage": name, "method": cfg.method, "round": round_index,
         "kld": round_index >= 2 and cfg.method != "intrada"})
