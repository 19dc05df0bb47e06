"""SavedModel export for TF Serving (keras.export.ExportArchive).

Two signatures, both with the Caffe preprocessing (RGB->BGR, mean
subtraction) inside the graph, so clients send plain images:
`serving_default` (input `images`, `segment_uint8`) and `serve_image_bytes`
(input `image_bytes`, `segment_encoded`). `write_tflite_source` writes
`serving_default` alone at batch 1 for TFLite.
"""

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tf_pixintra import io_utils
from tf_pixintra.data import labels as label_tables
from tf_pixintra.export_contract import (IMAGE_BYTES_KEY, IMAGES_KEY, SERVE_IMAGE_BYTES,
                                         SERVING_DEFAULT, SERVING_MAX_PIXELS)
from tf_pixintra.inference import predict_logits
from tf_pixintra.models.preprocessing import caffe_preprocess

WARMUP_FILENAME = "tf_serving_warmup_requests"


def segment_uint8(model, images, input_size):
    """uint8 RGB [N, H, W, 3] at the input size -> {"labels": int32 trainIds
    [N, H, W], "probabilities": float32 [N, H, W, C]} (softmax of the MAIN
    head's logits, upsampled bilinearly from output stride 8 to H x W): the
    graph of `serving_default` and of the TFLite models."""
    logits = predict_logits(model, caffe_preprocess(images), input_size)
    return {"labels": tf.argmax(logits, axis=-1, output_type=tf.int32),
            "probabilities": tf.nn.softmax(logits, axis=-1)}


def _header_uint(data, offset, size, big_endian):
    """Unsigned int of `size` bytes at `offset` of a (zero-padded) string."""
    raw = tf.cast(tf.io.decode_raw(tf.strings.substr(data, offset, size), tf.uint8),
                  tf.int64)
    if big_endian:
        raw = tf.reverse(raw, axis=[0])
    return tf.reduce_sum(raw * (256 ** tf.range(size, dtype=tf.int64)))


def encoded_image_size(data):
    """(height, width) int64 of one encoded PNG/JPEG/GIF/BMP from its header
    (nothing is decoded); InvalidArgument for other formats."""
    padded = tf.strings.join([data, tf.constant(b"\0" * 32)])
    magic = tf.strings.substr(padded, 0, 8)

    def png():  # IHDR: width, height big-endian uint32 at bytes 16, 20
        return _header_uint(padded, 20, 4, True), _header_uint(padded, 16, 4, True)

    def jpeg():
        shape = tf.cast(tf.image.extract_jpeg_shape(data), tf.int64)
        return shape[0], shape[1]

    def gif():  # logical screen: little-endian uint16 at bytes 6, 8
        return _header_uint(padded, 8, 2, False), _header_uint(padded, 6, 2, False)

    def bmp():  # BITMAPINFOHEADER: little-endian int32 at 18, 22 (< 0: top-down)
        height = _header_uint(padded, 22, 4, False)
        height = tf.where(height >= 2 ** 31, 2 ** 32 - height, height)
        return height, _header_uint(padded, 18, 4, False)

    def unknown():
        check = tf.debugging.Assert(False, [tf.constant(
                f"{SERVE_IMAGE_BYTES}: not a PNG, JPEG, GIF or BMP image")])
        with tf.control_dependencies([check]):
            return tf.constant(0, tf.int64), tf.constant(0, tf.int64)

    prefix = lambda text: tf.equal(tf.strings.substr(magic, 0, len(text)), text)  # noqa: E731
    return tf.case([(prefix(b"\x89PNG\r\n\x1a\n"), png), (prefix(b"\xff\xd8\xff"), jpeg),
                    (prefix(b"GIF8"), gif), (prefix(b"BM"), bmp)],
                   default=unknown, exclusive=True)


def segment_encoded(model, image_bytes, input_size, max_pixels=SERVING_MAX_PIXELS):
    """Encoded PNG / JPEG (/ BMP / GIF, first frame) images of any size, string
    [N] -> {"labels": int32 [N, Hmax, Wmax] (pad 255), "heights": int32 [N],
    "widths": int32 [N]}; image i is labels[i, :heights[i], :widths[i]]. Each
    image is resized to `input_size` and its logits back to its own size
    before the argmax. An image of more than `max_pixels` pixels (from its
    header) fails with InvalidArgument before it is decoded."""

    def one_image(data):
        height, width = encoded_image_size(data)
        message = tf.strings.format(
                SERVE_IMAGE_BYTES + ": image of {}x{} (WxH) = {} pixels is above "
                f"the cap of {int(max_pixels)} pixels of this SavedModel "
                "(tf_pixintra.export --serving_max_pixels); send a smaller image",
                (width, height, width * height))
        check = tf.debugging.Assert(width * height <= int(max_pixels), [message])
        with tf.control_dependencies([check]):
            image = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
        size = tf.shape(image)[:2]
        resized = tf.image.resize(tf.cast(image, tf.float32)[None], input_size,
                                  method="bilinear")
        logits = predict_logits(model, caffe_preprocess(resized), size)
        labels = tf.argmax(logits[0], axis=-1, output_type=tf.int32)
        return (tf.RaggedTensor.from_tensor(labels), size[0], size[1])

    ragged, heights, widths = tf.map_fn(one_image, image_bytes, fn_output_signature=(
            tf.RaggedTensorSpec(shape=[None, None], dtype=tf.int32, ragged_rank=1),
            tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32)))
    return {"labels": ragged.to_tensor(default_value=label_tables.IGNORE_LABEL),
            "heights": heights, "widths": widths}


def _build_archive(model, input_size, batch_size, max_pixels=SERVING_MAX_PIXELS):
    """An ExportArchive with the serving endpoints (bytes one if batch is None)."""
    input_size = tuple(int(v) for v in input_size)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
            SERVING_DEFAULT, tf.function(lambda images: segment_uint8(model, images, input_size)),
            input_signature=[tf.TensorSpec([batch_size, *input_size, 3], tf.uint8,
                                           name=IMAGES_KEY)])
    if batch_size is None:
        archive.add_endpoint(
                SERVE_IMAGE_BYTES, tf.function(lambda image_bytes: segment_encoded(
                        model, image_bytes, input_size, max_pixels)),
                input_signature=[tf.TensorSpec([None], tf.string, name=IMAGE_BYTES_KEY)])
    return archive


def write_warmup_requests(saved_model_dir, model_name, images):
    """Writes assets.extra/tf_serving_warmup_requests (one PredictionLog per
    signature, with the first of `images`, uint8 RGB [N, H, W, 3] at the input
    size); returns its path, or None (warning logged) without tensorflow-serving-api.
    """
    try:
        from tensorflow_serving.apis import predict_pb2
        from tensorflow_serving.apis import prediction_log_pb2
    except ImportError as err:  # optional extra, see requirements-export.txt
        logging.warning("tensorflow-serving-api is not importable (%s): no %s written. Install "
                        "it with `pip install --no-deps -r requirements-export.txt`.", err,
                        WARMUP_FILENAME)
        return None
    batch = np.asarray(images[:1], dtype=np.uint8)
    encoded = tf.io.encode_png(batch[0]).numpy()
    path = io_utils.join(saved_model_dir, "assets.extra", WARMUP_FILENAME)
    with io_utils.atomic_path(path) as tmp, tf.io.TFRecordWriter(tmp) as writer:
        for signature, key, tensor in (
                (SERVING_DEFAULT, IMAGES_KEY, tf.make_tensor_proto(batch)),
                (SERVE_IMAGE_BYTES, IMAGE_BYTES_KEY, tf.make_tensor_proto([encoded], tf.string))):
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = signature
            request.inputs[key].CopyFrom(tensor)
            log = prediction_log_pb2.PredictionLog(
                    predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def write_saved_model(model, version_dir, model_name, input_size, warmup_images=None,
                      warmup=True, max_pixels=SERVING_MAX_PIXELS):
    """Writes the TF Serving SavedModel to `version_dir` (…/<name>/<version>),
    built under a dot-prefixed name beside it (TF Serving only loads numeric
    version directories) and renamed when whole, replacing an existing one.
    `max_pixels` caps one `serve_image_bytes` image's decoded size."""
    with io_utils.atomic_dir(version_dir) as target:
        _build_archive(model, input_size, None, max_pixels).write_out(target, verbose=False)
        if warmup:
            if warmup_images is None or len(warmup_images) == 0:
                warmup_images = np.full((1, *input_size, 3), 128, np.uint8)
            write_warmup_requests(target, model_name, warmup_images)
    return version_dir


def write_tflite_source(model, directory, input_size):
    """Writes the batch-1 `serving_default` SavedModel the TFLite converter reads."""
    _build_archive(model, input_size, batch_size=1).write_out(directory, verbose=False)
    return directory
