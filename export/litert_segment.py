"""Segment an image with an exported .tflite model (LiteRT, no TensorFlow).

Needs only ai-edge-litert, numpy and pillow:

    python litert_segment.py MODEL.tflite IMAGE [--labels labels.json]
        [--out_labels OUT_labels.png] [--out_overlay OUT_overlay.png]
        [--alpha 0.5] [--num_threads N] [--max_pixels 40000000]

The image is resized (bilinear) to the model's input size, segmented, and the
label map is resized back to the image's own size (nearest). Two PNGs are
written: the label map (8-bit, one trainId per pixel, 255 = ignore) and the
image alpha-blended with the class colours from labels.json. labels.json is
looked for beside the model, then in its parent directory (the export layout
puts models in DIR/tflite/ and labels.json in DIR/).

An image above --max_pixels (width x height, read from the file header
before anything is decoded) is refused: one line on stderr, exit status 2.
"""

import argparse
import json
import os
import sys
import tempfile
import warnings

import numpy as np
from PIL import Image

SIGNATURE = "serving_default"
INPUT_NAME = "images"
# Default --max_pixels (tf_pixintra.export_contract.MAX_INPUT_PIXELS).
MAX_PIXELS = 40_000_000


class InputError(ValueError):
    """A bad input file or argument; the message names it."""


def open_image(path, max_pixels=MAX_PIXELS):
    """Opens an image (header only) and refuses it above `max_pixels`.

    Pillow's own decompression-bomb check is replaced by this one for the
    header read; decoding (load) then runs under a Pillow limit of
    `max_pixels`, which also bounds the frames of animated formats.
    """
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        image = Image.open(path)
    except OSError as err:
        raise InputError(f"cannot read image {path}: {err}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise InputError(f"image {path} is {width}x{height} (WxH) = "
                         f"{width * height / 1e6:.1f} megapixels, above "
                         f"--max_pixels={max_pixels}; refusing to decode it")
    return image


def load_image(path, max_pixels=MAX_PIXELS):
    """The decoded image (PIL) of `path`, refused above `max_pixels`."""
    image = open_image(path, max_pixels)
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
    except (OSError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as err:
        image.close()
        raise InputError(f"cannot decode image {path}: {err}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    return image


def find_labels(model_path, labels_path=None):
    """Path of labels.json: `labels_path`, else beside the model, else above it."""
    if labels_path:
        return labels_path
    here = os.path.dirname(os.path.abspath(model_path))
    for directory in (here, os.path.dirname(here)):
        candidate = os.path.join(directory, "labels.json")
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(
            f"no labels.json beside {model_path} or in its parent directory; "
            "pass --labels")


def read_labels(path):
    """labels.json content (dict)."""
    with open(path, "r", encoding="utf-8") as f:
        return json.load(f)


class Segmenter:
    """A .tflite segmentation model: uint8 RGB image in, trainIds out."""

    def __init__(self, model_path, num_threads=None):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=model_path,
                                       num_threads=num_threads)
        signatures = self.interpreter.get_signature_list()
        if SIGNATURE not in signatures:
            raise ValueError(f"{model_path} has signatures {list(signatures)}; "
                             f"expected {SIGNATURE!r} (use tf_pixintra.export)")
        self.runner = self.interpreter.get_signature_runner(SIGNATURE)
        details = self.runner.get_input_details()[INPUT_NAME]
        if details["dtype"] != np.uint8:
            raise ValueError(f"{model_path} input {INPUT_NAME!r} is "
                             f"{details['dtype']}; expected uint8")
        self.height, self.width = (int(v) for v in details["shape"][1:3])

    def labels(self, image):
        """PIL image (any size, any mode) -> uint8 trainIds at the image's size."""
        rgb = image.convert("RGB")
        resized = rgb.resize((self.width, self.height),
                             Image.Resampling.BILINEAR)
        batch = np.asarray(resized, dtype=np.uint8)[None]
        out = self.runner(**{INPUT_NAME: batch})["labels"][0]
        label_map = Image.fromarray(out.astype(np.uint8))
        return np.asarray(label_map.resize(rgb.size, Image.Resampling.NEAREST))


def overlay(image, label_map, palette, alpha=0.5, ignore_label=255):
    """RGB uint8 image alpha-blended with the palette colour of each label.

    Pixels with `ignore_label` (or a label without a colour) keep the image.
    """
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    lut = np.zeros((256, 3), dtype=np.float32)
    lut[:len(palette)] = np.asarray(palette, dtype=np.float32)
    coloured = np.zeros(256, dtype=bool)
    coloured[:len(palette)] = True
    coloured[ignore_label] = False
    weight = np.where(coloured[label_map], float(alpha), 0.0)[..., None]
    blended = (1.0 - weight) * rgb + weight * lut[label_map]
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def save_png(array, path):
    """Writes a PNG under a temporary name, renamed when complete."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".",
                               suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        Image.fromarray(array).save(tmp, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help=".tflite model from tf_pixintra.export")
    parser.add_argument("image", help="image to segment (PNG, JPEG, ...)")
    parser.add_argument("--labels", help="labels.json (default: beside the "
                        "model or in its parent directory)")
    parser.add_argument("--out_labels", help="label map PNG (default: "
                        "<image stem>_labels.png beside the image)")
    parser.add_argument("--out_overlay", help="colour overlay PNG (default: "
                        "<image stem>_overlay.png beside the image)")
    parser.add_argument("--alpha", type=float, default=0.5,
                        help="weight of the class colour in the overlay")
    parser.add_argument("--num_threads", type=int, default=None,
                        help="LiteRT CPU threads")
    parser.add_argument("--max_pixels", type=int, default=MAX_PIXELS,
                        help="refuse an image above this many pixels "
                        "(width x height, from its header; default "
                        "%(default)s)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.max_pixels < 1:
            raise InputError(f"--max_pixels={args.max_pixels}; expected a "
                             "positive number of pixels")
        image = load_image(args.image, args.max_pixels)
    except InputError as err:
        sys.stderr.write(f"error: {err}\n")
        return 2
    meta = read_labels(find_labels(args.model, args.labels))
    stem = os.path.splitext(args.image)[0]
    out_labels = args.out_labels or stem + "_labels.png"
    out_overlay = args.out_overlay or stem + "_overlay.png"
    segmenter = Segmenter(args.model, num_threads=args.num_threads)
    with image:
        label_map = segmenter.labels(image)
        blended = overlay(image, label_map, meta["palette"], args.alpha,
                          meta.get("ignore_label", 255))
    save_png(label_map, out_labels)
    save_png(blended, out_overlay)
    names = meta.get("class_names", [])
    counts = np.bincount(label_map.reshape(-1), minlength=256)
    top = [(names[k] if k < len(names) else str(k), 100.0 * counts[k]
            / label_map.size) for k in np.argsort(-counts)[:5] if counts[k]]
    print(f"labels: {out_labels}\noverlay: {out_overlay}")
    print("classes: " + ", ".join(f"{name} {share:.1f}%" for name, share in top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
