"""Entry: export a segmentation model for TF Serving and for the edge.

    python -m tf_pixintra.export --model RUN_DIR_OR_MODEL_KERAS --out DIR \\
        --input_size 512,1024 --representative_dir TARGET_TRAIN_IMAGES \\
        [--measure_on_val ROOT]

writes, under DIR:
    saved_model/<model_name>/<version>/   TF Serving layout (SavedModel with
        signatures serving_default and serve_image_bytes, and
        assets.extra/tf_serving_warmup_requests when tensorflow-serving-api
        is installed)
    tflite/<model_name>_{fp32,fp16,int8}.tflite   builtin ops only
    labels.json   class names, trainIds, Cityscapes label ids, palette,
        input size, preprocessing and signature descriptions
    fidelity.json (with --measure_on_val) agreement / mIoU / size / latency

The trainer's export stage calls `export_model`; the deployment kit is in export/.
"""

import glob
import os
import re

import numpy as np
from absl import app
from absl import flags
from absl import logging
from PIL import Image

from tf_pixintra import choices
from tf_pixintra import io_utils
from tf_pixintra.data import datasets
from tf_pixintra.data import labels as label_tables
from tf_pixintra.errors import ConfigError, DataError, absl_main
from tf_pixintra.evaluate import parse_size
from tf_pixintra.export_contract import (MAX_INPUT_PIXELS, MODEL_NAME,
                                         SERVING_MAX_PIXELS)
from tf_pixintra.export_savedmodel import (
        IMAGE_BYTES_KEY, IMAGES_KEY, SERVE_IMAGE_BYTES, SERVING_DEFAULT,
        write_saved_model, write_tflite_source)
from tf_pixintra.export_tflite import (
        TFLiteConversionError, convert, format_fidelity, measure_fidelity,
        resize_uint8)
from tf_pixintra.inference import load_model, predict_logits
from tf_pixintra.io_utils import write_bytes, write_json

__all__ = ["export_model", "measure_fidelity", "load_model",
           "TFLiteConversionError"]

PREPROCESSING = ("inside the graph: uint8 RGB -> float32, RGB->BGR, minus the Caffe ImageNet "
                 "mean (104.00698793, 116.66876762, 122.67891434) in BGR order, no std "
                 "scaling; send plain RGB images")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
    """Declares the CLI flags (only when run as a program, never on import)."""
    for define, name, default, text in (
            (flags.DEFINE_string, "model", None, "Run directory (its run.json names the "
             "newest model), stage directory with model.keras, or a .keras file."),
            (flags.DEFINE_string, "out", None, "Output directory."),
            (flags.DEFINE_string, "model_name", MODEL_NAME,
             "TF Serving model name and TFLite file prefix."),
            (flags.DEFINE_integer, "version", 1, "TF Serving model version (positive)."),
            (flags.DEFINE_string, "input_size", "512,1024", "Model input size H,W."),
            (flags.DEFINE_list, "variants", list(choices.TFLITE_VARIANTS),
             "TFLite variants to write (subset of fp32,fp16,int8; empty for none)."),
            (flags.DEFINE_string, "representative_dir", None, "Folder (searched "
             "recursively) of target training images for int8 calibration."),
            (flags.DEFINE_integer, "num_representative", 100,
             "Calibration images taken evenly from --representative_dir."),
            (flags.DEFINE_bool, "warmup", True,
             "Write the TF Serving warmup requests (needs tensorflow-serving-api)."),
            (flags.DEFINE_string, "measure_on_val", None, "Data root for the fidelity "
             "check: Cityscapes layout (leftImg8bit/<split>, gtFine/<split> labelIds) "
             "or images/ (png, jpg, jpeg, bmp) + labels/*.png (trainId PNGs with the "
             "same file stems)."),
            (flags.DEFINE_string, "measure_split", "val", "Split for the Cityscapes layout."),
            (flags.DEFINE_integer, "measure_limit", 50,
             "Images for the fidelity check (0 = all)."),
            (flags.DEFINE_string, "measure_json", None,
             "Fidelity JSON (default <out>/fidelity.json)."),
            (flags.DEFINE_integer, "num_threads", None,
             "LiteRT threads for the latency measurement (default: LiteRT's).")):
        define(name, default, text, flag_values=flag_values)
    for name, default, text in (
            ("max_input_pixels", MAX_INPUT_PIXELS, "Refuse an image of "
             "--representative_dir or --measure_on_val above this many pixels (width x "
             "height, read from the file header before decoding)."),
            ("serving_max_pixels", SERVING_MAX_PIXELS, "Cap of the SavedModel's "
             "serve_image_bytes signature on one image's decoded size in pixels (width x "
             "height, from the header; larger images get InvalidArgument before "
             "decoding).")):
        flags.DEFINE_integer(name, default, text, lower_bound=1, flag_values=flag_values)


# ---------------------------------------------------------------- images
def check_image_size(path, max_pixels, flag="--max_input_pixels"):
    """(width, height) from the file's header (nothing is decoded); DataError
    naming the file when that is > max_pixels pixels or unreadable."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # our own limit replaces Pillow's bomb check here
    try:
        with Image.open(path) as image:
            width, height = image.size
    except OSError as err:
        raise DataError(f"cannot read image {path}: {err}; expected a PNG/JPEG/BMP "
                        "image") from err
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    if width * height > max_pixels:
        raise DataError(f"image {path} is {width}x{height} (WxH) = {width * height / 1e6:.1f} "
                        f"megapixels, above {flag}={max_pixels}; refusing to decode it "
                        f"(shrink the image or raise {flag})")
    return width, height


def read_bounded_image(path, max_pixels=MAX_INPUT_PIXELS):
    """`datasets.read_image` (a TF decoder) after the header check against `max_pixels`."""
    check_image_size(path, max_pixels)
    return datasets.read_image(path)


def spread(items, count):
    """`count` items taken evenly from `items` (all when count <= 0): indexes
    linspace(0, n - 1, count) rounded to nearest (the CLI's and the export
    stage's int8 calibration images)."""
    if count <= 0 or len(items) <= count:
        return list(items)
    index = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[i] for i in index]


def representative_images(directory, count, input_size, max_pixels=MAX_INPUT_PIXELS):
    """Up to `count` uint8 images from `directory` (searched recursively),
    resized to `input_size`; DataError for an image above `max_pixels`."""
    pattern = os.path.join(directory, "**", "*")
    files = spread(sorted(p for p in glob.glob(pattern, recursive=True)
                          if p.lower().endswith(IMAGE_EXTENSIONS)), count)
    if not files:
        raise DataError(f"--representative_dir {directory!r} holds no "
                        f"{'/'.join(IMAGE_EXTENSIONS)} images; expected target training images")
    for path in files:  # every header first: nothing is decoded in vain
        check_image_size(path, max_pixels)
    return [resize_uint8(read_bounded_image(p, max_pixels), input_size)
            for p in files]


def evaluation_examples(root, split="val"):
    """(datasets.Example list, label layout) of a data root for the fidelity
    check: the Cityscapes layout (labelIds) when ROOT/leftImg8bit exists,
    else images/ + labels/ holding trainId PNGs (layout "trainids")."""
    if os.path.isdir(os.path.join(root, "leftImg8bit")):
        return datasets.list_examples("cityscapes", root, split), "cityscapes"
    return datasets.list_examples("trainids", root, "all"), "trainids"


# ---------------------------------------------------------------- export
def labels_metadata(num_classes, input_size, model_name, version, tflite,
                    serving_max_pixels=SERVING_MAX_PIXELS):
    """The labels.json content (see export/README.md)."""
    return {
        "model_name": model_name, "version": version, "num_classes": num_classes,
        "class_names": list(label_tables.CLASS_NAMES),
        "train_ids": list(range(num_classes)),
        "label_ids": [label_tables.TRAINID_TO_CITYSCAPES_ID[t] for t in range(num_classes)],
        "palette": [list(rgb) for rgb in label_tables.PALETTE],
        "ignore_label": label_tables.IGNORE_LABEL,
        "input_size": list(input_size),
        "input_height": input_size[0], "input_width": input_size[1],
        "input": "uint8 RGB image [N, input_height, input_width, 3]",
        "preprocessing": PREPROCESSING,
        "outputs": {
            "labels": "int32 trainIds [N, H, W] (argmax of the main head's logits "
                      "bilinearly upsampled to the input size)",
            "probabilities": "softmax [N, H, W, num_classes]; float32, uint8 with scale "
                             "1/256 in the int8 TFLite model",
        },
        "signatures": {
            SERVING_DEFAULT: {"inputs": {IMAGES_KEY: "uint8 [N,H,W,3]"},
                              "outputs": ["labels", "probabilities"]},
            SERVE_IMAGE_BYTES: {
                "inputs": {IMAGE_BYTES_KEY: "string [N] PNG/JPEG, any size"},
                "outputs": ["labels", "heights", "widths"],
                "max_pixels": int(serving_max_pixels),
                "note": "labels int32 [N, Hmax, Wmax] padded with 255; image i is "
                        "labels[i, :heights[i], :widths[i]]; an image above max_pixels "
                        "(width x height) is refused with InvalidArgument before decoding"},
        },
        "tflite": tflite,
    }


def export_model(model, out_dir, model_name=MODEL_NAME, version=1,
                 input_size=(512, 1024), representative_images=None,
                 variants=choices.TFLITE_VARIANTS, warmup=True,
                 serving_max_pixels=SERVING_MAX_PIXELS):
    """Writes the SavedModel, the TFLite variants and labels.json under `out_dir`.

    `model` follows the build_deeplab_v2 contract; `version` is a positive
    int; `input_size` (H, W) is that of serving_default and the TFLite models;
    `representative_images` are uint8 RGB arrays (any size) from the target
    training set, for int8 calibration and the warmup request; `variants` a
    subset of fp32, fp16, int8; `serving_max_pixels` caps serve_image_bytes on
    one image's decoded width x height. Returns {"saved_model": version dir,
    "tflite": {variant: path}, "labels": labels.json path}. Raises
    TFLiteConversionError when a TFLite model would need non-builtin ops.
    """
    input_size = tuple(int(v) for v in input_size)
    variants = tuple(variants)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", str(model_name)):
        raise ConfigError(f"model_name {model_name!r}; expected letters, digits, '_', '.', '-'")
    if not isinstance(version, (int, np.integer)) or version < 1:
        raise ConfigError(f"version {version!r}; expected a positive integer (TF Serving "
                          "loads numeric version directories)")
    if len(input_size) != 2 or min(input_size) < 8:
        raise ConfigError(f"input_size {input_size!r}; expected (H, W), each >= 8")
    for variant in variants:
        choices.check("variants", variant, choices.TFLITE_VARIANTS)
    outputs = getattr(model, "outputs", None)
    num_classes = int(outputs[0].shape[-1] if outputs else predict_logits(
            model, np.zeros((1, 64, 64, 3), np.float32)).shape[-1])
    if num_classes != label_tables.NUM_CLASSES:
        raise ConfigError(f"model has {num_classes} output classes; expected "
                          f"{label_tables.NUM_CLASSES} (Cityscapes trainIds)")
    if representative_images is None:
        representative_images = []
    images = [resize_uint8(image, input_size) for image in representative_images]
    if "int8" in variants and not images:
        raise ConfigError("int8 TFLite export needs representative images from the target "
                          "training set (CLI: --representative_dir), or variants without "
                          "int8; got none")
    version_dir = io_utils.join(out_dir, "saved_model", model_name, str(int(version)))
    write_saved_model(model, version_dir, model_name, input_size,
                      warmup_images=np.stack(images[:1]) if images else None,
                      warmup=warmup, max_pixels=serving_max_pixels)
    logging.info("SavedModel written to %s", version_dir)
    tflite = {}
    if variants:
        # Inside a local out_dir (hidden, .tmp): a killed export leaves it where
        # the next run's clean-up (run_lock.remove_stray_temporaries) finds it.
        with io_utils.local_scratch(out_dir, ".tflite_source.") as source:
            write_tflite_source(model, source, input_size)
            for variant in variants:
                path = io_utils.join(out_dir, "tflite", f"{model_name}_{variant}.tflite")
                write_bytes(path, convert(source, variant, images))
                tflite[variant] = path
                logging.info("TFLite %s written to %s", variant, path)
    labels_path = io_utils.join(out_dir, "labels.json")
    write_json(labels_path, labels_metadata(
            num_classes, input_size, model_name, int(version),
            {v: io_utils.relpath(p, out_dir) for v, p in tflite.items()},
            serving_max_pixels))
    return {"saved_model": version_dir, "tflite": tflite, "labels": labels_path}


def run(flag_values):
    """Runs the exporter CLI with parsed `flag_values`."""
    fv = flag_values
    if not fv.model or not fv.out:
        raise app.UsageError("--model and --out are required")
    input_size = parse_size(fv.input_size)
    images = None
    if fv.measure_on_val:  # bad files are found before the export
        examples, layout = evaluation_examples(fv.measure_on_val, fv.measure_split)
        examples = spread(examples, fv.measure_limit)
        for example in examples:
            check_image_size(example.image_path, fv.max_input_pixels)
    if fv.representative_dir:
        images = representative_images(fv.representative_dir, fv.num_representative,
                                       input_size, fv.max_input_pixels)
    model = load_model(fv.model)
    result = export_model(model, fv.out, fv.model_name, fv.version, input_size, images,
                          [v for v in fv.variants if v], fv.warmup,
                          fv.serving_max_pixels)
    print(f"SavedModel: {result['saved_model']}")
    for variant, path in result["tflite"].items():
        print(f"TFLite {variant}: {path}")
    print(f"labels: {result['labels']}")
    if fv.measure_on_val:
        fidelity = measure_fidelity(
                model, result["tflite"],
                [read_bounded_image(e.image_path, fv.max_input_pixels) for e in examples],
                [datasets.read_label(e.label_path, layout) for e in examples], input_size,
                num_threads=fv.num_threads)
        print(format_fidelity(fidelity))
        path = fv.measure_json or io_utils.join(fv.out, "fidelity.json")
        write_json(path, fidelity)
        print(f"fidelity: {path}")


# absl entry: a bad file or setting is one line on stderr, exit status 2.
main = absl_main(run, status=2, errors=(ConfigError, DataError, TFLiteConversionError))


if __name__ == "__main__":
    define_flags()
    app.run(main)
