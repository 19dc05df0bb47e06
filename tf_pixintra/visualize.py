"""A picture comparing the trained stages of a run directory (Pillow only).

    python -m tf_pixintra.visualize --run_dir DIR --out FILE.png [--num_images N]

Top: a row per target-val image (the first N): image | ground truth | the
prediction of every trained stage (with model.keras and metrics.json), in the
Cityscapes palette (ignore: black). Bottom: each stage's per-class IoU on
target val (metrics.json `target_iou`) as grouped bars, its mIoU in the legend.
"""

import dataclasses

import numpy as np
from absl import app, flags
from PIL import Image, ImageDraw, ImageFont

from tf_pixintra import config as config_lib
from tf_pixintra import io_utils, previews, run_layout
from tf_pixintra.data import datasets
from tf_pixintra.data.labels import CLASS_NAMES, colorize
from tf_pixintra.errors import ConfigError, DataError, absl_main
from tf_pixintra.stages import sources

STAGES = ("source_only", "inter", "intra_r1", "intra_r2")
STAGE_COLORS = {"source_only": (140, 140, 140), "inter": (66, 133, 244),
                "intra_r1": (244, 160, 0), "intra_r2": (52, 168, 83)}
CHART_HEIGHT = 150      # pixels of the bar area (IoU 0..100)
LABEL_HEIGHT = 70       # pixels under the bars for the class names
CHART_TOP, CHART_LEFT = 24, 34   # pixels above and left of the bar area
WHITE, GRID, TEXT = (255, 255, 255), (215, 215, 215), (20, 20, 20)


def trained_stages(run_dir):
    """[(stage, model path, metrics)] of the stages that finished training."""
    out = []
    for stage in STAGES:
        stage_dir = io_utils.join(run_dir, stage)
        model = io_utils.join(stage_dir, run_layout.MODEL_FILE)
        metrics = run_layout.completed(stage_dir)
        if metrics is not None and io_utils.isfile(model):
            out.append((stage, model, metrics))
    return out


def data_config(run_dir):
    """The DataConfig of the run (from its config.json)."""
    path = io_utils.join(run_dir, run_layout.CONFIG_FILE)
    if not io_utils.isfile(path):
        raise ConfigError(f"--run_dir={run_dir!r}: no config.json; not a run "
                          "directory of tf_pixintra.train")
    saved = io_utils.read_json(path).get("data", {})
    names = {field.name for field in dataclasses.fields(config_lib.DataConfig)}
    return config_lib.DataConfig(**{k: tuple(v) if isinstance(v, list) else v
                                    for k, v in saved.items() if k in names})


def prediction_rows(stages, examples, eval_size):
    """[[image, ground truth, prediction per stage] as RGB arrays] per image."""
    # Lazy: TensorFlow loads only to predict; --help and the errors about
    # the run directory need Pillow alone.
    from tf_pixintra import inference  # pylint: disable=import-outside-toplevel
    rows = []
    for example in examples:
        image, label = datasets.read_example(example, "cityscapes")
        rows.append([np.asarray(image), colorize(label)])
    for _, model_path, _ in stages:
        model = inference.load_model(model_path)
        for row in rows:
            row.append(colorize(inference.predict_labels(
                    model, row[0], size=eval_size, output_size=row[0].shape[:2])))
    return rows


def _vertical_text(text, font):
    """An RGBA image of `text` rotated to read bottom-up."""
    left, top, right, bottom = font.getbbox(text)
    tile = Image.new("RGBA", (right - left + 2, bottom - top + 2), (0, 0, 0, 0))
    ImageDraw.Draw(tile).text((1 - left, 1 - top), text, fill=TEXT, font=font)
    return tile.rotate(90, expand=True)


def bar_box(class_index, stage_index, num_stages, width, iou):
    """[x0, y0, x1, y1] (inclusive) of one IoU bar in the chart."""
    slot = (width - 6 - CHART_LEFT) / len(CLASS_NAMES)
    bar = max(1, int((slot - 4) / max(1, num_stages)))
    x = int(CHART_LEFT + class_index * slot + 2 + stage_index * bar)
    h = int(round(max(0.0, min(100.0, iou)) * CHART_HEIGHT / 100))
    bottom = CHART_TOP + CHART_HEIGHT
    return [x, bottom - h, x + bar - 1, bottom]


def iou_chart(stages, width):
    """Grouped per-class IoU bars (one colour per stage) with a legend."""
    font = ImageFont.load_default()
    chart = Image.new("RGB", (width, CHART_TOP + CHART_HEIGHT + LABEL_HEIGHT), WHITE)
    draw = ImageDraw.Draw(chart)
    x = 40
    draw.text((2, 2), "IoU %", fill=TEXT, font=font)
    for stage, _, metrics in stages:
        miou = metrics.get("target_miou")
        label = f"{stage} mIoU {miou:.1f}" if miou is not None else stage
        draw.rectangle([x, 3, x + 10, 13], fill=STAGE_COLORS[stage])
        draw.text((x + 14, 2), label, fill=TEXT, font=font)
        x += 22 + int(draw.textlength(label, font=font))
    for level in range(0, 101, 25):
        y = CHART_TOP + CHART_HEIGHT - level * CHART_HEIGHT // 100
        draw.line([CHART_LEFT, y, width - 6, y], fill=GRID)
        draw.text((2, y - 6), f"{level:3d}", fill=TEXT, font=font)
    slot = (width - 6 - CHART_LEFT) / len(CLASS_NAMES)
    for k, name in enumerate(CLASS_NAMES):
        for j, (stage, _, metrics) in enumerate(stages):
            iou = (metrics.get("target_iou") or {}).get(name)
            if iou is not None:   # None: class absent from prediction and truth
                draw.rectangle(bar_box(k, j, len(stages), width, iou), fill=STAGE_COLORS[stage])
        label = _vertical_text(name, font)
        chart.paste(label, (int(CHART_LEFT + k * slot + 2 + (slot - 4) / 2 - label.width / 2),
                            CHART_TOP + CHART_HEIGHT + 4), label)
    return chart


def comparison(run_dir, num_images=4):
    """The comparison picture of `run_dir` (PIL image). ConfigError for a run directory without
    config.json or a trained stage, DataError when the target has no labelled val images."""
    if not io_utils.isdir(run_dir):
        raise ConfigError(f"--run_dir={run_dir!r}: no such directory")
    data = data_config(run_dir)
    stages = trained_stages(run_dir)
    if not stages:
        raise ConfigError(f"--run_dir={run_dir!r}: no trained stage (none of "
                          f"{', '.join(STAGES)} has model.keras and metrics.json)")
    examples = list(sources.resolve(data, need_source=False).target_val)
    if not examples:
        raise DataError(f"{run_dir}: the target has no labelled val images "
                        f"(split {data.target_val_split!r})")
    rows = prediction_rows(stages, examples[:num_images], data.eval_size)
    titles = ["image", "ground truth"] + [s for s, _, _ in stages]
    pictures = [previews.row_image(row, titles if i == 0 else [""] * len(row))
                for i, row in enumerate(rows)]
    width = max(p.width for p in pictures)
    chart = iou_chart(stages, max(width, 520))
    canvas = Image.new("RGB", (max(width, chart.width), sum(
        p.height for p in pictures) + chart.height), previews.BACKGROUND)
    y = 0
    for picture in pictures + [chart]:
        canvas.paste(picture, (0, y))
        y += picture.height
    return canvas


def write_comparison(run_dir, out, num_images=4):
    """Writes the picture to `out` atomically; returns `out`."""
    previews.save_png(comparison(run_dir, num_images), out)
    return out


FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("run_dir", None, "Run directory of tf_pixintra.train (holds "
                        "config.json and the stages' sub-directories).")
    flags.DEFINE_string("out", None, "Output PNG file (written atomically).")
    flags.DEFINE_integer("num_images", 4, "Target val images shown, one row each (count, >= 1).",
                         lower_bound=1)
    flags.mark_flags_as_required(["run_dir", "out"])


def _run(fv):
    print(f"wrote {write_comparison(fv.run_dir, fv.out, fv.num_images)}")


main = absl_main(_run, status=2, errors=(ConfigError, DataError, FileNotFoundError))


if __name__ == "__main__":
    define_flags()
    app.run(main)
