"""What every stage needs: its directory, the models, saving and evaluation."""

import dataclasses

import keras
import tensorflow as tf
from absl import logging

from tf_pixintra import evaluate
from tf_pixintra import inference
from tf_pixintra import io_utils
from tf_pixintra import models
from tf_pixintra import run_layout
from tf_pixintra import torch_reader
from tf_pixintra.adapters import optimizers as opt_lib
from tf_pixintra.config import Config
from tf_pixintra.errors import DataError
from tf_pixintra.models import torch_weights
from tf_pixintra.stages import peers
from tf_pixintra.stages import summaries
from tf_pixintra.stages import training
from tf_pixintra.stages.sources import Sources


@dataclasses.dataclass
class Context:
    """One run: its config, directory, strategy (None in tests that train
    nothing) and data. `num_workers` > 1 under --strategy=multi_worker
    (`peers`); `task_index` 0 is the chief."""
    config: Config
    run_dir: str
    strategy: tf.distribute.Strategy | None
    sources: Sources | None
    is_chief: bool = True
    task_index: int = 0
    num_workers: int = 1

    def stage_dir(self, name):
        path = io_utils.join(self.run_dir, name)
        io_utils.makedirs(path)
        return path


def finish(ctx, stage_dir, metrics, model_path=None):
    """Writes metrics.json last (it marks the stage complete) and run.json."""
    if not ctx.is_chief:
        return metrics
    io_utils.write_json(io_utils.join(stage_dir, run_layout.METRICS_FILE), metrics)
    if model_path is not None:
        run_file = io_utils.join(ctx.run_dir, run_layout.RUN_FILE)
        run = io_utils.read_json(run_file) if io_utils.exists(run_file) else {}
        run["model"] = io_utils.relpath(model_path, ctx.run_dir)
        run["eval_size"] = list(ctx.config.data.eval_size)
        run["input_size"] = list(ctx.config.data.target_size)
        io_utils.write_json(run_file, run)
    return metrics


def run_on_newest_model(ctx, name, work):
    """A stage of the newest model (run.json's), done by the chief: runs
    `work(ctx, stage_dir, model_path, model path relative to the run dir)`
    and finishes with its metrics; other workers wait for the chief's."""
    stage_dir = ctx.stage_dir(name)
    done = run_layout.completed(stage_dir)
    if done is not None:
        return done
    if not ctx.is_chief:
        return peers.chief_result(ctx, stage_dir)
    model_path = inference.resolve_model_path(ctx.run_dir)
    model = io_utils.relpath(model_path, ctx.run_dir)
    return finish(ctx, stage_dir, {"stage": name, "model": model,
                                   **work(ctx, stage_dir, model_path, model)})


def build_generator(model_cfg, seed, name="generator"):
    """The multi-level DeepLab-v2 of the config (ImageNet backbone if given)."""
    generator = models.build_deeplab_v2(
        model_cfg.num_classes, depth=model_cfg.depth, width=model_cfg.width,
        multi_level=model_cfg.multi_level, bn_mode=model_cfg.bn_mode, seed=seed, name=name)
    if model_cfg.backbone_weights:
        _load_backbone(generator, model_cfg)
    return generator


def _load_backbone(generator, model_cfg):
    """Keras ResNet weights, or a PyTorch DeepLab init (.pth): as the
    reference code bases do, the init's first key part (`Scale.`) and its
    classifier `layer5` are dropped (valeoai/ADVENT, advent/scripts/train.py;
    wasidennis/AdaptSegNet, train_gta2cityscapes_multi.py; liyunsheng13/BDL,
    model/deeplab.py). The heads stay fresh."""
    path = model_cfg.backbone_weights
    if path.endswith((".pth", ".pt")):
        summary = torch_weights.load_torch_state(
            generator, torch_reader.read_state_dict(path), "backbone", source=path)
        logging.info("backbone weights from %s: %d tensors, skipped %s", path,
                     summary["tensors"], summary["skipped"])
        return
    builder = {50: keras.applications.ResNet50, 101: keras.applications.ResNet101}[model_cfg.depth]
    summary = models.load_keras_resnet_weights(generator, builder(include_top=False, weights=path))
    logging.info("backbone weights from %s: %s", path, summary)


def copy_generator_weights(source, target):
    """Copies `source`'s weights into `target` layer by layer, by name; a
    single-level `source` leaves a multi-level `target`'s aux head as
    initialised. Any other difference raises DataError naming the layer."""
    target_layers = {layer.name: layer for layer in target.layers}
    copied = 0
    for layer in source.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        other = target_layers.get(layer.name)
        if other is None:
            raise DataError(f"model {source.name!r}: layer {layer.name!r} has "
                            f"no counterpart in {target.name!r}")
        shapes = [w.shape for w in weights]
        if [tuple(w.shape) for w in other.get_weights()] != shapes:
            raise DataError(
                f"model {source.name!r}: layer {layer.name!r} weights {shapes}"
                f" do not fit {target.name!r} (check --num_classes, --depth, --width)")
        other.set_weights(weights)
        copied += 1
    left = [n for n, layer in target_layers.items() if layer.get_weights()
            and n not in {layer.name for layer in source.layers}]
    if left:
        logging.info("layers kept as initialised (not in %s): %s", source.name, left)
    return copied


def build_discriminators(model_cfg, seed, pixel_level, output_stride=32):
    """(D_main, D_aux); D_aux is None for a single-level generator."""
    def build(name, seed_offset):
        return models.build_discriminator(
            model_cfg.num_classes, ndf=model_cfg.ndf, pixel_level=pixel_level,
            seed=None if seed is None else seed + seed_offset, name=name,
            output_stride=output_stride)
    return (build("d_main", 101), build("d_aux", 202) if model_cfg.multi_level else None)


def compile_adapter(adapter, config, base_lr, decay_steps, lr_d=None):
    """SGD for G and Adam for each D (at `lr_d`, default --lr_d)."""
    optim, precision = config.optim, config.run.mixed_precision
    lr_d = lr_d or optim.lr_d
    adapter.compile(
        opt_lib.generator_optimizer(base_lr, decay_steps, optim, precision),
        opt_lib.discriminator_optimizer(lr_d, decay_steps, optim, precision, "adam_d_main"),
        opt_lib.discriminator_optimizer(lr_d, decay_steps, optim, precision, "adam_d_aux"),
        jit_compile=config.run.jit_compile)


def save_generator(generator, stage_dir):
    """Saves G as <stage_dir>/model.keras (temporary name, then renamed)."""
    path = io_utils.join(stage_dir, run_layout.MODEL_FILE)
    tmp = io_utils.join(stage_dir, ".partial." + run_layout.MODEL_FILE)
    generator.save(tmp)   # Keras writes a scheme:// path through tf.io.gfile
    io_utils.rename(tmp, path)
    return path


def load_generator(path):
    """Loads a generator saved by `save_generator`."""
    if not io_utils.exists(path):
        raise FileNotFoundError(f"{path}: no model; run the stage that writes it first")
    return inference.load_keras_file(path, redo_advice(io_utils.parent(path)))


def redo_advice(stage_dir):
    """How to make a training stage write its model.keras and metrics again."""
    metrics = io_utils.join(stage_dir, run_layout.METRICS_FILE)
    if io_utils.isdir(io_utils.join(stage_dir, run_layout.CHECKPOINT_DIR)):
        return (f"To recover, delete it and {metrics}, then run the same "
                "command: the stage restores its last checkpoint and saves the model again")
    return f"To recover, delete {stage_dir} and run the same command: the stage trains again"


def evaluate_target(ctx, generator, scales=(1.0,), flip=False):
    """Target-val mIoU (19 classes) of `generator`, or None without labels."""
    if not ctx.sources.target_val:
        return None
    return evaluate.evaluate_model(
        generator, list(ctx.sources.target_val), "cityscapes",
        size=tuple(ctx.config.data.eval_size), scales=tuple(scales), flip=flip, classes=19)


def train_evaluate_finish(ctx, name, make_adapter, make_dataset, steps, metrics):
    """Training stage `name`: its metrics if finished, else trains the
    adapter `make_adapter()` builds (resuming), saves G, scores it and writes
    metrics.json: `metrics` plus the final logs, evaluations and mIoU."""
    stage_dir = ctx.stage_dir(name)
    done = run_layout.completed(stage_dir)
    if done is not None:
        return done
    adapter = make_adapter()
    config, generator = ctx.config, adapter.generator
    board = summaries.summary_board(
        io_utils.join(stage_dir, "tb"), generator,
        ctx.sources.target_val or ctx.sources.target_train,
        config.data.eval_size, config.run, steps) if ctx.is_chief else None

    def periodic_eval(step):
        result = evaluate_target(ctx, generator)
        if board is not None:
            board.write_evaluation(step, result)
        return result
    logs, history = training.fit(
        adapter, make_dataset, steps, io_utils.join(stage_dir, run_layout.CHECKPOINT_DIR),
        checkpoint_every=config.run.checkpoint_every,
        eval_fn=periodic_eval if ctx.sources.target_val else None,
        eval_every=config.run.eval_every, verbose=config.run.verbose,
        # Last: resets the loss trackers after the others read the logs.
        callbacks=[*([board] if board is not None else []),
                   summaries.IntervalMeans(config.run.log_every, steps)],
        stop_grace_s=config.run.stop_grace_secs)
    # Every multi-worker task holds the same weights: only the chief writes.
    model_path = (save_generator(generator, stage_dir) if ctx.is_chief
                  else io_utils.join(stage_dir, run_layout.MODEL_FILE))
    result = evaluate_target(ctx, generator)
    if board is not None and result is not None and not (
            history and history[-1]["step"] == steps):  # else written already
        board.write_evaluation(steps, result)
    metrics = {**metrics, "steps": steps, "final_logs": logs, "eval_history": history}
    if result is not None:
        metrics.update(target_miou=result["miou"], target_iou=result["iou"])
    return finish(ctx, stage_dir, metrics, model_path)
