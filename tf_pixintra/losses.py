"""The paper's losses, one function per equation (TensorFlow ops).

Each accepts numpy arrays or tensors, eagerly or in ``tf.function``, and
returns a float32 scalar: the mean over the pixels it is given, with no
replica scaling (the caller weights it, e.g. by ``replica_share``).

Shapes: ``logits`` [B,H,W,C]; ``labels`` [B,H,W] (255 = none);
discriminator logits ``d_logits`` (``D = sigmoid(d_logits)``), hard mask
``M``, continuous index ``Z`` and ``valid`` [B,H,W] or [B,H,W,1]: a trailing
axis of size 1 is dropped, the rest must match (no silent broadcasting).
``valid`` (1 = real pixel, 0 = crop padding, see ``hard_mask_and_valid``)
leaves padded pixels out of the value, the gradient and the mean.

Per-pixel reading of Eq. 6 and Eq. 8: literally, Eq. 6 puts the pixel sum
inside the log (``L_D = -log(sum D o M) - log(sum (1 - D) o (1 - M))``,
``L_G = -log(sum (1 - D) o M)``) and Eq. 8 is a squared Frobenius norm (a
sum over H x W). We use the per-pixel mean form of the AdaptSegNet family,
whose adversarial losses are ``BCEWithLogitsLoss`` averaged over pixels
(wasidennis/AdaptSegNet, train_gta2cityscapes_multi.py; valeoai/ADVENT,
advent/utils/func.py, ``bce_loss``): PLA ``L_D = mean BCE(D, M)``,
``L_G = -(1/HW) sum_{hard} log(1 - D)``; CTS ``L_D = mean (D - Z)^2``,
``L_G = mean (D o M)^2``. Why: (1) value and gradients do not depend on the
image size (literal CTS = HW x per-pixel, ~9e5 at 1280x720, so beta would
need re-tuning per crop size); (2) per-pixel gradients are bounded, while
the literal log-of-sum is infinite for an empty subdomain and concentrates
its gradient on few pixels; (3) the beta = 1e-3 / 2e-4 the paper reuses was
tuned with per-pixel mean BCE. tests/test_losses.py checks the literal forms
against these.
"""

import math

import tensorflow as tf

IGNORE_LABEL = 255
# Hard-mask value of padded pixels (neither easy nor hard); see
# tf_pixintra.data.pipeline.PIXEL_KINDS.
PAD_MASK = 255

# ADVENT adds this inside log2 so that p = 0 gives 0 and a finite gradient.
_ENTROPY_EPS = 1e-30


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
        raise ValueError(
            f"discriminator logits of shape {d.shape} do not match the "
            f"per-pixel map of shape {m.shape}; expected the same [B,H,W] "
            "(a trailing axis of size 1 is allowed on either)")
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
    """sum(values * weights) / sum(weights); 0, with a 0 gradient, if no
    weight."""
    return tf.math.divide_no_nan(tf.reduce_sum(values * weights),
                                 tf.reduce_sum(weights))


def hard_mask_and_valid(hard_mask, pad_value=PAD_MASK):
    """(M, valid), float32, from a hard mask padded with ``pad_value``.

    M is 1 on hard pixels, 0 elsewhere (padding included); valid is 0 on
    padding, 1 elsewhere.
    """
    m = _drop_unit_channel(tf.convert_to_tensor(hard_mask))
    m = tf.cast(m, tf.int32)
    valid = tf.not_equal(m, pad_value)
    return (tf.cast(tf.equal(m, 1), tf.float32), tf.cast(valid, tf.float32))


def _labels_and_mask(labels, ignore_label):
    """int32 labels with ignored pixels replaced by 0, and a float32 mask."""
    labels = _drop_unit_channel(tf.convert_to_tensor(labels))
    labels = tf.cast(labels, tf.int32)
    valid = tf.not_equal(labels, ignore_label)
    safe = tf.where(valid, labels, tf.zeros_like(labels))
    return safe, tf.cast(valid, tf.float32)


def segmentation_cross_entropy(logits, labels, ignore_label=IGNORE_LABEL):
    """Source cross-entropy of Stage I (Eq. 1, first term of L_G_inter).

    Mean of ``-log softmax(logits)_y`` over the pixels labelled other than
    ``ignore_label`` (the others give no value and no gradient); 0 with a 0
    gradient when none is. A label outside [0, C) raises
    InvalidArgumentError on every device.

    Args:
      logits: [B,H,W,C] class scores (before softmax).
      labels: [B,H,W] integer class indices.
      ignore_label: label value that marks unlabelled pixels.
    """
    logits = _as_float(logits)
    safe, valid = _labels_and_mask(labels, ignore_label)
    num_classes = tf.shape(logits)[-1]
    check = tf.debugging.assert_less(  # unsigned: a negative label is huge
        tf.cast(safe, tf.uint32), tf.cast(num_classes, tf.uint32),
        message="segmentation_cross_entropy: a label outside [0, number of "
                "classes) that is not the ignore label")
    with tf.control_dependencies([check]):
        # -log softmax(z)_y = logsumexp(z) - z_y, without the slower
        # sparse_softmax_cross_entropy_with_logits kernel
        # (benchmarks/BENCHMARKS.md, "TF vs PyTorch"); same gradient.
        picked = tf.reduce_sum(tf.one_hot(safe, num_classes) * logits, -1)
        ce = tf.reduce_logsumexp(logits, -1) - picked
    return _masked_mean(ce, valid)


def partial_cross_entropy(logits, labels):
    """Partial segmentation loss on the easy pixels E_i (Eq. 5).

    The pseudo label (Eq. 3) is 255 on hard pixels, so this is the
    cross-entropy averaged over the pseudo-labelled pixels of the batch; 0
    with a 0 gradient when there is none.
    """
    return segmentation_cross_entropy(logits, labels, IGNORE_LABEL)


def kld_regularizer(logits, labels):
    """CRST "MRKLD" confidence regulariser used in round two (T=1).

    KL(uniform || p) up to a constant: mean over pseudo-labelled pixels
    (label != 255) of ``sum_c(-log p_c) / C``; 0 with a 0 gradient when
    there is none. The caller multiplies by lambda (0.1).
    """
    logits = _as_float(logits)
    _, valid = _labels_and_mask(labels, IGNORE_LABEL)
    neg_mean_log_p = -tf.reduce_mean(tf.nn.log_softmax(logits, axis=-1),
                                     axis=-1)
    return _masked_mean(neg_mean_log_p, valid)


def inter_discriminator_loss(d_logits_source, d_logits_target):
    """Stage I discriminator loss (Eq. 1, L_D_inter); D says source = 1.

    ``0.5 * mean BCE(D(G(x_s)), 1) + 0.5 * mean BCE(D(G(x_t)), 0)``, each
    map averaged over its own pixels. Eq. 1 sums the two terms; we halve
    them as AdaptSegNet and ADVENT do, whose D learning rate (Adam 1e-4)
    the paper reuses (with Adam the factor 2 matters little anyway).
    """
    ds = _as_float(d_logits_source)
    dt = _as_float(d_logits_target)
    # BCE(x, 1) = softplus(-x); BCE(x, 0) = softplus(x).
    return 0.5 * (tf.reduce_mean(tf.nn.softplus(-ds))
                  + tf.reduce_mean(tf.nn.softplus(dt)))


def inter_generator_loss(d_logits_target):
    """Stage I adversarial term of G (Eq. 1): ``-log D(G(x_t))``.

    Mean BCE(D(G(x_t)), 1): G makes target maps look "source". The caller
    weights it by lambda_adv.
    """
    dt = _as_float(d_logits_target)
    return tf.reduce_mean(tf.nn.softplus(-dt))


def weighted_self_information(probs):
    """ADVENT weighted self-information map (Stage I AdvEnt, IntraDA).

    ``-p_c * log(p_c + 1e-30) / log(C)`` per channel (ADVENT's epsilon: p = 0
    gives 0 and a finite gradient); its channel sum is the normalised
    entropy in [0, 1]. Returns float32 [B,H,W,C].
    """
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
    """Pixel-level adversarial loss of D (Eq. 6), per-pixel reading.

    ``mean_hw BCE(D, M)``: D learns hard = 1, easy = 0 on every valid pixel.
    """
    d, m = _pixel_pair(d_logits, hard_mask)
    bce = m * tf.nn.softplus(-d) + (1.0 - m) * tf.nn.softplus(d)
    return _pixel_mean(bce, valid)


def pla_generator_loss(d_logits, hard_mask, valid=None):
    """Pixel-level adversarial loss of G (Eq. 6), per-pixel reading.

    ``-(1/HW) sum_{M=1} log(1 - D)`` = ``mean(M * softplus(d))``, HW counting
    the valid pixels: G makes hard pixels look easy; easy pixels give no
    value and no gradient.
    """
    d, m = _pixel_pair(d_logits, hard_mask)
    return _pixel_mean(m * tf.nn.softplus(d), valid)


def cts_discriminator_loss(d_logits, z, valid=None):
    """Continuously indexed adversarial loss of D (Eq. 8), per pixel.

    ``mean_hw (D - Z)^2``: D regresses the continuous index Z (Eq. 7).
    """
    d, zz = _pixel_pair(d_logits, z)
    return _pixel_mean(tf.square(tf.sigmoid(d) - zz), valid)


def cts_generator_loss(d_logits, hard_mask, valid=None):
    """Continuously indexed adversarial loss of G (Eq. 8), per pixel.

    ``mean_hw (D o M)^2``: G pushes D towards 0 (easy) on hard pixels; easy
    pixels give no gradient.
    """
    d, m = _pixel_pair(d_logits, hard_mask)
    return _pixel_mean(tf.square(tf.sigmoid(d) * m), valid)
