"""Prediction with a segmentation Keras model: resize, multi-scale, flip.

The model takes float32 [B,H,W,3] Caffe-preprocessed input (BGR minus mean)
and returns its main logits at output stride 8, or [main, aux] (only main is
used). One prediction: resize the RGB image to `size` times each scale, run
the model, upsample the main logits bilinearly to `output_size` (default: the
image's size), softmax, and average the probabilities over scales and, with
`flip`, over the mirrored image (its prediction mirrored back).
"""

import io
import os
import zipfile

import keras
import numpy as np
import tensorflow as tf

from tf_pixintra import io_utils
from tf_pixintra.errors import ConfigError, DataError
from tf_pixintra.io_utils import inside, read_json
from tf_pixintra.models.deeplab_v2 import main_output
from tf_pixintra.models.preprocessing import caffe_preprocess
from tf_pixintra.run_layout import MODEL_FILE, RUN_FILE


def predict_logits(model, image_bgr, output_size=None):
    """float32 [B, h, w, C] main logits of `model` on Caffe-preprocessed
    float32 [B,H,W,3] `image_bgr`, upsampled bilinearly to `output_size`
    (h, w) (default: the input's (H, W))."""
    image_bgr = tf.convert_to_tensor(image_bgr, tf.float32)
    if output_size is None:
        output_size = tf.shape(image_bgr)[1:3]
    logits = tf.cast(main_output(model(image_bgr, training=False)), tf.float32)
    return tf.image.resize(logits, output_size, method="bilinear")


def _scaled_size(size, scale):
    """(round(h * scale), round(w * scale)), at least 1 x 1, as an int32
    tensor; in float64 and half to even: Python's round(h * scale), exactly."""
    size = tf.cast(size, tf.float64) * scale
    return tf.maximum(tf.cast(tf.round(size), tf.int32), 1)


def predict_probs_batch(model, images_rgb, size=None, scales=(1.0,), flip=False,
                        output_size=None):
    """Averaged softmax probabilities, float32 [B, h_out, w_out, C], of RGB
    `images_rgb` [B,H,W,3] in [0, 255] (uint8 or float): the model input is
    `size` (h, w; default the images' (H, W)) times each scale, with `flip`
    also mirrored; `output_size` (h_out, w_out) defaults to the images' (H, W).
    Plain TensorFlow ops: eager or inside a tf.function (`make_predict_fn`).
    """
    images = tf.cast(images_rgb, tf.float32)
    image_size = tf.shape(images)[1:3]
    size = image_size if size is None else tf.convert_to_tensor(size, tf.int32)
    output_size = image_size if output_size is None else tf.convert_to_tensor(
            output_size, tf.int32)
    total = None
    count = 0
    for scale in scales:
        resized = tf.image.resize(images, _scaled_size(size, float(scale)), method="bilinear")
        inputs = caffe_preprocess(resized)
        probs = tf.nn.softmax(predict_logits(model, inputs, output_size), axis=-1)
        total = probs if total is None else total + probs
        count += 1
        if flip:
            mirrored = predict_logits(model, tf.reverse(inputs, axis=[2]), output_size)
            total += tf.reverse(tf.nn.softmax(mirrored, axis=-1), axis=[2])
            count += 1
    if total is None:
        raise ValueError("scales is empty; expected at least one scale")
    return total / float(count)


def make_predict_fn(model, size=None, scales=(1.0,), flip=False):
    """A tf.function(images_rgb[B,H,W,3], output_size[2] int32) -> probs;
    reduce_retracing: images of new sizes reuse a shape-generic trace."""
    scales = tuple(float(s) for s in scales)
    size = None if size is None else tuple(int(v) for v in size)

    @tf.function(reduce_retracing=True)
    def predict_fn(images_rgb, output_size):
        return predict_probs_batch(model, images_rgb, size, scales, flip, output_size)

    return predict_fn


def predict_probs(model, image_rgb_uint8, size=None, scales=(1.0,), flip=False,
                  output_size=None, predict_fn=None):
    """float32 [H_out, W_out, C] probabilities for one RGB image [H,W,3] (as
    `predict_probs_batch`). `predict_fn` (from `make_predict_fn`) reuses one
    traced function across many images; its size/scales/flip then take
    precedence over the arguments here."""
    image = np.asarray(image_rgb_uint8)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image has shape {image.shape}; expected [H, W, 3] RGB")
    if output_size is None:
        output_size = image.shape[:2]
    output_size = tf.constant([int(output_size[0]), int(output_size[1])], tf.int32)
    if predict_fn is None:
        probs = predict_probs_batch(model, image[None], size, scales, flip, output_size)
    else:
        probs = predict_fn(tf.convert_to_tensor(image[None]), output_size)
    return probs[0].numpy().astype(np.float32)


def predict_labels(model, image_rgb_uint8, size=None, scales=(1.0,), flip=False,
                   output_size=None, predict_fn=None):
    """uint8 trainIds [H_out, W_out]: argmax of `predict_probs`."""
    probs = predict_probs(model, image_rgb_uint8, size, scales, flip, output_size, predict_fn)
    return np.argmax(probs, axis=-1).astype(np.uint8)


def resolve_model_path(path):
    """The model.keras file named by `path`: a `.keras` file, a stage
    directory holding model.keras, or a run directory whose run.json names
    the model ("model": relative to the run directory). ConfigError naming
    the path otherwise."""
    path = os.fspath(path)
    if io_utils.isfile(path):
        if not path.endswith(".keras"):
            raise ConfigError(f"model path {path} is not a .keras file; expected a .keras file, "
                              f"a stage directory with {MODEL_FILE} or a run directory with "
                              f"{RUN_FILE}")
        return path
    if not io_utils.isdir(path):
        raise ConfigError(f"model path {path} does not exist; expected a .keras file, a stage "
                          "directory or a run directory")
    candidate = io_utils.join(path, MODEL_FILE)
    run_file = io_utils.join(path, RUN_FILE)
    if io_utils.isfile(candidate):
        return candidate
    if not io_utils.isfile(run_file):
        raise ConfigError(f"no model found in directory {path}: expected {MODEL_FILE} or "
                          f"{RUN_FILE} in it")
    run = read_json(run_file)
    relative = run.get("model") if isinstance(run, dict) else None
    if not relative:
        raise ConfigError(f"{run_file} has no \"model\" entry; expected the relative path of "
                          f"the newest {MODEL_FILE}")
    try:   # run.json must name a model inside its run directory
        candidate = inside(path, relative, run_file)
    except DataError as e:
        raise ConfigError(str(e)) from None
    if not io_utils.isfile(candidate):
        raise ConfigError(f"{run_file} names model {relative!r} but {candidate} does not exist")
    return candidate


def load_model(path):
    """Loads the Keras model named by `path` (`resolve_model_path`), uncompiled."""
    return load_keras_file(resolve_model_path(path))


def load_keras_file(model_file, advice=""):
    """Loads a .keras file uncompiled; DataError naming it (plus `advice`) if
    it is damaged (Keras says "File not found" for a truncated file)."""
    try:   # importing tf_pixintra.models (above) registered the custom layers
        return keras.saving.load_model(model_file, compile=False)
    except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as e:
        if not io_utils.isfile(model_file):
            raise
        data = io_utils.read_bytes(model_file)
        reason = ("not a complete .keras zip archive"
                  if not zipfile.is_zipfile(io.BytesIO(data))
                  else str(e).strip().splitlines()[0] if str(e).strip()
                  else type(e).__name__)
        raise DataError(f"{model_file}: damaged model file ({reason}, {len(data)} bytes)"
                        + (f". {advice}" if advice else "")) from None
