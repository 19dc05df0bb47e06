r"""Entry: score prediction PNGs, or a model, with the official Cityscapes rules.

  python -m tf_pixintra.evaluate --dataset cityscapes --root DIR --split val \
      [--classes 19|16|13] --json OUT \
      (--predictions DIR [--prediction_format labelids|trainids]
       | --model RUN_DIR_STAGE_DIR_OR_KERAS [--size 512,1024] [--scales 0.9,1.0,1.2]
         [--flip] [--write_labelids DIR] [--write_trainids DIR] [--write_color DIR])

Either way writes {"miou": %, "iou": {class name: % or null}, "num_images": N},
prints the per-class table. Scoring follows tf_pixintra.metrics; predictions
are compared at ground-truth resolution.

The prediction file of an image, as the official evaluator finds it
(cityscapesscripts, evalPixelLevelSemanticLabeling.getPrediction): the one
PNG at any depth under --predictions named <stem>*.png, <stem> being the
image file name without "_leftImg8bit.png" (Cityscapes) or without its
extension (GTA5, SYNTHIA); a name starting with two images' stems belongs to
the longer one (GTA5 "1" and "10"). --write_* writes <dir>/<city>/<stem>.png
(no <city> for GTA5 and SYNTHIA). Two images sharing a <stem> are refused.

--prediction_format labelids (default) reads Cityscapes labelIds (ids of
classes ignored in evaluation count as misses); trainids reads the 19
trainIds (255 or any other value: a miss).
"""

import math
import os

import numpy as np
from absl import app, flags
from PIL import Image

from tf_pixintra import choices
from tf_pixintra import io_utils
from tf_pixintra import progress
from tf_pixintra import tables
from tf_pixintra.data import datasets
from tf_pixintra.data.labels import (CLASS_NAMES, EVAL_SUBSETS, NUM_CLASSES, colorize,
                                     to_train_ids, train_ids_to_label_ids)
from tf_pixintra.errors import ConfigError, DataError, absl_main
from tf_pixintra.io_utils import atomic_path, read_json, write_json
from tf_pixintra.metrics import ConfusionMatrix
from tf_pixintra.run_layout import RUN_FILE

PREDICTION_FORMATS = ("labelids", "trainids")
DEFAULT_SIZE = (512, 1024)
CITYSCAPES_IMAGE_SUFFIX = "_leftImg8bit.png"
# Keys of run.json (or of its "config" entry) that may hold the eval size.
SIZE_KEYS = ("eval_size", "target_size", "size")


def prediction_stem(image_path):
    """The image file name without "_leftImg8bit.png" or its extension."""
    name = os.path.basename(image_path)
    if name.endswith(CITYSCAPES_IMAGE_SUFFIX):
        return name[:-len(CITYSCAPES_IMAGE_SUFFIX)]
    return os.path.splitext(name)[0]


def prediction_path(directory, image_path, dataset):
    """Where a prediction of `image_path` is written: <dir>/<city>/<stem>.png."""
    city = (os.path.basename(os.path.dirname(os.path.abspath(image_path)))
            if dataset == "cityscapes" else "")
    return os.path.join(directory, city, prediction_stem(image_path) + ".png")


def check_unique_stems(examples, what):
    """DataError naming two images that share a prediction stem."""
    seen = {}
    for example in examples:
        stem = prediction_stem(example.image_path)
        if stem in seen:
            raise DataError(f"images {seen[stem]} and {example.image_path} share the "
                            f"prediction name {stem}: {what} could not tell their files "
                            "apart; evaluate them in separate runs (--list_file)")
        seen[stem] = example.image_path
    return seen


def find_predictions(directory, examples, dataset):
    """{image path: its prediction file} under `directory` (module docstring);
    DataError for an image with no file or two, or two images sharing a stem."""
    stems = check_unique_stems(examples, "--predictions")
    found = {stem: [] for stem in stems}
    for folder, dirnames, filenames in io_utils.walk(directory):
        dirnames.sort()
        for name in sorted(filenames):
            if not name.endswith(".png"):
                continue
            # The longest image stem the name starts with (<stem>*.png).
            for end in range(len(name) - len(".png"), 0, -1):
                if name[:end] in found:
                    found[name[:end]].append(io_utils.join(folder, name))
                    break
    files = {}
    for stem, image_path in stems.items():
        matches = found[stem]
        if not matches:
            example = prediction_path(directory, image_path, dataset)
            raise DataError(f"no prediction for image {image_path}: expected one PNG named "
                            f"{stem}*.png at any depth under {directory} (e.g. {example})")
        if len(matches) > 1:
            raise DataError(f"{len(matches)} predictions for image {image_path}: "
                            f"{', '.join(matches)}; expected exactly one PNG named "
                            f"{stem}*.png under {directory}")
        files[image_path] = matches[0]
    return files


def read_prediction(path, prediction_format):
    """A prediction PNG as trainIds (int array; out-of-range values are misses)."""
    try:
        with io_utils.open_file(path, "rb") as f, Image.open(f) as img:
            ids = np.array(img)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read prediction {path}: {e}") from e
    if ids.ndim != 2:
        raise DataError(f"prediction {path} has shape {ids.shape}; expected a single-channel "
                        f"PNG of {prediction_format}")
    return to_train_ids(ids, "cityscapes") if prediction_format == "labelids" else ids


def _percent(value):
    return None if value is None or math.isnan(value) else 100.0 * value


def result_dict(confusion, classes, num_images):
    """{"miou": %, "iou": {class name: % or None}, "num_images": N}: "iou" of
    the classes of the 19/16/13 protocol, "miou" their mean with absent
    classes (None) left out, None if every class is absent."""
    class_ids = EVAL_SUBSETS[classes]
    ious = confusion.iou(class_ids)
    return {"miou": _percent(confusion.mean_iou(class_ids)),
            "iou": {CLASS_NAMES[k]: _percent(ious[k]) for k in class_ids},
            "num_images": int(num_images)}


def score_predictions(examples, dataset, predictions_dir, prediction_format="labelids",
                      classes=19):
    """Scores prediction PNGs under `predictions_dir` against the examples' labels."""
    choices.check("classes", classes, sorted(EVAL_SUBSETS))
    choices.check("prediction_format", prediction_format, PREDICTION_FORMATS)
    files = find_predictions(predictions_dir, examples, dataset)
    confusion = ConfusionMatrix(NUM_CLASSES)
    for example in progress.track(examples, "scoring predictions"):
        path = files[example.image_path]
        pred = read_prediction(path, prediction_format)
        label = datasets.read_label(example.label_path, dataset)
        if pred.shape != label.shape:
            raise DataError(f"prediction {path} is {pred.shape[1]}x{pred.shape[0]} "
                            f"but ground truth {example.label_path} is {label.shape[1]}x"
                            f"{label.shape[0]} (WxH); expected equal sizes")
        confusion.update(pred, label)
    return result_dict(confusion, classes, len(examples))


def write_png(path, array):
    """Writes a uint8 array ([H,W] or [H,W,3]) as PNG, atomically."""
    with atomic_path(path) as tmp, io_utils.open_file(tmp, "wb") as f:
        Image.fromarray(np.asarray(array, np.uint8)).save(f, format="PNG")


def evaluate_model(model, examples, dataset, size=DEFAULT_SIZE, scales=(1.0,),
                   flip=False, classes=19, write_labelids=None, write_trainids=None,
                   write_color=None):
    """Predicts every example with `model` (input `size` (h, w) times each scale,
    with `flip` also mirrored; labels at the image's size) and scores it;
    returns the result dict. Examples whose label_path is None are only
    predicted (and written), not counted in "num_images". write_*:
    directories for Cityscapes label-id, trainId and colour PNGs.
    """
    choices.check("classes", classes, sorted(EVAL_SUBSETS))
    writes = ((write_labelids, train_ids_to_label_ids), (write_trainids, np.asarray),
              (write_color, colorize))
    if any(directory for directory, _ in writes):
        check_unique_stems(examples, "--write_*")
    # Lazy: scoring prediction PNGs (the other path) needs no TensorFlow.
    from tf_pixintra import inference  # pylint: disable=import-outside-toplevel
    predict_fn = inference.make_predict_fn(model, size, scales, flip)
    confusion = ConfusionMatrix(NUM_CLASSES)
    num_scored = 0
    for example in progress.track(examples, "evaluation"):
        # read_example refuses a label whose size differs from its image's.
        image, label = datasets.read_example(example, dataset)
        pred = inference.predict_labels(model, image, output_size=image.shape[:2],
                                        predict_fn=predict_fn)
        for directory, to_png in writes:
            if directory:
                write_png(prediction_path(directory, example.image_path, dataset), to_png(pred))
        if label is not None:
            confusion.update(pred, label)
            num_scored += 1
    return result_dict(confusion, classes, num_scored)


def parse_size(text):
    """"H,W" -> (H, W) positive ints."""
    try:
        h, w = (int(v) for v in str(text).split(","))
    except ValueError:
        raise ConfigError(f"size {text!r} is not 'H,W'; expected two integers, "
                          "e.g. 512,1024") from None
    if h <= 0 or w <= 0:
        raise ConfigError(f"size {text!r} must be positive")
    return h, w


def parse_scales(text):
    """"0.9,1.0,1.2" -> (0.9, 1.0, 1.2) positive floats."""
    try:
        scales = tuple(float(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"scales {text!r} is not a comma-separated list of numbers, e.g. "
                          "0.9,1.0,1.2") from None
    if not scales or min(scales) <= 0:
        raise ConfigError(f"scales {text!r}: expected one or more positive numbers")
    return scales


def _size_from(mapping):
    if not isinstance(mapping, dict):
        return None
    for key in SIZE_KEYS:
        if mapping.get(key):
            value = mapping[key]
            return parse_size(value if isinstance(value, str)
                              else ",".join(str(v) for v in value))
    return _size_from(mapping.get("config"))


def default_size(model_path):
    """Eval size (h, w) from the run.json of the model's run, else 512x1024:
    run.json in the given directory, beside the model file or one directory
    up; the first of SIZE_KEYS ([h, w] or "h,w"), at top level or in "config".
    """
    path = io_utils.absolute(model_path)
    base = path if io_utils.isdir(path) else io_utils.parent(path)
    for directory in (base, io_utils.parent(base)):
        run_file = io_utils.join(directory, RUN_FILE)
        if io_utils.isfile(run_file):
            size = _size_from(read_json(run_file))
            if size:
                return size
    return DEFAULT_SIZE


def define_flags(flag_values=flags.FLAGS):
    """Defines this entry's flags on `flag_values`."""
    flags.DEFINE_enum("dataset", "cityscapes", choices.DATASETS, "Data set layout of --root.",
                      flag_values=flag_values)
    flags.DEFINE_enum("prediction_format", "labelids", PREDICTION_FORMATS,
                      "Ids in the prediction PNGs.", flag_values=flag_values)
    flags.DEFINE_enum("classes", "19", ("19", "16", "13"), "Classes averaged in mIoU (16/13: "
                      "SYNTHIA protocols).", flag_values=flag_values)
    flags.DEFINE_bool("flip", False, "Average with the mirrored prediction.",
                      flag_values=flag_values)
    for name, default, text in (
            ("root", None, "Data set root directory."),
            ("split", "val", "Split to evaluate."),
            ("list_file", None, "Optional file listing the images."),
            ("predictions", None, "Directory of prediction PNGs to score."),
            ("json", None, "Where to write the result JSON."),
            ("model", None, "A .keras file, stage directory or run directory to "
             "predict with (instead of --predictions)."),
            ("size", None, "Model input H,W at scale 1 (default: run.json, else "
             "512,1024)."),
            ("scales", "1.0", "Comma-separated test scales, e.g. 0.9,1.0,1.2."),
            ("write_labelids", None, "Write Cityscapes label-id PNGs here."),
            ("write_trainids", None, "Write trainId PNGs here."),
            ("write_color", None, "Write colour PNGs here.")):
        flags.DEFINE_string(name, default, text, flag_values=flag_values)


def run(flag_values):
    """Runs the evaluation the parsed flags describe; returns the result dict."""
    fv = flag_values
    if not fv.root:
        raise ConfigError("--root is required: the data set root directory")
    if bool(fv.predictions) == bool(fv.model):
        raise ConfigError("give exactly one of --predictions (a directory of PNGs) and --model "
                          "(a .keras file or run directory)")
    writes = (fv.write_labelids, fv.write_trainids, fv.write_color)
    if fv.predictions and any(writes):
        raise ConfigError("--write_labelids/--write_trainids/--write_color need --model")
    classes = int(fv.classes)
    if fv.predictions:
        if not io_utils.isdir(fv.predictions):
            raise ConfigError(f"--predictions {fv.predictions} is not a directory")
        examples = datasets.list_examples(fv.dataset, fv.root, fv.split, fv.list_file)
        result = score_predictions(examples, fv.dataset, fv.predictions, fv.prediction_format,
                                   classes)
    else:
        from tf_pixintra.inference import load_model  # lazy, as in evaluate_model
        model = load_model(fv.model)
        size = parse_size(fv.size) if fv.size else default_size(fv.model)
        examples = datasets.list_examples(fv.dataset, fv.root, fv.split, fv.list_file,
                                          require_labels=not any(writes))
        result = evaluate_model(model, examples, fv.dataset, size, parse_scales(fv.scales),
                                fv.flip, classes, *writes)
    method = os.path.basename(os.path.normpath(fv.predictions or fv.model))
    print(tables.per_class_table([(method, result["iou"])], classes))
    miou = result["miou"]
    print(f"mIoU ({classes} classes, {result['num_images']} images): "
          + ("n/a" if miou is None else f"{miou:.2f}"))
    if fv.json:
        write_json(fv.json, result)
    return result


def cli(argv):
    """Parses `argv` (argv[0] is the program name) on fresh flags and runs."""
    fv = flags.FlagValues()
    define_flags(fv)
    fv(argv)
    return run(fv)


# absl entry point; a bad file or setting is exit status 1.
main = absl_main(run, status=1)


if __name__ == "__main__":
    define_flags()
    app.run(main)
