"""The paper's losses, one function per equation (TensorFlow ops).

Every function accepts numpy arrays or tensors, works eagerly and inside
``tf.function``, and returns a float32 scalar: the mean over the pixels of
the batch it is given. There is no replica scaling inside: under a
``tf.distribute`` strategy the caller divides by the number of replicas (or
multiplies by local/global batch) itself.

Shapes: ``logits`` [B,H,W,C]; ``labels`` [B,H,W] (uint8 or int, 255 = none);
discriminator logits ``d_logits`` [B,H,W,1] or [B,H,W]; hard mask ``M`` and
continuous index ``Z`` [B,H,W] or [B,H,W,1]. A trailing axis of size 1 is
dropped from d_logits and masks alike, so any pairing of the two layouts
works; the remaining shapes must match (no silent broadcasting).
Discriminators output logits; ``D = sigmoid(d_logits)``.

The four per-pixel adversarial losses take an optional ``valid`` map (1 =
a real pixel, 0 = padding of a crop, see ``hard_mask_and_valid``): padded
pixels are neither easy nor hard, so they give no value and no gradient and
"mean" is over the valid pixels. Under a strategy the caller then weights
the loss by ``replica_share`` of the valid pixels instead of 1/R.

Per-pixel reading of Eq. 6 and Eq. 8
------------------------------------
Literally, Eq. 6 puts the sum over pixels *inside* the logarithm,
``L_D = -log(sum_hw D o M) - log(sum_hw (1 - D) o (1 - M))`` and
``L_G = -log(sum_hw (1 - D) o M)``, and Eq. 8 is a squared Frobenius norm,
i.e. a *sum* of squares over the H x W pixels. We train with the per-pixel
mean form of the AdaptSegNet family, whose adversarial losses are
``BCEWithLogitsLoss`` averaged over the pixels (wasidennis/AdaptSegNet,
train_gta2cityscapes_multi.py; valeoai/ADVENT, advent/utils/func.py,
``bce_loss``):

* PLA (Eq. 6): ``L_D = mean_hw BCE(D, M)``,
  ``L_G = -(1/HW) sum_{hard} log(1 - D)``;
* CTS (Eq. 8): ``L_D = mean_hw (D - Z)^2``, ``L_G = mean_hw (D o M)^2``.

Why: (1) the value and gradients do not depend on the image size; the
literal CTS loss is exactly HW times the per-pixel one (about 9e5 at
1280x720), so beta would have to be re-tuned for every crop size;
(2) the per-pixel gradients are bounded (|dL/dd| <= 1/HW per pixel for the
BCE forms), whereas the literal log-of-sum is infinite when a subdomain is
empty (no hard pixel in an image) and its gradient concentrates on a few
pixels; (3) the AdaptSegNet family, whose beta = 1e-3 / 2e-4 the paper
reuses, tuned those weights with per-pixel mean BCE losses. The literal
forms, per image and averaged over the batch, are in tests/test_losses.py:
literal CTS = HW x per-pixel CTS; literal PLA equals HW x per-pixel PLA when
each subdomain holds exactly one pixel.
"""

import math

import tensorflow as tf

IGNORE_LABEL = 255
# Hard-mask value of padded pixels (no pixel: neither easy nor hard); see
# tf_pixintra.data.pipeline.PIXEL_KINDS.
PAD_MASK = 255

# ADVENT adds this inside log2 so that p = 0 gives 0 and a finite gradient.
_ENTROPY_EPS = 1e-30


# ---------------------------------------------------------------- helpers
def _as_float(x):
    """Tensor of float32 from a numpy array or tensor of any dtype."""
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


def _valid_weights(valid, like):
    """float32 weights of the counted pixels (1 = counted), shaped as `like`.

    None counts every pixel. A trailing axis of size 1 is dropped; the shape
    must match `like` (no silent broadcasting).
    """
    if valid is None:
        return None
    v = _drop_unit_channel(_as_float(valid))
    if not v.shape.is_compatible_with(like.shape):
        raise ValueError(f"valid mask of shape {v.shape} does not match the "
                         f"per-pixel maps of shape {like.shape}")
    return v


def _pixel_mean(values, valid):
    """Mean over every pixel (valid None), else over the valid pixels only."""
    if valid is None:
        return tf.reduce_mean(values)
    return _masked_mean(values, valid)


def hard_mask_and_valid(hard_mask, pad_value=PAD_MASK):
    """(M, valid) from a padded hard mask: both float32, same shape.

    The input pipeline pads crops with ``pad_value`` in the hard mask
    ("no pixel": neither easy nor hard). M is 1 on hard pixels and 0
    elsewhere (padding included); valid is 1 on real pixels, 0 on padding.
    """
    m = _drop_unit_channel(tf.convert_to_tensor(hard_mask))
    m = tf.cast(m, tf.int32)
    valid = tf.not_equal(m, pad_value)
    return (tf.cast(tf.equal(m, 1), tf.float32), tf.cast(valid, tf.float32))


def _masked_mean(values, weights):
    """sum(values * weights) / sum(weights); exactly 0 if the weights sum to 0.

    divide_no_nan also makes the gradient 0 (not NaN) in that case.
    """
    return tf.math.divide_no_nan(tf.reduce_sum(values * weights),
                                 tf.reduce_sum(weights))


def _labels_and_mask(labels, ignore_label):
    """int32 labels with ignored pixels replaced by 0, and a float32 mask."""
    labels = _drop_unit_channel(tf.convert_to_tensor(labels))
    labels = tf.cast(labels, tf.int32)
    valid = tf.not_equal(labels, ignore_label)
    safe = tf.where(valid, labels, tf.zeros_like(labels))
    return safe, tf.cast(valid, tf.float32)


# ------------------------------------------------------- segmentation (CE)
def segmentation_cross_entropy(logits, labels, ignore_label=IGNORE_LABEL):
    """Source cross-entropy of Stage I (Eq. 1, first term of L_G_inter).

    ``-sum_c y_c log softmax(logits)_c`` averaged over the pixels whose label
    is not ``ignore_label``; exactly 0, with zero gradient, when no pixel is
    labelled. Ignored pixels contribute neither value nor gradient. A label
    outside [0, C) other than ``ignore_label`` is an error
    (InvalidArgumentError, on every device).

    Args:
      logits: [B,H,W,C] class scores (before softmax).
      labels: [B,H,W] integer class indices, ``ignore_label`` = no label.
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
        # -log softmax(z)_y = logsumexp(z) - z_y. The same value as
        # tf.nn.sparse_softmax_cross_entropy_with_logits (up to float
        # rounding) without that kernel, 10% of a tiny supervised step's CPU
        # time in a profile (benchmarks/BENCHMARKS.md, "TF vs PyTorch"); the
        # gradient is softmax(z) - onehot(y) either way.
        picked = tf.reduce_sum(tf.one_hot(safe, num_classes) * logits, -1)
        ce = tf.reduce_logsumexp(logits, -1) - picked
    return _masked_mean(ce, valid)


def partial_cross_entropy(logits, labels):
    """Partial segmentation loss on easy pixels only (Eq. 5).

    The pseudo label (Eq. 3) is 255 ("none") on hard pixels, so Eq. 5 is the
    cross-entropy over the pseudo-labelled (easy) pixels E_i, averaged over
    them (mean over all labelled pixels of the batch). 0 with zero gradient
    when no pixel is labelled.
    """
    return segmentation_cross_entropy(logits, labels, IGNORE_LABEL)


def kld_regularizer(logits, labels):
    """CRST "MRKLD" confidence regulariser used in round two (T=1).

    KL(uniform || p) up to a constant: mean over pseudo-labelled pixels
    (label != 255) of ``sum_c(-log p_c) / C``; 0 with zero gradient when no
    pixel is labelled. The caller multiplies by lambda (0.1).
    """
    logits = _as_float(logits)
    _, valid = _labels_and_mask(labels, IGNORE_LABEL)
    neg_mean_log_p = -tf.reduce_mean(tf.nn.log_softmax(logits, axis=-1),
                                     axis=-1)
    return _masked_mean(neg_mean_log_p, valid)


# --------------------------------------------- Stage I adversarial (Eq. 1)
def inter_discriminator_loss(d_logits_source, d_logits_target):
    """Stage I discriminator loss (Eq. 1, L_D_inter); D says source = 1.

    ``0.5 * mean BCE(D(G(x_s)), 1) + 0.5 * mean BCE(D(G(x_t)), 0)``.

    Eq. 1 sums the two terms; AdaptSegNet and ADVENT halve each one. We
    average (halve) like them because (a) their discriminator learning rate
    (Adam 1e-4), which the paper reuses, was tuned with it, and (b) the
    average of the two means is the per-pixel mean BCE over all pixels of
    both maps (for equal sizes), the same per-pixel reading as the PLA loss.
    With Adam the factor 2 changes little besides the epsilon's weight.
    The two maps may differ in size; each is averaged over its own pixels.
    """
    ds = _as_float(d_logits_source)
    dt = _as_float(d_logits_target)
    # BCE(x, 1) = softplus(-x); BCE(x, 0) = softplus(x).
    return 0.5 * (tf.reduce_mean(tf.nn.softplus(-ds))
                  + tf.reduce_mean(tf.nn.softplus(dt)))


def inter_generator_loss(d_logits_target):
    """Stage I adversarial term of G (Eq. 1): ``-log D(G(x_t))``.

    Mean over pixels of BCE(D(G(x_t)), 1): G makes target maps look
    "source". The caller weights it by lambda_adv.
    """
    dt = _as_float(d_logits_target)
    return tf.reduce_mean(tf.nn.softplus(-dt))


def weighted_self_information(probs):
    """ADVENT weighted self-information map (Stage I AdvEnt, IntraDA).

    Per channel ``-p_c * log(p_c) / log(C)`` (equal to
    ``-p log2 p / log2 C``), with ADVENT's 1e-30 inside the log so p = 0
    gives 0 and a finite gradient. Summing over channels gives the
    normalised entropy in [0, 1]. Returns float32 [B,H,W,C] (not a scalar).
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


# ---------------------------------------------- PLA, per pixel (Eq. 6)
# `valid` (optional, [B,H,W] of 0/1, e.g. from `hard_mask_and_valid`) marks
# the pixels that exist: padded pixels of a crop are neither easy nor hard,
# so they give neither value nor gradient and the means run over the valid
# pixels only. valid=None (or all ones) is the plain mean over every pixel.
def pla_discriminator_loss(d_logits, hard_mask, valid=None):
    """Pixel-level adversarial loss of D (Eq. 6), per-pixel reading.

    ``mean_hw BCE(D, M)``: D is taught hard = 1, easy = 0 on every (valid)
    pixel.
    """
    d, m = _pixel_pair(d_logits, hard_mask)
    bce = m * tf.nn.softplus(-d) + (1.0 - m) * tf.nn.softplus(d)
    return _pixel_mean(bce, _valid_weights(valid, d))


def pla_generator_loss(d_logits, hard_mask, valid=None):
    """Pixel-level adversarial loss of G (Eq. 6), per-pixel reading.

    ``-(1/HW) sum_{M=1} log(1 - D)``, averaged over the batch: G makes hard
    pixels look easy. Easy pixels give neither value nor gradient. Computed
    as ``mean(M * softplus(d))`` since ``-log(1 - sigmoid(d)) = softplus(d)``;
    with `valid`, HW counts the valid pixels only.
    """
    d, m = _pixel_pair(d_logits, hard_mask)
    return _pixel_mean(m * tf.nn.softplus(d), _valid_weights(valid, d))


# ---------------------------------------------- CTS, per pixel (Eq. 8)
def cts_discriminator_loss(d_logits, z, valid=None):
    """Continuously indexed adversarial loss of D (Eq. 8), per pixel.

    ``mean_hw (D - Z)^2``: D regresses the continuous index Z (Eq. 7) on
    every (valid) pixel.
    """
    d, zz = _pixel_pair(d_logits, z)
    return _pixel_mean(tf.square(tf.sigmoid(d) - zz), _valid_weights(valid, d))


def cts_generator_loss(d_logits, hard_mask, valid=None):
    """Continuously indexed adversarial loss of G (Eq. 8), per pixel.

    ``mean_hw (D o M)^2``: G pushes D towards 0 (easy) on hard pixels only;
    easy pixels give no gradient. With `valid`, the mean runs over the valid
    pixels only.
    """
    d, m = _pixel_pair(d_logits, hard_mask)
    return _pixel_mean(tf.square(tf.sigmoid(d) * m), _valid_weights(valid, d))
