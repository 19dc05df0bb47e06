"""What the exported models promise their clients: names and input limits.

One definition shared by the pipeline (config.py, export.py,
export_savedmodel.py) and checked against the deployment kit in export/ by
tests/test_export_kit.py (the kit imports neither TensorFlow nor
tf_pixintra, so it repeats these values; the test keeps them equal).
Imports nothing heavy, so config.py can read it.
"""

# TF Serving model name, SavedModel directory saved_model/<MODEL_NAME>/ and
# TFLite file prefix <MODEL_NAME>_{fp32,fp16,int8}.tflite.
MODEL_NAME = "pixintra"

# Signatures and their input keys.
SERVING_DEFAULT = "serving_default"
SERVE_IMAGE_BYTES = "serve_image_bytes"
IMAGES_KEY = "images"
IMAGE_BYTES_KEY = "image_bytes"

# Cap of `serve_image_bytes` on one encoded image's decoded size (width x
# height, read from the PNG/JPEG/GIF/BMP header before decoding). The
# signature resizes the logits back to the image's size, about 100 bytes of
# memory per pixel (+900 MB reported for 3000 x 3000): 2**23 pixels (4096 x
# 2048; Cityscapes' 2048 x 1024 and 4K UHD 3840 x 2160 fit) cost about 0.8 GB.
# The REST client refuses larger images by default.
SERVING_MAX_PIXELS = 4096 * 2048

# Default limit on images read from files by the exporter
# (--representative_dir, --measure_on_val) and by export/litert_segment.py:
# width x height, checked from the header before decoding.
MAX_INPUT_PIXELS = 40_000_000
