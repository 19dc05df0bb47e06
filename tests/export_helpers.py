"""Models, images and (once per session) exports shared by the export tests.

Two models are exported:
- the "palette" model: a hand-weighted nearest-colour classifier (one 8x8
  stride-8 averaging conv, an identity 3x3 conv, a 1x1 conv whose logit k is
  (2 x.p_k - |p_k|^2) / 1000 for the Caffe-preprocessed palette colour p_k
  of class k). On images made of flat palette-coloured blocks its label
  inside a block is the block's class (known by hand), with large argmax
  margins, so quantized models can be held to the accuracy targets.
- the "net" model: build_deeplab_v2(19, depth=18, width=0.125,
  bn_mode="train") when tf_pixintra.models provides it (else a small
  random stand-in). Random weights leave argmax margins near zero, so only
  fp32 is held to a strict agreement there.
"""

import importlib.util
import os

import numpy as np

from tf_pixintra.export_contract import MODEL_NAME  # noqa: F401 (used by tests)

INPUT_SIZE = (32, 64)
CAFFE_MEAN_BGR = np.array([104.00698793, 116.66876762, 122.67891434],
                          np.float32)
# Well-separated palette classes used in the block images.
BLOCK_CLASSES = (0, 2, 7, 8, 10, 11, 13)
PALETTE = np.array([
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156),
    (190, 153, 153), (153, 153, 153), (250, 170, 30), (220, 220, 0),
    (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100),
    (0, 0, 230), (119, 11, 32)], np.float32)

_CACHE = {}


def caffe(rgb):
    """Numpy Caffe preprocessing (independent of the package's)."""
    return np.asarray(rgb, np.float32)[..., ::-1] - CAFFE_MEAN_BGR


def palette_model():
    """The hand-weighted nearest-palette-colour model (see module doc)."""
    import keras

    inputs = keras.Input((None, None, 3), dtype="float32")
    mean8 = keras.layers.Conv2D(3, 8, strides=8, padding="same",
                                use_bias=False, name="mean8")
    ident = keras.layers.Conv2D(3, 3, padding="same", name="identity")
    main = keras.layers.Conv2D(19, 1, name="main")
    aux = keras.layers.Conv2D(19, 1, name="aux",
                              kernel_initializer=keras.initializers
                              .GlorotUniform(seed=1))
    x = mean8(inputs)
    y = ident(x)
    model = keras.Model(inputs, [main(y), aux(x)])
    kernel = np.zeros((8, 8, 3, 3), np.float32)
    for c in range(3):
        kernel[:, :, c, c] = 1.0 / 64.0
    mean8.set_weights([kernel])
    kernel = np.zeros((3, 3, 3, 3), np.float32)
    for c in range(3):
        kernel[1, 1, c, c] = 1.0
    ident.set_weights([kernel, np.zeros(3, np.float32)])
    protos = caffe(PALETTE)  # [19, 3] BGR - mean
    main.set_weights([(2.0 * protos.T / 1000.0)[None, None],
                      -(protos ** 2).sum(1) / 1000.0])
    return model


def standin_model():
    """Small random model with the build_deeplab_v2 contract (stride 8)."""
    import keras

    init = keras.initializers.GlorotUniform(seed=0)
    inputs = keras.Input((None, None, 3), dtype="float32")
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same",
                            activation="relu", kernel_initializer=init)(inputs)
    x = keras.layers.Conv2D(16, 3, strides=4, padding="same",
                            activation="relu", kernel_initializer=init)(x)
    x = keras.layers.BatchNormalization()(x)
    aux = keras.layers.Conv2D(19, 1, kernel_initializer=init)(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu",
                            kernel_initializer=init)(x)
    main = keras.layers.Conv2D(19, 3, padding="same",
                               kernel_initializer=init)(x)
    return keras.Model(inputs, [main, aux])


def has_deeplab():
    if importlib.util.find_spec("tf_pixintra.models.deeplab_v2") is None:
        return False
    from tf_pixintra import models
    return hasattr(models, "build_deeplab_v2")


def net_model():
    """The project's tiny DeepLab-v2 (or the stand-in until it exists)."""
    if has_deeplab():
        from tf_pixintra.models import build_deeplab_v2
        return build_deeplab_v2(19, depth=18, width=0.125, bn_mode="train",
                                seed=0)
    return standin_model()


def block_image(seed, size=INPUT_SIZE, block=16, noise=6):
    """(uint8 RGB image, uint8 trainIds with 255 off block interiors, classes).

    Blocks of `block` px, each one palette colour (+- `noise`). Label pixels
    whose bilinear upsampling could see another block are 255.
    """
    rng = np.random.RandomState(seed)
    rows, cols = size[0] // block, size[1] // block
    classes = rng.choice(BLOCK_CLASSES, size=(rows, cols))
    dense = np.kron(classes, np.ones((block, block), np.int64))
    image = PALETTE[dense] + rng.uniform(-noise, noise, dense.shape + (3,))
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    interior = np.zeros(size, bool)
    margin = block // 4
    for r in range(rows):
        for c in range(cols):
            interior[r * block + margin:(r + 1) * block - margin,
                     c * block + margin:(c + 1) * block - margin] = True
    labels = np.where(interior, dense, 255).astype(np.uint8)
    return image, labels, classes


def keras_reference(model, image, size=INPUT_SIZE):
    """(labels, probabilities) of one uint8 image, computed independently.

    The image is resized to the input size (if needed), preprocessed in
    numpy, run through Keras, and its main logits resized to `size`.
    """
    import tensorflow as tf

    x = image.astype(np.float32)[None]
    if image.shape[:2] != INPUT_SIZE:
        x = tf.image.resize(x, INPUT_SIZE, method="bilinear").numpy()
    outputs = model(caffe(x), training=False)
    logits = outputs[0] if isinstance(outputs, (list, tuple)) else outputs
    logits = tf.image.resize(logits, size, method="bilinear").numpy()[0]
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    return logits.argmax(-1).astype(np.int32), probs


def tie_free_mismatches(labels, ref_labels, ref_probs, tol=1e-5):
    """Pixels whose label differs from the reference where it is no tie."""
    top2 = np.sort(ref_probs, axis=-1)[..., -2:]
    tie = (top2[..., 1] - top2[..., 0]) < tol
    return int(np.sum((labels != ref_labels) & ~tie))


def representative():
    """Calibration images (block images, seeds 100..103)."""
    return [block_image(100 + i)[0] for i in range(4)]


def get_export(kind, tmp_path_factory):
    """Exports the `kind` ("palette" or "net") model once per session.

    Returns (keras model, export_model result dict, out dir).
    """
    if kind not in _CACHE:
        from tf_pixintra.export import export_model

        model = palette_model() if kind == "palette" else net_model()
        out = str(tmp_path_factory.mktemp(f"export_{kind}"))
        result = export_model(model, out, MODEL_NAME, 3, INPUT_SIZE,
                              representative())
        _CACHE[kind] = (model, result, out)
    return _CACHE[kind]


def repo_root():
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
