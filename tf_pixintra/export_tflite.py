"""TFLite export (fp32, fp16, full-integer int8) and LiteRT fidelity checks.

Every variant is converted from the batch-1 `serving_default` SavedModel of
`export_savedmodel.write_tflite_source` (`segment_uint8` at batch 1; converting
a tf.Module wrapping a Keras 3 model silently drops the weights). int8 is
full-integer: the uint8 image enters through CAST + QUANTIZE, `labels` stay
int32 and `probabilities` are uint8 with scale 1/256, zero point 0. Only TFLite
builtin ops are allowed: a flex (TF Select) or custom op fails the conversion,
and the result's op list is checked.
"""

import re
import time
import warnings

import numpy as np
import tensorflow as tf
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter

from tf_pixintra import choices
from tf_pixintra import io_utils
from tf_pixintra import progress
from tf_pixintra.export_savedmodel import IMAGES_KEY, SERVING_DEFAULT, segment_uint8
from tf_pixintra.metrics import ConfusionMatrix


class TFLiteConversionError(RuntimeError):
    """The model cannot be converted to a builtin-ops-only TFLite model."""


def _converter(saved_model_dir, variant, representative_images):
    choices.check("variant", variant, choices.TFLITE_VARIANTS)
    converter = tf.lite.TFLiteConverter.from_saved_model(
            saved_model_dir, signature_keys=[SERVING_DEFAULT])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if variant != "fp32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "int8":
        if representative_images is None or len(representative_images) == 0:
            raise TFLiteConversionError("int8 conversion needs representative images (uint8 "
                                        "RGB arrays at the input size from the target "
                                        "training set); got none")
        images = [np.asarray(image, dtype=np.uint8) for image in representative_images]

        def representative_dataset():
            for image in progress.track(images, "int8 calibration"):
                yield {IMAGES_KEY: image[None]}

        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    return converter


def convert(saved_model_dir, variant, representative_images=None):
    """`saved_model_dir`'s serving_default as TFLite bytes; TFLiteConversionError
    naming the ops when a non-builtin op would be needed or is in the result,
    ConfigError for an unknown variant."""
    converter = _converter(saved_model_dir, variant, representative_images)
    try:
        with warnings.catch_warnings():
            # int8 calibration runs TF's own (deprecated) interpreter inside.
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter")
            model_bytes = converter.convert()
    except Exception as err:  # ConverterError is not a public class
        found = re.findall(r"(?:TF Select ops|Custom ops): ([^\n]*)", str(err))
        if not found:
            raise
        raise TFLiteConversionError(
                f"TFLite {variant} conversion of {saved_model_dir} needs ops outside the "
                f"TFLite builtin set: {'; '.join(found)}. Flex (TF Select) and custom ops "
                "are not allowed in the edge models; replace those ops in the model.") from err
    assert_builtin_only(model_bytes, f"{variant} model of {saved_model_dir}")
    return model_bytes


def tflite_ops(model_bytes):
    """Operator codes of a TFLite flatbuffer: list of (builtin name, custom
    code); a custom (incl. flex) op has builtin name "CUSTOM" and a code."""
    names = {getattr(schema.BuiltinOperator, key): key
             for key in dir(schema.BuiltinOperator) if not key.startswith("_")}
    model = schema.Model.GetRootAsModel(bytearray(model_bytes), 0)
    ops = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        custom = code.CustomCode()
        ops.append((names.get(builtin, str(builtin)), custom.decode() if custom else None))
    return ops


def assert_builtin_only(model_bytes, what):
    """Raises TFLiteConversionError when `model_bytes` holds a custom/flex op."""
    bad = [custom or name for name, custom in tflite_ops(model_bytes)
           if custom is not None or name in ("CUSTOM", "DELEGATE")]
    if bad:
        raise TFLiteConversionError(f"{what} contains non-builtin ops {bad}; expected "
                                    "TFLite builtin ops only")


class LiteRTSegmenter:
    """Runs an exported .tflite model with LiteRT (ai_edge_litert)."""

    def __init__(self, path, num_threads=None):
        self.path = path
        self.interpreter = Interpreter(model_content=io_utils.read_bytes(path),
                                       num_threads=num_threads)
        self.runner = self.interpreter.get_signature_runner(SERVING_DEFAULT)
        details = self.runner.get_input_details()[IMAGES_KEY]
        self.input_size = tuple(int(v) for v in details["shape"][1:3])

    def __call__(self, image):
        """uint8 RGB [H, W, 3] at the input size -> dict of numpy outputs;
        `probabilities` as float32 (dequantized for int8)."""
        image = np.asarray(image, dtype=np.uint8)
        if image.shape[:2] != self.input_size:
            raise ValueError(f"image of shape {image.shape} given to {self.path}; expected "
                             f"{self.input_size} + (3,)")
        out = self.runner(**{IMAGES_KEY: image[None]})
        probs = out["probabilities"]
        if probs.dtype != np.float32:
            scale, zero = self.runner.get_output_details()["probabilities"]["quantization"]
            probs = (probs.astype(np.float32) - zero) * scale
        return {"labels": out["labels"][0], "probabilities": probs[0]}


def resize_uint8(image, size):
    """uint8 RGB image -> uint8 at `size` (bilinear, rounded), as exported."""
    image = np.asarray(image, dtype=np.uint8)
    if image.shape[:2] == tuple(size):
        return image
    resized = tf.image.resize(image[None].astype(np.float32), size, method="bilinear")[0]
    return np.clip(np.round(resized.numpy()), 0, 255).astype(np.uint8)


def _resize_nearest(label_map, size):
    if label_map.shape == tuple(size):
        return label_map
    rows = (np.arange(size[0]) * label_map.shape[0]) // size[0]
    cols = (np.arange(size[1]) * label_map.shape[1]) // size[1]
    return label_map[rows[:, None], cols[None, :]]


def keras_labels(keras_model, image, input_size):
    """Keras reference: (labels int32 [H, W], number of classes) of one uint8
    image at the input size, through the exported graph's math."""
    out = segment_uint8(keras_model, tf.constant(image[None]), input_size)
    return out["labels"][0].numpy(), int(out["probabilities"].shape[-1])


def measure_fidelity(keras_model, tflite_paths, images, labels, input_size, num_threads=None):
    """Agreement with Keras, mIoU, size and LiteRT latency per TFLite variant.

    `keras_model` takes Caffe-preprocessed float input; `tflite_paths` is
    {variant: .tflite path}; `images` uint8 RGB arrays of any size (resized
    to `input_size` (H, W) with `resize_uint8`); `labels` their uint8 trainId
    maps (255 = ignore; predictions are resized to them, nearest), or None
    to skip mIoU. Returns {"input_size": [H, W], "num_images": N, "keras":
    {"miou": %}, "variants": {name: {"agreement": % of pixels labelled as by
    Keras, "miou": % or None, "size_bytes": n, "latency_ms": mean per image,
    "path": path}}}.
    """
    input_size = tuple(int(v) for v in input_size)
    resized = [resize_uint8(image, input_size) for image in images]
    if not resized:
        raise ValueError("measure_fidelity needs at least one image")
    if labels is not None and len(labels) != len(resized):
        raise ValueError(f"{len(resized)} images but {len(labels)} label maps")
    bar = progress.Progress(len(resized) * (1 + len(tflite_paths)), "TFLite fidelity check")
    reference = []
    for image in resized:       # the Keras reference, then every variant
        reference_labels, num_classes = keras_labels(keras_model, image, input_size)
        reference.append(reference_labels)
        bar.update()
    result = {"input_size": list(input_size), "num_images": len(resized), "keras": {},
              "variants": {}}

    def score(predictions):
        if labels is None:
            return None
        matrix = ConfusionMatrix(num_classes)
        for prediction, label in zip(predictions, labels):
            label = np.asarray(label)
            matrix.update(_resize_nearest(prediction, label.shape), label)
        return 100.0 * matrix.mean_iou()

    segmenters = {name: LiteRTSegmenter(path, num_threads=num_threads)
                  for name, path in tflite_paths.items()}
    for name, segmenter in segmenters.items():
        predictions, seconds = [], 0.0
        segmenter(resized[0])  # warm-up, not timed
        for image in resized:
            start = time.perf_counter()
            out = segmenter(image)
            seconds += time.perf_counter() - start
            predictions.append(out["labels"])
            bar.update()
        agree = sum(int(np.sum(p == r)) for p, r in zip(predictions, reference))
        pixels = sum(r.size for r in reference)
        result["variants"][name] = {
                "agreement": 100.0 * agree / max(pixels, 1), "miou": score(predictions),
                "size_bytes": io_utils.getsize(segmenter.path),
                "latency_ms": 1000.0 * seconds / max(len(resized), 1), "path": segmenter.path}
    bar.close()
    result["keras"]["miou"] = score(reference)
    return result


def format_fidelity(result):
    """A plain-text table of a `measure_fidelity` result."""
    lines = [f"TFLite fidelity on {result['num_images']} images at "
             f"{result['input_size'][0]}x{result['input_size'][1]}",
             f"{'variant':8s} {'agree %':>9s} {'mIoU %':>8s} {'size MB':>8s} {'ms/img':>8s}"]

    def fmt(value):
        return "     n/a" if value is None else f"{value:8.2f}"

    lines.append(f"{'keras':8s} {'100.000':>9s} {fmt(result['keras'].get('miou'))} "
                 f"{'':>8s} {'':>8s}")
    for name, row in result["variants"].items():
        lines.append(f"{name:8s} {row['agreement']:9.3f} {fmt(row['miou'])} "
                     f"{row['size_bytes'] / 1e6:8.3f} {row['latency_ms']:8.2f}")
    return "\n".join(lines)
