"""What the exported models promise their clients: names and input limits.

Shared by config.py, export.py and export_savedmodel.py; the deployment kit
in export/ (no TensorFlow, no tf_pixintra) repeats these values and
tests/test_export_kit.py keeps them equal. Imports nothing heavy.
"""

# TF Serving model name, SavedModel directory saved_model/<MODEL_NAME>/ and
# TFLite file prefix <MODEL_NAME>_{fp32,fp16,int8}.tflite.
MODEL_NAME = "pixintra"

# Signatures and their input keys.
SERVING_DEFAULT = "serving_default"
SERVE_IMAGE_BYTES = "serve_image_bytes"
IMAGES_KEY = "images"
IMAGE_BYTES_KEY = "image_bytes"

# Cap of `serve_image_bytes` on one encoded image's decoded width x height
# (from the header, before decoding). Resizing the logits back costs about
# 100 bytes per pixel: 2**23 pixels (4096 x 2048; Cityscapes and 4K UHD fit)
# about 0.8 GB. The REST client refuses larger images by default.
SERVING_MAX_PIXELS = 4096 * 2048

# Default limit on images read from files by the exporter
# (--representative_dir, --measure_on_val) and by export/litert_segment.py:
# width x height, checked from the header before decoding.
MAX_INPUT_PIXELS = 40_000_000
