"""The `export` stage: SavedModel (TF Serving layout) and TFLite variants."""

from tf_pixintra import export
from tf_pixintra import io_utils
from tf_pixintra import run_layout
from tf_pixintra.data import datasets
from tf_pixintra.stages import common
from tf_pixintra.stages import eval_stage
from tf_pixintra.stages import peers


def representative(ctx, count):
    """`count` target training images spread over the set (int8 calibration),
    the same selection as the export CLI's (`export.spread`); none when
    count <= 0."""
    if count <= 0:
        return []
    return [datasets.read_image(e.image_path)
            for e in export.spread(list(ctx.sources.target_train), count)]


def run(ctx, name="export"):
    """Exports the newest model under <run_dir>/export.

    Multi-worker: the chief exports it; the other workers wait for its result.
    """
    stage_dir = ctx.stage_dir(name)
    done = run_layout.completed(stage_dir)
    if done is not None:
        return done
    if not ctx.is_chief:
        return peers.chief_result(ctx, stage_dir)
    run = ctx.config.run
    model_path = eval_stage.newest_model(ctx)
    paths = export.export_model(
        common.load_generator(model_path), stage_dir, model_name=run.export_name,
        version=run.export_version, input_size=tuple(ctx.config.data.target_size),
        representative_images=representative(ctx, run.num_representative),
        variants=tuple(run.export_tflite))
    metrics = {"stage": name,
               "model": io_utils.relpath(model_path, ctx.run_dir),
               "saved_model": io_utils.relpath(paths["saved_model"], ctx.run_dir),
               "tflite": {k: io_utils.relpath(v, ctx.run_dir)
                          for k, v in paths["tflite"].items()}}
    return common.finish(ctx, stage_dir, metrics)
