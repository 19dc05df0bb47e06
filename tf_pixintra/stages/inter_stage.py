"""The `source_only` and `inter` stages: Stage I on source + target images.

Stage I follows AdaptSegNet's data handling: images resized to the configured
sizes, no crop or random scaling, and no mirroring unless --inter_flip
(AdaptSegNet's GTA5 training runs without --random-mirror:
wasidennis/AdaptSegNet, README.md and train_gta2cityscapes_multi.py).
"""

import functools

import tensorflow as tf

from tf_pixintra.adapters.inter import InterDomainAdapter
from tf_pixintra.data import pipeline
from tf_pixintra.stages import common


def stage_dataset(ctx, batch_size, seed, adversarial):
    """make_dataset(skip) for Stage I: dicts of source image/label + target image."""
    data, src, tgt = ctx.config.data, ctx.sources.source, ctx.sources.target_train
    flip = ctx.config.inter.flip

    def make_dataset(skip):
        source = pipeline.source_dataset(
            [e.image_path for e in src], [e.label_path for e in src],
            label_format=ctx.sources.source_dataset, size=data.source_size,
            flip=flip, batch_size=batch_size, seed=seed)
        if adversarial:
            pairs = tf.data.Dataset.zip((source, pipeline.target_dataset(
                [e.image_path for e in tgt], size=data.target_size,
                flip=flip, batch_size=batch_size, seed=seed + 1)))
        else:   # no D: the source images stand in for the unused target side
            pairs = source.map(lambda s: (s, s))
        ds = pairs.map(lambda s, t: {"source_image": s["image"], "source_label": s["label"],
                                     "target_image": t["image"]})
        return ds.skip(skip).prefetch(tf.data.AUTOTUNE)
    return make_dataset


def build_adapter(ctx, variant, seed):
    """The compiled Stage I adapter of `variant` (in the strategy's scope)."""
    config, cfg = ctx.config, ctx.config.inter
    with ctx.strategy.scope():
        generator = common.build_generator(config.model, seed)
        d_main, d_aux = (common.build_discriminators(config.model, seed, False)
                         if variant != "source_only" else (None, None))
        adapter = InterDomainAdapter(
            generator, d_main, d_aux, variant=variant, lambda_seg_aux=cfg.lambda_seg_aux,
            lambda_adv_main=cfg.lambda_adv_main, lambda_adv_aux=cfg.lambda_adv_aux,
            weight_decay=config.optim.weight_decay, head_lr_mult=config.optim.head_lr_mult)
        common.compile_adapter(adapter, config, cfg.lr_g, cfg.schedule_steps or cfg.steps)
    return adapter


def run(ctx, name):
    """Runs Stage I (`name` = "inter") or the source-only baseline."""
    cfg, seed = ctx.config.inter, ctx.config.run.seed
    variant = "source_only" if name == "source_only" else cfg.variant
    return common.train_evaluate_finish(
        ctx, name, functools.partial(build_adapter, ctx, variant, seed),
        stage_dataset(ctx, cfg.batch_size, seed, variant != "source_only"),
        cfg.steps, {"stage": name, "variant": variant})
