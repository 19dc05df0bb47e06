"""Tests for tf_pixintra.losses with hand-computed values.

Reference numbers used below (natural logs):
  logits [0, log 3] -> softmax p = [0.25, 0.75]
  -log 0.75 = 0.28768207, -log 0.25 = 1.38629436, log 2 = 0.69314718
  sigmoid(log 3) = 0.75, sigmoid(0) = 0.5
  softplus(log 3) = log 4 = 1.38629436,
  softplus(-log 3) = log(4/3) = 0.28768207
"""

import math

import numpy as np
import pytest
import tensorflow as tf

import tolerances as T
from tf_pixintra import losses

LOG3 = math.log(3.0)
NEG_LOG_075 = 0.28768207245178085   # -log 0.75
NEG_LOG_025 = 1.3862943611198906    # -log 0.25 = log 4
LOG2 = 0.6931471805599453

# Every expected value here is worked out by hand for 1 to 4 pixels: the
# code makes at most 12 float32 roundings and 3 exp/log/log1p on numbers of
# size <= 4 (or on the value itself when larger), so it is within
# HAND_ULPS u of the value, times max(1, |value|).
HAND_ULPS = 12 + 3 * T.TRANSCENDENTAL_ULPS
HAND_TOL = HAND_ULPS * T.U      # values of size <= 1


def approx(value):
    return pytest.approx(value, rel=0,
                         abs=HAND_TOL * max(1.0, abs(float(value))))


def _grad(fn, x, *rest):
    x = tf.Variable(np.asarray(x, np.float32))
    with tf.GradientTape() as tape:
        loss = fn(x, *rest)
    return loss, tape.gradient(loss, x).numpy()


def _is_float32_scalar(v):
    return v.dtype == tf.float32 and v.shape == ()


# ------------------------------------------------------------------- CE
def test_segmentation_ce_single_pixel():
    logits = np.array([[[[0.0, LOG3]]]], np.float32)          # 1x1x1x2
    v1 = losses.segmentation_cross_entropy(logits, np.array([[[1]]]))
    v0 = losses.segmentation_cross_entropy(logits, np.array([[[0]]]))
    assert _is_float32_scalar(v1)
    assert float(v1) == approx(NEG_LOG_075)
    assert float(v0) == approx(NEG_LOG_025)


def test_segmentation_ce_mean_over_labelled_pixels_only():
    logits = np.array([[[[0.0, LOG3], [0.0, LOG3]]]], np.float32)  # 1x1x2x2
    both = losses.segmentation_cross_entropy(
        logits, np.array([[[1, 0]]], np.uint8))
    # (0.28768207 + 1.38629436) / 2 = 0.83698822
    assert float(both) == approx(0.8369882167658408)
    one = losses.segmentation_cross_entropy(
        logits, np.array([[[1, 255]]], np.uint8))
    # the ignored pixel is not in the denominator
    assert float(one) == approx(NEG_LOG_075)
    custom = losses.segmentation_cross_entropy(
        logits, np.array([[[1, 0]]]), ignore_label=0)
    assert float(custom) == approx(NEG_LOG_075)


def test_partial_ce_gradient_zero_on_ignored_pixel():
    logits = np.array([[[[0.0, LOG3], [2.0, -1.0]]]], np.float32)
    labels = np.array([[[1, 255]]], np.uint8)
    loss, g = _grad(losses.partial_cross_entropy, logits, labels)
    assert float(loss) == approx(NEG_LOG_075)
    # d CE / d logits = p - onehot = [0.25, 0.75 - 1] (one labelled pixel)
    np.testing.assert_allclose(g[0, 0, 0], [0.25, -0.25], rtol=0,
                               atol=HAND_TOL)
    np.testing.assert_array_equal(g[0, 0, 1], [0.0, 0.0])


def test_partial_ce_no_labelled_pixel_is_exactly_zero_without_nan():
    logits = np.array([[[[0.0, LOG3], [5.0, -5.0]]]], np.float32)
    labels = np.full((1, 1, 2), 255, np.uint8)
    loss, g = _grad(losses.partial_cross_entropy, logits, labels)
    assert float(loss) == 0.0
    assert np.all(g == 0.0) and not np.any(np.isnan(g))


def test_partial_ce_in_tf_function_and_tensors():
    fn = tf.function(losses.partial_cross_entropy)
    logits = tf.constant([[[[0.0, LOG3]]]])
    labels = tf.constant([[[1]]], tf.uint8)
    assert float(fn(logits, labels)) == approx(NEG_LOG_075)
    labels = tf.constant([[[255]]], tf.uint8)
    assert float(fn(logits, labels)) == 0.0


def test_ce_batch_mean_is_pixel_mean_without_replica_scaling():
    # two images, one labelled pixel each: mean of the two per-pixel CEs
    logits = np.array([[[[0.0, LOG3]]], [[[0.0, LOG3]]]], np.float32)
    labels = np.array([[[1]], [[0]]], np.int64)
    v = losses.partial_cross_entropy(logits, labels)
    assert float(v) == approx((NEG_LOG_075 + NEG_LOG_025) / 2)


# ------------------------------------------------------------------ KLD
def test_kld_regularizer_values_and_gradient():
    logits = np.array([[[[0.0, LOG3], [0.0, 0.0]]]], np.float32)
    # pixel 1: (-log .25 - log .75) / 2 = 0.83698822; pixel 2 ignored
    loss, g = _grad(losses.kld_regularizer, logits,
                    np.array([[[0, 255]]], np.uint8))
    assert _is_float32_scalar(loss)
    assert float(loss) == approx(0.8369882167658408)
    # d/dz of -(1/C) sum_c log p_c = p - 1/C = [-0.25, 0.25]
    np.testing.assert_allclose(g[0, 0, 0], [-0.25, 0.25], rtol=0,
                               atol=HAND_TOL)
    np.testing.assert_array_equal(g[0, 0, 1], [0.0, 0.0])
    # uniform logits: -log 0.5
    both = losses.kld_regularizer(logits, np.array([[[255, 3]]], np.uint8))
    assert float(both) == approx(LOG2)


def test_kld_regularizer_zero_when_unlabelled():
    logits = np.array([[[[0.0, LOG3]]]], np.float32)
    loss, g = _grad(losses.kld_regularizer, logits,
                    np.array([[[255]]], np.uint8))
    assert float(loss) == 0.0 and np.all(g == 0.0)


# --------------------------------------------------------- Stage I (Eq. 1)
def test_inter_discriminator_loss_is_average_of_two_means():
    ds = np.array([[[[LOG3]]]], np.float32)        # D(src) = 0.75
    dt = np.array([[[[0.0], [0.0]]]], np.float32)  # D(tgt) = 0.5, other size
    v = losses.inter_discriminator_loss(ds, dt)
    # 0.5 * (-log 0.75 + -log(1 - 0.5)) = 0.5 * (0.28768207 + 0.69314718)
    assert _is_float32_scalar(v)
    assert float(v) == approx(0.4904146265058631)


def test_inter_generator_loss():
    v = losses.inter_generator_loss(np.array([[[[LOG3]]]], np.float32))
    assert float(v) == approx(NEG_LOG_075)   # -log D


def test_weighted_self_information():
    p = np.array([[[[0.25, 0.75], [1.0, 0.0]]]], np.float32)
    w = losses.weighted_self_information(p).numpy()
    # -0.25 log2 0.25 = 0.5; -0.75 log2 0.75 = 0.31127812 (divided by log2 2)
    np.testing.assert_allclose(w[0, 0, 0], [0.5, 0.3112781244591328],
                               rtol=0, atol=HAND_TOL)
    np.testing.assert_array_equal(w[0, 0, 1], [0.0, 0.0])   # no NaN
    # summed over channels: binary entropy of 0.25 in bits
    assert w[0, 0, 0].sum() == approx(0.8112781244591328)
    x = tf.Variable(p)
    with tf.GradientTape() as tape:
        s = tf.reduce_sum(losses.weighted_self_information(x))
    assert np.all(np.isfinite(tape.gradient(s, x).numpy()))


def test_weighted_self_information_normalised_by_log_c():
    p = np.full((1, 1, 1, 4), 0.25, np.float32)  # uniform over 4 -> 1 in sum
    w = losses.weighted_self_information(p).numpy()
    np.testing.assert_allclose(w, np.full_like(p, 0.25), rtol=0,
                               atol=HAND_TOL)


# --------------------------------------------------------------- PLA
D2 = np.array([[[LOG3, LOG3]]], np.float32)      # 1x1x2, D = [.75, .75]
M2 = np.array([[[1, 0]]], np.uint8)               # pixel 1 hard, 2 easy


@pytest.mark.parametrize("d_shape,m_shape", [
    ((1, 1, 2), (1, 1, 2)), ((1, 1, 2, 1), (1, 1, 2)),
    ((1, 1, 2), (1, 1, 2, 1)), ((1, 1, 2, 1), (1, 1, 2, 1))])
def test_pla_discriminator_loss_shapes(d_shape, m_shape):
    v = losses.pla_discriminator_loss(D2.reshape(d_shape),
                                      M2.reshape(m_shape))
    # (BCE(.75, 1) + BCE(.75, 0)) / 2 = (0.28768207 + 1.38629436) / 2
    assert _is_float32_scalar(v)
    assert float(v) == approx(0.8369882167658408)


def test_pla_generator_loss_value_and_no_gradient_on_easy_pixels():
    loss, g = _grad(losses.pla_generator_loss, D2[..., None], M2)
    # -(1/2) log(1 - 0.75) = 0.69314718
    assert float(loss) == approx(LOG2)
    # d/dd softplus(d) / HW = sigmoid(d) / 2 = 0.375 on the hard pixel
    np.testing.assert_allclose(g[0, 0, 0, 0], 0.375, rtol=0, atol=HAND_TOL)
    assert g[0, 0, 1, 0] == 0.0


def test_pla_generator_loss_stable_for_large_logits():
    d = np.array([[[100.0, -100.0]]], np.float32)
    v = losses.pla_generator_loss(d, np.array([[[1, 1]]]))
    # softplus(100) ~= 100, softplus(-100) ~= 0 -> mean 50
    assert float(v) == approx(50.0)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="do not match"):
        losses.pla_generator_loss(np.zeros((1, 2, 2)), np.zeros((1, 4, 4)))


# --------------------------------------------------------------- CTS
def test_cts_discriminator_loss():
    d = np.array([[[LOG3, 0.0]]], np.float32)     # D = [.75, .5]
    z = np.array([[[0.5, 0.0]]], np.float32)
    v = losses.cts_discriminator_loss(d, z[..., None])
    # ((.75 - .5)^2 + (.5 - 0)^2) / 2 = (0.0625 + 0.25) / 2
    assert _is_float32_scalar(v)
    assert float(v) == approx(0.15625)


def test_cts_generator_loss_value_and_no_gradient_on_easy_pixels():
    d = np.array([[[LOG3, 0.0]]], np.float32)
    loss, g = _grad(losses.cts_generator_loss, d, M2)
    # (.75^2 + 0) / 2
    assert float(loss) == approx(0.28125)
    # d/dd (s^2)/2 = s * s(1 - s) = .75 * .75 * .25
    np.testing.assert_allclose(g[0, 0, 0], 0.140625, rtol=0, atol=HAND_TOL)
    assert g[0, 0, 1] == 0.0


def test_per_pixel_losses_are_batch_means():
    rng = np.random.default_rng(0)
    d = rng.normal(size=(2, 3, 4, 1)).astype(np.float32)
    m = (rng.random((2, 3, 4)) > 0.5).astype(np.uint8)
    z = rng.random((2, 3, 4)).astype(np.float32) * m
    for fn, arg in [(losses.pla_discriminator_loss, m),
                    (losses.pla_generator_loss, m),
                    (losses.cts_discriminator_loss, z),
                    (losses.cts_generator_loss, m)]:
        whole = float(fn(d, arg))
        halves = [float(fn(d[i:i + 1], arg[i:i + 1])) for i in range(2)]
        # Means of 24 and of 12 non-negative terms, each term a few
        # roundings and one exp/log: relative gamma(24 + 3 + T) per side.
        rel = T.across(T.gamma(24 + 3 + T.TRANSCENDENTAL_ULPS))
        assert whole == pytest.approx(sum(halves) / 2, rel=rel)


# ---------------------------------------------- literal Eq. 6 / Eq. 8
# The paper's printed forms, per image and averaged over the batch; not
# used for training (tf_pixintra.losses, module docstring).
_pixel_pair = losses._pixel_pair  # pylint: disable=protected-access


def _per_image_sum(x):
    """Sum over every axis but the first: [B,...] -> [B]."""
    return tf.reduce_sum(x, axis=tf.range(1, tf.rank(x)))


def _masked_log_sum(log_values, mask):
    """Per image log(sum_hw mask * exp(log_values)), computed stably; -inf
    when the mask is empty (the literal loss is then infinite)."""
    neg_inf = tf.fill(tf.shape(log_values), -math.inf)
    terms = tf.where(mask > 0, log_values + tf.math.log(mask), neg_inf)
    return tf.reduce_logsumexp(terms, axis=tf.range(1, tf.rank(terms)))


def pla_discriminator_loss_literal(d_logits, hard_mask):
    """Eq. 6: ``-log(sum D o M) - log(sum (1-D) o (1-M))``; +inf when an
    image has no hard or no easy pixel."""
    d, m = _pixel_pair(d_logits, hard_mask)
    log_d = -tf.nn.softplus(-d)          # log sigmoid(d)
    log_1md = -tf.nn.softplus(d)         # log(1 - sigmoid(d))
    return tf.reduce_mean(-_masked_log_sum(log_d, m)
                          - _masked_log_sum(log_1md, 1.0 - m))


def pla_generator_loss_literal(d_logits, hard_mask):
    """Eq. 6 (G): ``-log(sum (1 - D) o M)``; +inf when an image has no hard
    pixel."""
    d, m = _pixel_pair(d_logits, hard_mask)
    return tf.reduce_mean(-_masked_log_sum(-tf.nn.softplus(d), m))


def cts_discriminator_loss_literal(d_logits, z):
    """Eq. 8 (D): ``||D - Z||_F^2``."""
    d, zz = _pixel_pair(d_logits, z)
    return tf.reduce_mean(_per_image_sum(tf.square(tf.sigmoid(d) - zz)))


def cts_generator_loss_literal(d_logits, hard_mask):
    """Eq. 8 (G): ``||D o M||_F^2``."""
    d, m = _pixel_pair(d_logits, hard_mask)
    return tf.reduce_mean(_per_image_sum(tf.square(tf.sigmoid(d) * m)))


def test_literal_cts_is_hw_times_per_pixel():
    d = np.array([[[LOG3, 0.0]]], np.float32)
    z = np.array([[[0.5, 0.0]]], np.float32)
    assert float(cts_discriminator_loss_literal(d, z)) == \
        approx(0.3125)                        # 2 * 0.15625
    assert float(cts_generator_loss_literal(d, M2)) == \
        approx(0.5625)                        # .75^2
    rng = np.random.default_rng(1)
    d = rng.normal(size=(3, 5, 7, 1)).astype(np.float32)
    m = (rng.random((3, 5, 7)) > 0.5).astype(np.float32)
    hw = 5 * 7
    # Sums of 3 x 5 x 7 non-negative terms (a sigmoid, a product, a square
    # each) against their mean times hw: relative gamma(105 + 3 + T) each.
    rel = T.across(T.gamma(3 * hw + 3 + T.TRANSCENDENTAL_ULPS))
    assert float(cts_generator_loss_literal(d, m)) == pytest.approx(
        hw * float(losses.cts_generator_loss(d, m)), rel=rel)
    assert float(cts_discriminator_loss_literal(d, m)) == \
        pytest.approx(hw * float(losses.cts_discriminator_loss(d, m)),
                      rel=rel)


def test_literal_pla_one_pixel_per_subdomain_is_hw_times_per_pixel():
    # D literal: -log .75 - log .25 = 1.67397643 = 2 * 0.83698822
    assert float(pla_discriminator_loss_literal(D2, M2)) == \
        approx(1.6739764335716716)
    # G literal: -log(1 - .75) = 1.38629436 = 2 * 0.69314718
    assert float(pla_generator_loss_literal(D2, M2)) == \
        approx(NEG_LOG_025)


def test_literal_pla_generator_with_n_equal_hard_pixels():
    # n = 2 hard pixels of D = 0.5 among HW = 4:
    # literal = -log(2 * 0.5) = 0; per-pixel = (2/4) * log 2 = 0.34657359;
    # in general literal = -log n + (HW / n) * per-pixel.
    d = np.zeros((1, 2, 2), np.float32)
    m = np.array([[[1, 1], [0, 0]]], np.uint8)
    lit = float(pla_generator_loss_literal(d, m))
    per = float(losses.pla_generator_loss(d, m))
    assert lit == approx(0.0)
    assert per == approx(0.34657359027997264)
    assert lit == approx(-math.log(2) + (4 / 2) * per)


def test_literal_pla_infinite_on_empty_subdomain_per_pixel_finite():
    d = np.zeros((1, 2, 2), np.float32)
    m = np.zeros((1, 2, 2), np.uint8)      # no hard pixel
    assert math.isinf(float(pla_generator_loss_literal(d, m)))
    assert math.isinf(float(pla_discriminator_loss_literal(d, m)))
    assert float(losses.pla_generator_loss(d, m)) == 0.0
    assert float(losses.pla_discriminator_loss(d, m)) == \
        approx(LOG2)


# ------------------------------------------- padded pixels (valid masks)
# Three pixels: d = [0, log 3, log 3], hard mask [1, 0, 255]: a hard pixel,
# an easy pixel and a padded one (255 = no pixel, as the input pipeline pads).
PAD_D = np.array([[[0.0, LOG3, LOG3]]], np.float32)
PAD_MASK = np.array([[[1, 0, 255]]], np.uint8)
PAD_Z = np.array([[[0.5, 0.0, 0.0]]], np.float32)


def test_hard_mask_and_valid_splits_padding_from_easy():
    m, valid = losses.hard_mask_and_valid(PAD_MASK)
    np.testing.assert_array_equal(m.numpy(), [[[1.0, 0.0, 0.0]]])
    np.testing.assert_array_equal(valid.numpy(), [[[1.0, 1.0, 0.0]]])


@pytest.mark.parametrize("fn, target, expected", [
    # (softplus(0) + softplus(log 3)) / 2 = (log 2 + log 4) / 2 = 1.5 log 2
    (losses.pla_discriminator_loss, "m", 1.5 * LOG2),
    # softplus(0) on the one hard pixel, over 2 valid pixels: log 2 / 2
    (losses.pla_generator_loss, "m", 0.5 * LOG2),
    # ((0.5 - 0.5)^2 + (0.75 - 0)^2) / 2 = 0.28125
    (losses.cts_discriminator_loss, "z", 0.28125),
    # (0.5 * 1)^2 / 2 = 0.125
    (losses.cts_generator_loss, "m", 0.125),
])
def test_adversarial_losses_leave_padded_pixels_out(fn, target, expected):
    m, valid = losses.hard_mask_and_valid(PAD_MASK)
    t = m if target == "m" else PAD_Z
    loss, grad = _grad(lambda d: fn(d, t, valid), PAD_D)
    assert _is_float32_scalar(loss)
    assert float(loss) == approx(expected)
    assert grad[0, 0, 2] == 0.0                    # padding: no gradient
    # The same as the loss of the two real pixels alone, without a mask.
    t_real = (m if target == "m" else tf.constant(PAD_Z))[:, :, :2]
    assert float(fn(PAD_D[:, :, :2], t_real)) == approx(expected)


@pytest.mark.parametrize("fn", [losses.pla_discriminator_loss,
                                losses.pla_generator_loss,
                                losses.cts_discriminator_loss,
                                losses.cts_generator_loss])
def test_all_valid_mask_equals_plain_mean_and_empty_mask_is_zero(fn):
    rng = np.random.default_rng(3)
    d = rng.normal(0, 2, (2, 4, 5, 1)).astype(np.float32)
    m = (rng.random((2, 4, 5)) < 0.4).astype(np.float32)
    plain = float(fn(d, m))
    # One sum of 40 float32 terms either way, divided by 40: a few ulps.
    assert float(fn(d, m, np.ones_like(m))) == approx(plain)
    loss, grad = _grad(lambda x: fn(x, m, np.zeros_like(m)), d)
    assert float(loss) == 0.0 and not grad.any()


def test_valid_mask_shape_mismatch_raises():
    with pytest.raises(ValueError, match="valid mask"):
        losses.pla_generator_loss(np.zeros((1, 2, 3)), np.zeros((1, 2, 3)),
                                  np.ones((1, 3, 2)))


@pytest.mark.parametrize("bad", [19, -1])
def test_cross_entropy_rejects_a_label_outside_the_classes(bad):
    logits = np.zeros((1, 2, 2, 19), np.float32)
    labels = np.array([[[0, 255], [3, bad]]], np.int32)
    with pytest.raises(tf.errors.InvalidArgumentError, match="outside"):
        losses.segmentation_cross_entropy(logits, labels)
    with pytest.raises(tf.errors.InvalidArgumentError, match="outside"):
        tf.function(losses.segmentation_cross_entropy)(logits, labels)
