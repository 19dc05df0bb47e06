"""The `eval` stage: the newest model on target val, multi-scale and flip as set."""

from absl import logging

from tf_pixintra import io_utils
from tf_pixintra import tables
from tf_pixintra.stages import common


def run(ctx, name="eval"):
    """Scores the newest model (chief only); metrics and a per-class table."""
    return common.run_on_newest_model(ctx, name, _score)


def _score(ctx, stage_dir, model_path, model_name):
    data = ctx.config.data
    logging.info("eval: scoring %s on target val", model_path)
    metrics = {"scales": list(data.eval_scales), "flip": data.eval_flip}
    result = common.evaluate_target(ctx, common.load_generator(model_path),
                                    scales=data.eval_scales, flip=data.eval_flip)
    if result is not None:
        metrics.update(target_miou=result["miou"], target_iou=result["iou"],
                       num_images=result["num_images"])
        table = tables.per_class_table([(model_name, result["iou"])], 19)
        io_utils.write_text(io_utils.join(stage_dir, "per_class.md"), table + "\n")
    return metrics
