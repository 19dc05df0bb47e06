"""What every stage needs: its directory, the models, saving and evaluation."""

import dataclasses
import os

import keras
from absl import logging

from tf_pixintra import io_utils
from tf_pixintra import models
from tf_pixintra.adapters import optimizers as opt_lib

METRICS_FILE = "metrics.json"
MODEL_FILE = "model.keras"
RUN_FILE = "run.json"


@dataclasses.dataclass
class Context:
    """One run: its config, directory, strategy and data."""
    config: object
    run_dir: str
    strategy: object
    sources: object
    is_chief: bool = True

    def stage_dir(self, name):
        path = os.path.join(self.run_dir, name)
        os.makedirs(path, exist_ok=True)
        return path


def completed(stage_dir):
    """The stage's metrics when it has finished, else None."""
    path = os.path.join(stage_dir, METRICS_FILE)
    return io_utils.read_json(path) if os.path.exists(path) else None


def finish(ctx, stage_dir, metrics, model_path=None):
    """Writes metrics.json last (it marks the stage complete) and run.json."""
    if not ctx.is_chief:
        return metrics
    io_utils.write_json(os.path.join(stage_dir, METRICS_FILE), metrics)
    if model_path is not None:
        run_file = os.path.join(ctx.run_dir, RUN_FILE)
        run = io_utils.read_json(run_file) if os.path.exists(run_file) else {}
        run["model"] = os.path.relpath(model_path, ctx.run_dir)
        run["eval_size"] = list(ctx.config.data.eval_size)
        run["input_size"] = list(ctx.config.data.target_size)
        io_utils.write_json(run_file, run)
    return metrics


def build_generator(model_cfg, seed, name="generator"):
    """The multi-level DeepLab-v2 of the config (ImageNet backbone if given)."""
    generator = models.build_deeplab_v2(
        model_cfg.num_classes, depth=model_cfg.depth, width=model_cfg.width,
        multi_level=model_cfg.multi_level, bn_mode=model_cfg.bn_mode, seed=seed,
        name=name)
    if model_cfg.backbone_weights:
        generator = _with_backbone_weights(generator, model_cfg)
    return generator


def _with_backbone_weights(generator, model_cfg):
    builder = {50: keras.applications.ResNet50,
               101: keras.applications.ResNet101}[model_cfg.depth]
    keras_resnet = builder(include_top=False, weights=model_cfg.backbone_weights)
    summary = models.load_keras_resnet_weights(generator, keras_resnet)
    logging.info("backbone weights from %s: %s", model_cfg.backbone_weights,
                 summary)
    return generator


def build_discriminators(model_cfg, seed, pixel_level):
    """(D_main, D_aux); D_aux is None for a single-level generator."""
    d_main = models.build_discriminator(
        model_cfg.num_classes, ndf=model_cfg.ndf, pixel_level=pixel_level,
        seed=None if seed is None else seed + 101, name="d_main")
    d_aux = None
    if model_cfg.multi_level:
        d_aux = models.build_discriminator(
            model_cfg.num_classes, ndf=model_cfg.ndf, pixel_level=pixel_level,
            seed=None if seed is None else seed + 202, name="d_aux")
    return d_main, d_aux


def compile_adapter(adapter, config, base_lr, decay_steps):
    """SGD for G and Adam for each D, built now (inside the strategy scope)."""
    precision = config.run.mixed_precision
    adapter.compile(
        opt_lib.generator_optimizer(base_lr, decay_steps, config.optim, precision),
        opt_lib.discriminator_optimizer(decay_steps, config.optim, precision,
                                        "adam_d_main"),
        opt_lib.discriminator_optimizer(decay_steps, config.optim, precision,
                                        "adam_d_aux"),
        jit_compile=config.run.jit_compile)


def save_generator(generator, stage_dir):
    """Saves G as <stage_dir>/model.keras (temporary name, then renamed)."""
    path = os.path.join(stage_dir, MODEL_FILE)
    tmp = os.path.join(stage_dir, ".partial." + MODEL_FILE)
    generator.save(tmp)
    os.replace(tmp, path)
    return path


def load_generator(path):
    """Loads a generator saved by `save_generator`."""
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path}: no model; run the stage that writes it first")
    return keras.saving.load_model(path, compile=False)


def evaluate_target(ctx, generator, scales=(1.0,), flip=False):
    """Target-val mIoU (19 classes) of `generator`, or None without labels."""
    if not ctx.sources.target_val:
        return None
    from tf_pixintra import evaluate  # pylint: disable=import-outside-toplevel
    return evaluate.evaluate_model(
        generator, list(ctx.sources.target_val), "cityscapes",
        size=tuple(ctx.config.data.eval_size), scales=tuple(scales), flip=flip,
        classes=19)


def train_evaluate_finish(ctx, stage_dir, adapter, make_dataset, steps, metrics):
    """Trains `adapter` (resuming), saves G, scores it, writes metrics.json.

    `metrics` holds the stage's own fields; the final logs, the periodic
    evaluations and the target-val mIoU are added here.
    """
    from tf_pixintra.stages import summaries  # pylint: disable=import-outside-toplevel
    from tf_pixintra.stages import training  # pylint: disable=import-outside-toplevel
    config, generator = ctx.config, adapter.generator
    callbacks = []
    if ctx.is_chief:
        shown = ctx.sources.target_val or ctx.sources.target_train
        callbacks = summaries.summary_callbacks(
            os.path.join(stage_dir, "tb"), generator, shown,
            config.data.eval_size, config.run, steps)
    logs, history = training.fit(
        adapter, make_dataset, steps, os.path.join(stage_dir, "checkpoints"),
        checkpoint_every=config.run.checkpoint_every,
        eval_fn=lambda: evaluate_target(ctx, generator),
        eval_every=config.run.eval_every, verbose=config.run.verbose,
        callbacks=callbacks)
    # Every multi-worker task holds the same weights: only the chief writes.
    model_path = (save_generator(generator, stage_dir) if ctx.is_chief
                  else os.path.join(stage_dir, MODEL_FILE))
    result = evaluate_target(ctx, generator)
    metrics = {**metrics, "steps": steps, "final_logs": logs,
               "eval_history": history}
    if result is not None:
        metrics["target_miou"] = result["miou"]
        metrics["target_iou"] = result["iou"]
    return finish(ctx, stage_dir, metrics, model_path)
