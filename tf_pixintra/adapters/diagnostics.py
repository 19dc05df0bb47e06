"""Streaming diagnostics of the discriminators (keras.metrics.Metric).

`auc`: ROC AUC of D's output, before D's update of the step, against what D
should detect (hard pixels, hard images, the target domain); 0.5 = none.
`zcorr` (CTS): Pearson correlation of D's output with Z (Eq. 7).
`adv_grad_share`: ||grad_G(beta * L_adv)|| / ||grad_G(L_G)||.
"""

import keras
import tensorflow as tf

# Logged names; AUC and ZCORR take the suffix of a D ("" or "_aux").
AUC = "diag_auc_d{}"
ZCORR = "diag_zcorr_d{}"
GRAD_SHARE = "diag_adv_grad_share"


class PairwiseAUC(keras.metrics.Metric):
    """Exact ROC AUC within each update (batch), pooled over the updates: sum(U) / sum(n_pos *
    n_neg), U the Mann-Whitney statistic from midranks; 0.5 if no update had both classes.
    (keras.metrics.AUC's fixed thresholds read 0.5 for a D whose outputs all sit near the base
    rate.) update_state: positive (1 = what D should detect), score (higher = more likely
    positive), sample_weight (0 = left out)."""

    def __init__(self, name="pairwise_auc", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.u = self.add_variable(shape=(), initializer="zeros", dtype="float64", name="u")
        self.pairs = self.add_variable(shape=(), initializer="zeros",
                                       dtype="float64", name="pairs")

    def update_state(self, positive, score, sample_weight=None):
        positive = tf.reshape(tf.cast(positive, tf.float32), [-1]) > 0.5
        score = tf.reshape(tf.cast(tf.stop_gradient(score), tf.float32), [-1])
        if sample_weight is not None:
            keep = tf.reshape(tf.cast(sample_weight, tf.float32), [-1]) > 0
            positive = tf.boolean_mask(positive, keep)
            score = tf.boolean_mask(score, keep)
        order = tf.argsort(score, stable=True)
        ordered = tf.gather(score, order)
        # Midranks: the running count of the places where the sorted score
        # changes numbers the groups of equal scores in the sorted order
        # segment_mean requires (linear, where tf.unique hashes).
        starts = tf.concat([tf.zeros_like(ordered[:1], tf.int32),  # [] if empty
                            tf.cast(ordered[1:] != ordered[:-1], tf.int32)], 0)
        group = tf.cumsum(starts)
        ranks = tf.range(1, tf.size(ordered) + 1, dtype=tf.int32)
        midranks = tf.gather(tf.math.segment_mean(tf.cast(ranks, tf.float64), group), group)
        is_pos = tf.gather(positive, order)
        n = tf.cast(tf.size(ordered), tf.float64)
        n_pos = tf.reduce_sum(tf.cast(is_pos, tf.float64))
        rank_sum = tf.reduce_sum(tf.where(is_pos, midranks, tf.zeros_like(midranks)))
        self.u.assign_add(rank_sum - n_pos * (n_pos + 1.0) / 2.0)
        self.pairs.assign_add(n_pos * (n - n_pos))

    def result(self):
        u, pairs = tf.convert_to_tensor(self.u), tf.convert_to_tensor(self.pairs)
        auc = tf.where(pairs > 0, u / tf.maximum(pairs, 1.0), tf.constant(0.5, tf.float64))
        return tf.cast(auc, tf.float32)

    def reset_state(self):
        self.u.assign(tf.zeros_like(self.u))
        self.pairs.assign(tf.zeros_like(self.pairs))


class StreamingPearson(keras.metrics.Metric):
    """Pearson correlation of x and y over every (weighted) element seen, pooled
    (keras.metrics.PearsonCorrelation averages per-sample ones); 0 when either is constant. Sums
    in float64: float32 would cancel."""

    def __init__(self, name="pearson", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._sums = [self.add_variable(shape=(), initializer="zeros", dtype="float64", name=key)
                      for key in ("n", "sx", "sy", "sxx", "syy", "sxy")]

    def update_state(self, x, y, sample_weight=None):
        x = tf.reshape(tf.cast(tf.stop_gradient(x), tf.float64), [-1])
        y = tf.reshape(tf.cast(tf.stop_gradient(y), tf.float64), [-1])
        w = (tf.ones_like(x) if sample_weight is None else
             tf.reshape(tf.cast(sample_weight, tf.float64), [-1]))
        terms = (w, w * x, w * y, w * x * x, w * y * y, w * x * y)
        for var, term in zip(self._sums, terms):
            var.assign_add(tf.reduce_sum(term))

    def result(self):
        n, sx, sy, sxx, syy, sxy = (tf.convert_to_tensor(v) for v in self._sums)
        cov = n * sxy - sx * sy
        var = (n * sxx - sx * sx) * (n * syy - sy * sy)
        corr = tf.math.divide_no_nan(cov, tf.sqrt(tf.maximum(var, 0.0)))
        return tf.cast(corr, tf.float32)

    def reset_state(self):
        for var in self._sums:
            var.assign(tf.zeros_like(var))


class LastValue(keras.metrics.Metric):
    """The last value given with a non-zero weight (mean over replicas), 0 before any; kept by
    `reset_state` until the next measurement."""

    def __init__(self, name="last_value", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, value, sample_weight=1.0):
        take = tf.cast(sample_weight, tf.float32) > 0
        value = tf.cast(value, tf.float32)
        self.total.assign(tf.where(take, value, self.total))
        self.count.assign(tf.where(take, 1.0, self.count))

    def result(self):
        return tf.math.divide_no_nan(tf.convert_to_tensor(self.total),
                                     tf.convert_to_tensor(self.count))

    def reset_state(self):
        """The last measurement stays until the next one."""


def gradient_norm_share(part_grads, total_grads):
    """||part|| / ||total|| over the variables (None gradients count 0)."""
    part = [g for g in part_grads if g is not None]
    total = [g for g in total_grads if g is not None]
    if not part or not total:
        return tf.constant(0.0)
    return tf.math.divide_no_nan(tf.cast(tf.linalg.global_norm(part), tf.float32),
                                 tf.cast(tf.linalg.global_norm(total), tf.float32))
