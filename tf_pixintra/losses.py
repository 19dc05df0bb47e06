"""The paper's losses, one function per equation (TensorFlow ops).

Each takes arrays or tensors and returns a float32 scalar, the mean over the
pixels given (no replica scaling). logits [B,H,W,C]; labels [B,H,W] (255 =
none); d_logits (D = sigmoid), M, Z and valid (0 = crop padding, left out)
[B,H,W] or [B,H,W,1], otherwise matching (no silent broadcasting).

Eq. 6 (pixel sum inside the log) and Eq. 8 (a sum of squares) are used in the per-pixel mean form
of the AdaptSegNet family, BCEWithLogitsLoss averaged over pixels (wasidennis/AdaptSegNet,
train_gta2cityscapes_multi.py; valeoai/ADVENT, advent/utils/func.py, ``bce_loss``): (1) it does not
depend on the image size (literal CTS = HW x per-pixel, ~9e5 at 1280x720); (2) its gradients are
bounded, where the literal log-of-sum is infinite for an empty subdomain; (3) the paper's beta
(1e-3 / 2e-4) was tuned with it. tests/test_losses.py checks the literal forms.
"""

import math

import tensorflow as tf

IGNORE_LABEL = 255
# Hard-mask value of padded pixels (neither easy nor hard); see
# tf_pixintra.data.pipeline.PIXEL_KINDS.
PAD_MASK = 255

_ENTROPY_EPS = 1e-30  # ADVENT's: p = 0 gives 0 and a finite gradient


def _as_float(x):
    x = tf.convert_to_tensor(x)
    return x if x.dtype == tf.float32 else tf.cast(x, tf.float32)


def _drop_unit_channel(x):
    """[B,H,W,1] -> [B,H,W]; other shapes are returned unchanged."""
    if x.shape.rank == 4 and x.shape[-1] == 1:
        return tf.squeeze(x, axis=-1)
    return x


def _pixel_pair(d_logits, mask):
    """d_logits and a per-pixel map as float32 tensors of the same shape."""
    d = _drop_unit_channel(_as_float(d_logits))
    m = _drop_unit_channel(_as_float(mask))
    if not d.shape.is_compatible_with(m.shape):
        raise ValueError(f"discriminator logits of shape {d.shape} do not match the per-pixel map "
                         f"of shape {m.shape}; expected the same [B,H,W] (a trailing axis of "
                         "size 1 is allowed on either)")
    return d, m


def _pixel_mean(values, valid):
    """Mean over every pixel (valid None), else over the valid pixels only."""
    if valid is None:
        return tf.reduce_mean(values)
    v = _drop_unit_channel(_as_float(valid))
    if not v.shape.is_compatible_with(values.shape):
        raise ValueError(f"valid mask of shape {v.shape} does not match the "
                         f"per-pixel maps of shape {values.shape}")
    return _masked_mean(values, v)


def _masked_mean(values, weights):
    """sum(values * weights) / sum(weights); 0 (0 gradient) if no weight."""
    return tf.math.divide_no_nan(tf.reduce_sum(values * weights), tf.reduce_sum(weights))


def hard_mask_and_valid(hard_mask, pad_value=PAD_MASK):
    """(M, valid), float32, from a hard mask padded with ``pad_value`` (1 = hard, 0 = padding)."""
    m = tf.cast(_drop_unit_channel(tf.convert_to_tensor(hard_mask)), tf.int32)
    valid = tf.not_equal(m, pad_value)
    return (tf.cast(tf.equal(m, 1), tf.float32), tf.cast(valid, tf.float32))


def _labels_and_mask(labels, ignore_label):
    """int32 labels with ignored pixels replaced by 0, and a float32 mask."""
    labels = tf.cast(_drop_unit_channel(tf.convert_to_tensor(labels)), tf.int32)
    valid = tf.not_equal(labels, ignore_label)
    safe = tf.where(valid, labels, tf.zeros_like(labels))
    return safe, tf.cast(valid, tf.float32)


def segmentation_cross_entropy(logits, labels, ignore_label=IGNORE_LABEL):
    """Source cross-entropy of Stage I (Eq. 1, first term of L_G_inter): mean
    ``-log softmax(logits)_y`` over the labelled pixels (0 if none); another
    label outside [0, C) raises InvalidArgumentError on every device."""
    logits = _as_float(logits)
    safe, valid = _labels_and_mask(labels, ignore_label)
    num_classes = tf.shape(logits)[-1]
    check = tf.debugging.assert_less(  # unsigned: a negative label is huge
        tf.cast(safe, tf.uint32), tf.cast(num_classes, tf.uint32),
        message="segmentation_cross_entropy: a label outside [0, number of classes) that is "
                "not the ignore label")
    with tf.control_dependencies([check]):
        # -log softmax(z)_y = logsumexp(z) - z_y: the value (up to rounding) and gradient of
        # sparse_softmax_cross_entropy_with_logits without its slow kernel
        # (benchmarks/BENCHMARKS.md, "TF vs PyTorch").
        picked = tf.reduce_sum(tf.one_hot(safe, num_classes) * logits, -1)
        ce = tf.reduce_logsumexp(logits, -1) - picked
    return _masked_mean(ce, valid)


def partial_cross_entropy(logits, labels):
    """Partial segmentation loss on the easy pixels (Eq. 5): pseudo labels (Eq. 3) are 255 on
    hard pixels."""
    return segmentation_cross_entropy(logits, labels, IGNORE_LABEL)


def kld_regularizer(logits, labels):
    """CRST "MRKLD" confidence regulariser of round two (T=1): KL(uniform || p) up to a constant,
    mean ``sum_c(-log p_c) / C`` over labelled pixels (0 if none)."""
    logits = _as_float(logits)
    _, valid = _labels_and_mask(labels, IGNORE_LABEL)
    neg_mean_log_p = -tf.reduce_mean(tf.nn.log_softmax(logits, axis=-1), axis=-1)
    return _masked_mean(neg_mean_log_p, valid)


def inter_discriminator_loss(d_logits_source, d_logits_target):
    """Stage I discriminator loss (Eq. 1, L_D_inter):
    ``0.5 * mean BCE(D(G(x_s)), 1) + 0.5 * mean BCE(D(G(x_t)), 0)``. Eq. 1 sums the terms;
    AdaptSegNet and ADVENT, whose D learning rate the paper reuses, halve them."""
    ds = _as_float(d_logits_source)
    dt = _as_float(d_logits_target)
    # BCE(x, 1) = softplus(-x); BCE(x, 0) = softplus(x).
    return 0.5 * (tf.reduce_mean(tf.nn.softplus(-ds)) + tf.reduce_mean(tf.nn.softplus(dt)))


def inter_generator_loss(d_logits_target):
    """Stage I adversarial term of G (Eq. 1): ``-log D(G(x_t))``, i.e. mean
    BCE(D(G(x_t)), 1): G makes target maps look "source"."""
    dt = _as_float(d_logits_target)
    return tf.reduce_mean(tf.nn.softplus(-dt))


def weighted_self_information(probs):
    """ADVENT weighted self-information ``-p_c * log(p_c + 1e-30) / log(C)``,
    float32 [B,H,W,C] (Stage I AdvEnt); its channel sum is in [0, 1]."""
    p = _as_float(probs)
    num_classes = p.shape[-1]
    if num_classes is None:
        log_c = tf.math.log(tf.cast(tf.shape(p)[-1], tf.float32))
    else:
        if num_classes < 2:
            raise ValueError(f"need at least 2 classes, got {num_classes}")
        log_c = math.log(num_classes)
    return -p * tf.math.log(p + _ENTROPY_EPS) / log_c


def pla_discriminator_loss(d_logits, hard_mask, valid=None):
    """Pixel-level adversarial loss of D (Eq. 6), per pixel: ``mean_hw BCE(D, M)`` (hard = 1)."""
    d, m = _pixel_pair(d_logits, hard_mask)
    bce = m * tf.nn.softplus(-d) + (1.0 - m) * tf.nn.softplus(d)
    return _pixel_mean(bce, valid)


def pla_generator_loss(d_logits, hard_mask, valid=None):
    """Pixel-level adversarial loss of G (Eq. 6), per-pixel reading:
    ``-(1/HW) sum_{M=1} log(1 - D)``, G makes hard pixels look easy."""
    d, m = _pixel_pair(d_logits, hard_mask)
    # -log(1 - sigmoid(d)) = softplus(d)
    return _pixel_mean(m * tf.nn.softplus(d), valid)


def cts_discriminator_loss(d_logits, z, valid=None):
    """Continuously indexed adversarial loss of D (Eq. 8), per pixel:
    ``mean_hw (D - Z)^2``, D regresses the continuous index Z (Eq. 7)."""
    d, zz = _pixel_pair(d_logits, z)
    return _pixel_mean(tf.square(tf.sigmoid(d) - zz), valid)


def cts_generator_loss(d_logits, hard_mask, valid=None):
    """Continuously indexed adversarial loss of G (Eq. 8), per pixel:
    ``mean_hw (D o M)^2``, G pushes D towards 0 (easy) on hard pixels."""
    d, m = _pixel_pair(d_logits, hard_mask)
    return _pixel_mean(tf.square(tf.sigmoid(d) * m), valid)
