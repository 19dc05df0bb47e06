"""Tests of tf_pixintra.inference with tiny stand-in Keras models."""

import json
import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import tolerances as T
from tf_pixintra import inference
from tf_pixintra.errors import ConfigError
from tf_pixintra.models.preprocessing import CAFFE_MEAN_BGR

# Multi-scale test scales of CRST (yzou2/CRST, with flip).
CRST_SCALES = (0.9, 1.0, 1.2)

# |RGB - Caffe mean| <= 255 - 104.007 for RGB in [0, 255].
MAX_INPUT = 152.0


def strided_model(num_classes=19, seed=0):
    """[main, aux] at output stride 8, NOT left-right symmetric (3x3, stride 8)."""
    keras.utils.set_random_seed(seed)
    x = keras.Input((None, None, 3))
    main = keras.layers.Conv2D(num_classes, 3, strides=8, padding="same")(x)
    aux = keras.layers.Conv2D(num_classes, 1)(main)
    return keras.Model(x, [main, aux])


def symmetric_model(num_classes=19, seed=0):
    """Average pooling 8x8 + 1x1 conv: commutes with a left-right flip."""
    keras.utils.set_random_seed(seed)
    x = keras.Input((None, None, 3))
    pooled = keras.layers.AveragePooling2D(8)(x)
    main = keras.layers.Conv2D(num_classes, 1, kernel_initializer="random_normal")(pooled)
    return keras.Model(x, main)


def constant_model(main_class, aux_class, num_classes=19):
    """Logits with a fixed bias per class: main favours one class, aux another."""
    x = keras.Input((None, None, 3))
    heads = []
    for favoured in (main_class, aux_class):
        bias = np.zeros(num_classes, np.float32)
        bias[favoured] = 5.0
        heads.append(keras.layers.Conv2D(
                num_classes, 1, strides=8, kernel_initializer="zeros",
                bias_initializer=keras.initializers.Constant(bias))(x))
    return keras.Model(x, heads)


def probs_tolerance(model, k, image_side, grid_side, variants, pool=1):
    """Bound on |one path's fused probabilities - two paths'| (see tolerances).

    The first conv of `model` (k taps: 27 for 3x3x3, 3 for 1x1x3) reads the
    Caffe input, after an optional `pool` x `pool` average. Input: the image
    resize (`image_side` = 0: a resize to the image's own size, which is
    exact: scale 1, weights 0) and the mean subtraction (one rounding).
    Pool: a sum of pool^2 terms and a division. Logits: the first conv's
    error through sum |w| (S) plus a dot of k terms and the bias; then their
    resize from a `grid_side` grid, the softmax and the mean of `variants`.
    """
    kernel, bias = model.layers[1 + (pool > 1)].get_weights()
    s = float(np.abs(kernel).sum(axis=(0, 1, 2)).max())
    b = float(np.abs(bias).max())
    x_err = (T.resize_bound(255.0, image_side) if image_side else 0.0) \
        + T.U * MAX_INPUT
    if pool > 1:
        n = pool * pool
        x_err += T.sum_bound(n, n * MAX_INPUT) / n + T.U * MAX_INPUT
    z_max = s * MAX_INPUT + b
    z_err = s * x_err + T.sum_bound(k + 1, z_max)
    z_err += T.resize_bound(z_max, grid_side)
    p_err = T.softmax_bound(z_err, kernel.shape[-1])
    return T.across(T.mean_bound(variants, p_err, 1.0))


def random_image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_caffe_preprocessing_reaches_the_model():
    # Two classes; logit 0 = the preprocessed blue channel (BGR channel 0).
    x = keras.Input((None, None, 3))
    kernel = np.zeros((1, 1, 3, 2), np.float32)
    kernel[0, 0, 0, 0] = 1.0
    out = keras.layers.Conv2D(2, 1, strides=8, use_bias=False,
                              kernel_initializer=keras.initializers.Constant(kernel))(x)
    model = keras.Model(x, out)
    image = np.zeros((16, 16, 3), np.uint8)
    image[...] = (10, 20, 105)  # RGB: blue is 105.
    probs = inference.predict_probs(model, image)
    b = 105.0 - CAFFE_MEAN_BGR[0]
    expected = 1.0 / (1.0 + math.exp(-b))
    # Logit error: the float32 mean (u x 104) and the subtraction (u x 1);
    # a flat logit map resizes exactly; then the softmax.
    tol = T.softmax_bound(T.U * 105.0, 2)
    np.testing.assert_allclose(probs[..., 0], expected, rtol=0, atol=tol)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=0,
                               atol=T.probs_sum_bound(2))


def test_main_output_is_used_and_labels_are_uint8():
    model = constant_model(main_class=3, aux_class=5)
    labels = inference.predict_labels(model, random_image(24, 40), size=(16, 32),
                                      scales=CRST_SCALES, flip=True)
    assert labels.dtype == np.uint8 and labels.shape == (24, 40)
    assert np.all(labels == 3)


def test_multi_scale_flip_shapes():
    model = strided_model()
    image = random_image(20, 30)
    probs = inference.predict_probs(model, image, size=(16, 24),
                                    scales=CRST_SCALES, flip=True)
    assert probs.dtype == np.float32 and probs.shape == (20, 30, 19)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=0,
                               atol=T.probs_sum_bound(19, variants=6))
    small = inference.predict_probs(model, image, size=(16, 24), scales=(0.5, 1.0),
                                    output_size=(10, 15))
    assert small.shape == (10, 15, 19)


def test_scales_average_and_size_times_scale():
    model = strided_model()
    image = random_image(20, 30)
    both = inference.predict_probs(model, image, size=(16, 24), scales=(0.5, 1.0))
    half = inference.predict_probs(model, image, size=(16, 24), scales=(0.5,))
    full = inference.predict_probs(model, image, size=(16, 24), scales=(1.0,))
    # The same ops on the same inputs; numpy's sum and halving may keep a
    # subnormal that TF flushes: 2 operations, below TINY each.
    np.testing.assert_allclose(both, (half + full) / 2, rtol=0,
                               atol=2 * T.TINY)
    # size x scale 0.5 is the same input as size (8, 12) at scale 1: the
    # same TF ops on the same tensors, bit for bit.
    direct = inference.predict_probs(model, image, size=(8, 12))
    np.testing.assert_array_equal(half, direct)
    assert not np.allclose(half, full, atol=1e-3)


def test_flip_averages_with_the_mirrored_prediction():
    model = strided_model()
    image = random_image(16, 32)
    plain = inference.predict_probs(model, image)
    mirrored = inference.predict_probs(model, image[:, ::-1])[:, ::-1]
    flipped = inference.predict_probs(model, image, flip=True)
    assert not np.allclose(plain, mirrored, atol=1e-3)
    # The same ops on the same tensors (the resize to the image's own size
    # is an exact copy, so mirroring commutes with it): equal but for
    # subnormals numpy keeps and TF flushes (a sum and a halving).
    np.testing.assert_allclose(flipped, (plain + mirrored) / 2, rtol=0,
                               atol=2 * T.TINY)


def test_flip_of_a_symmetric_model_equals_the_plain_prediction():
    model = symmetric_model()
    image = random_image(32, 48)
    plain = inference.predict_probs(model, image, size=(32, 48))
    flipped = inference.predict_probs(model, image, size=(32, 48), flip=True)
    # Mirrored 8x8 pooling windows sum in another order: a cross-path bound.
    tol = probs_tolerance(model, 3, 0, 48 // 8, 2, pool=8)
    # Not mirror-symmetric, so a flip not undone would exceed the bound.
    assert np.abs(plain - plain[:, ::-1]).max() > 2 * tol
    np.testing.assert_allclose(flipped, plain, rtol=0, atol=tol)


def test_batch_function_handles_new_sizes_and_matches_eager():
    model = strided_model()
    fn = inference.make_predict_fn(model, size=(16, 24), scales=(1.0, 1.2), flip=True)
    batch = np.stack([random_image(20, 30, 1), random_image(20, 30, 2)])
    out = fn(tf.constant(batch), tf.constant([20, 30]))
    assert out.shape == (2, 20, 30, 19)
    eager = inference.predict_probs_batch(model, batch, (16, 24), (1.0, 1.2), True)
    # Graph (fused conv + bias) against eager, batch 2 against batch 1:
    # images of side <= 30, logits from grids of side <= ceil(29 / 8) = 4,
    # scales x mirrors = 4 variants.
    tol = probs_tolerance(model, 27, 30, 4, 4)
    np.testing.assert_allclose(out.numpy(), eager.numpy(), rtol=0, atol=tol)
    other = fn(tf.constant(random_image(12, 18)[None]), tf.constant([6, 9]))
    assert other.shape == (1, 6, 9, 19)
    one = inference.predict_probs(model, batch[1], predict_fn=fn)
    np.testing.assert_allclose(one, eager.numpy()[1], rtol=0, atol=tol)


def test_predict_logits_upsamples_main_logits():
    model = strided_model()
    x = tf.random.normal((2, 16, 24, 3))
    assert inference.predict_logits(model, x).shape == (2, 16, 24, 19)
    assert inference.predict_logits(model, x, (4, 5)).shape == (2, 4, 5, 19)
    with pytest.raises(ValueError, match="scales"):
        inference.predict_probs(model, random_image(8, 8), scales=())


def test_load_model_path_resolution(tmp_path):
    model = constant_model(main_class=2, aux_class=4)
    stage = tmp_path / "run" / "stage1"
    stage.mkdir(parents=True)
    model_file = stage / "model.keras"
    model.save(model_file)
    (tmp_path / "run" / "run.json").write_text(json.dumps({"model": "stage1/model.keras"}))
    image = random_image(16, 16)
    for path in (model_file, stage, tmp_path / "run"):
        assert inference.resolve_model_path(path) == str(model_file)
    loaded = inference.load_model(tmp_path / "run")
    assert np.all(inference.predict_labels(loaded, image) == 2)

    missing = tmp_path / "nothing.keras"
    with pytest.raises(ConfigError, match=str(missing)):
        inference.load_model(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=f"{empty}.*model.keras"):
        inference.load_model(empty)
    other = tmp_path / "weights.h5"
    other.write_bytes(b"x")
    with pytest.raises(ConfigError, match="not a .keras file"):
        inference.load_model(other)
    bad_run = tmp_path / "bad_run"
    bad_run.mkdir()
    (bad_run / "run.json").write_text(json.dumps({"model": "s2/model.keras"}))
    with pytest.raises(ConfigError, match=os.path.join(str(bad_run), "s2", "model.keras")):
        inference.load_model(bad_run)
    (bad_run / "run.json").write_text(json.dumps({"stage": "s2"}))
    with pytest.raises(ConfigError, match="no \"model\" entry"):
        inference.load_model(bad_run)
