"""The `export` stage: SavedModel (TF Serving layout) and TFLite variants."""

from tf_pixintra import export
from tf_pixintra import io_utils
from tf_pixintra.data import datasets
from tf_pixintra.stages import common


def representative(ctx, count):
    """`count` target training images spread over the set (int8
    calibration) as the export CLI picks them; none when count <= 0."""
    if count <= 0:
        return []
    return [datasets.read_image(e.image_path)
            for e in export.spread(list(ctx.sources.target_train), count)]


def run(ctx, name="export"):
    """Exports the newest model (chief only) under <run_dir>/export."""
    return common.run_on_newest_model(ctx, name, _export)


def _export(ctx, stage_dir, model_path, _):
    run = ctx.config.run
    paths = export.export_model(
        common.load_generator(model_path), stage_dir, model_name=run.export_name,
        version=run.export_version, input_size=tuple(ctx.config.data.target_size),
        representative_images=representative(ctx, run.num_representative),
        variants=tuple(run.export_tflite))
    return {"saved_model": io_utils.relpath(paths["saved_model"], ctx.run_dir),
            "tflite": {k: io_utils.relpath(v, ctx.run_dir)
                       for k, v in paths["tflite"].items()}}
