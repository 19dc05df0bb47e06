"""The `eval` stage: the newest model on target val, multi-scale and flip as set."""

from absl import logging

from tf_pixintra import inference
from tf_pixintra import io_utils
from tf_pixintra import run_layout
from tf_pixintra import tables
from tf_pixintra.stages import common
from tf_pixintra.stages import peers


def newest_model(ctx):
    """Path of the model run.json names (the newest trained generator)."""
    return inference.resolve_model_path(ctx.run_dir)


def run(ctx, name="eval"):
    """Scores the newest model; writes metrics.json and a per-class table.

    Multi-worker: the chief scores it; the other workers wait for its result.
    """
    stage_dir = ctx.stage_dir(name)
    done = run_layout.completed(stage_dir)
    if done is not None:
        return done
    if not ctx.is_chief:
        return peers.chief_result(ctx, stage_dir)
    data = ctx.config.data
    model_path = newest_model(ctx)
    logging.info("eval: scoring %s on target val", model_path)
    metrics = {"stage": name, "model": io_utils.relpath(model_path, ctx.run_dir),
               "scales": list(data.eval_scales), "flip": data.eval_flip}
    result = common.evaluate_target(ctx, common.load_generator(model_path),
                                    scales=data.eval_scales, flip=data.eval_flip)
    if result is not None:
        metrics.update(target_miou=result["miou"], target_iou=result["iou"],
                       num_images=result["num_images"])
        table = tables.per_class_table([(metrics["model"], result["iou"])], 19)
        io_utils.write_text(io_utils.join(stage_dir, "per_class.md"), table + "\n")
    return common.finish(ctx, stage_dir, metrics)
