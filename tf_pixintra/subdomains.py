"""Subdomain separation at pixel level (Sec. 4.1), IntraDA and IAS baselines.

Pure numpy. ``probs``: softmax maps [H,W,C] or [B,H,W,C]. Hard mask M uint8
(1 = hard), pseudo label uint8 (255 = none), Z float32.
"""

import math

import numpy as np

IGNORE_LABEL = 255
DEFAULT_CAP = 0.9          # Sec. 4.1: t_k = min(0.9, median)
DEFAULT_BINS = 10000       # histogram bin width 1e-4 -> median error <= 1e-4

_DICT_FORMAT_THRESHOLDS = "tf_pixintra.ClassThresholds/1"
_DICT_FORMAT_PROP = "tf_pixintra.PropCounter/1"
_DICT_FORMAT_IAS = "tf_pixintra.InstanceAdaptiveSelector/1"


def _check_probs(probs, num_classes=None, labels=False):
    """probs as float32 [H,W,C] or [B,H,W,C]; labels: C must fit uint8 pseudo labels."""
    probs = np.asarray(probs)
    if probs.ndim not in (3, 4):
        raise ValueError(f"probs must be [H,W,C] or [B,H,W,C], got shape {probs.shape}")
    if num_classes is not None and probs.shape[-1] != num_classes:
        raise ValueError(f"probs has {probs.shape[-1]} classes on its last "
                         f"axis, expected {num_classes}")
    if not np.issubdtype(probs.dtype, np.floating):
        raise ValueError(f"probs must hold floating-point probabilities, got dtype {probs.dtype}")
    if labels and probs.shape[-1] > IGNORE_LABEL:
        raise ValueError(f"at most {IGNORE_LABEL} classes fit uint8 pseudo "
                         f"labels, got {probs.shape[-1]}")
    return probs.astype(np.float32, copy=False)


def _check_format(state, expected, what):
    """Refuses a to_dict state of another class or format version."""
    if state.get("format") != expected:
        raise ValueError(f"not {what} state: format={state.get('format')!r}, "
                         f"expected {expected!r}")


def _check_mergeable(into, other, fields):
    """Refuses to merge counts gathered with other settings."""
    if any(getattr(other, f) != getattr(into, f) for f in fields):
        theirs, mine = (", ".join(f"{f}={getattr(obj, f)}" for f in fields)
                        for obj in (other, into))
        raise ValueError(f"cannot merge {type(into).__name__}({theirs}) into ({mine})")


def _check_alpha(alpha, name="alpha"):
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:          # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1] (Eq. 2), got {alpha!r}")
    return alpha


def _argmax_and_max(probs):
    """Per pixel of probs [..,C]: the argmax class and its probability, flat."""
    flat = probs.reshape(-1, probs.shape[-1])
    label = np.argmax(flat, axis=-1)
    return label, flat[np.arange(flat.shape[0]), label]


def _scaled_thresholds(thresholds, probs, alpha):
    """alpha * t_k in float32 (Eq. 2/3 compare in float32), broadcastable;
    thresholds [C] for every image, or [B,C] (probs [B,H,W,C]) per image."""
    t = np.asarray(thresholds, dtype=np.float32)
    c = probs.shape[-1]
    if probs.ndim == 4 and t.shape == (probs.shape[0], c):
        t = t[:, None, None, :]
    elif t.shape != (c,):
        raise ValueError(f"thresholds of shape {t.shape} do not fit probs of shape {probs.shape}; "
                         f"expected ({c},) or (batch, {c})")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError(f"thresholds must be finite and >= 0, got "
                         f"{np.asarray(thresholds).tolist()}")
    return np.float32(alpha) * t


class ClassThresholds:
    """Streaming class thresholds t_k (Sec. 4.1, BDL rule): ``t_k = min(cap, median of max_c y_c
    over the target pixels whose argmax is k)``, cap if none. One integer histogram per class
    (``bins`` over [0, 1]): constant memory, exact ``merge``, within one bin (1e-4) of
    ``np.median`` (a bin's n values taken at the centres of its n equal sub-intervals)."""

    def __init__(self, num_classes, bins=DEFAULT_BINS):
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if int(bins) < 1:
            raise ValueError(f"bins must be >= 1, got {bins}")
        self.num_classes = int(num_classes)
        self.bins = int(bins)
        self._hist = np.zeros((self.num_classes, self.bins), np.int64)

    def update(self, probs):
        """Adds the pixels of probs ([H,W,C] or [B,H,W,C], float)."""
        label, maxp = _argmax_and_max(_check_probs(probs, self.num_classes))
        if not np.all(np.isfinite(maxp)):
            raise ValueError("probs contain NaN or infinite values")
        bin_idx = np.floor(maxp.astype(np.float64) * self.bins)
        bin_idx = np.clip(bin_idx, 0, self.bins - 1).astype(np.int64)
        flat_idx = label.astype(np.int64) * self.bins + bin_idx
        self._hist += np.bincount(flat_idx, minlength=self.num_classes * self.bins).reshape(
            self.num_classes, self.bins)
        return self

    def merge(self, other):
        """Adds another estimator's pixels (exact); returns self."""
        _check_mergeable(self, other, ("num_classes", "bins"))
        self._hist += other._hist
        return self

    @property
    def counts(self):
        """int64[C]: number of pixels whose argmax is each class."""
        return self._hist.sum(axis=1)

    def _value_at_rank(self, hist, cum, rank):
        b = int(np.searchsorted(cum, rank, side="right"))
        within = rank - (cum[b] - hist[b])
        return (b + (within + 0.5) / hist[b]) / self.bins

    def medians(self):
        """float64[C] median estimates; NaN for classes never predicted."""
        out = np.full(self.num_classes, np.nan)
        for k in range(self.num_classes):
            hist = self._hist[k]
            cum = np.cumsum(hist)
            n = int(cum[-1])
            if n == 0:
                continue
            if n % 2:
                out[k] = self._value_at_rank(hist, cum, (n - 1) // 2)
            else:
                out[k] = 0.5 * (self._value_at_rank(hist, cum, n // 2 - 1)
                                + self._value_at_rank(hist, cum, n // 2))
        return out

    def result(self, cap=DEFAULT_CAP):
        """float32[C] thresholds t_k = min(cap, median); cap if never seen."""
        med = self.medians()
        return np.where(np.isnan(med), cap, np.minimum(med, cap)).astype(np.float32)

    def to_dict(self):
        """JSON-serialisable state (sparse histogram), for merging workers."""
        flat = self._hist.ravel()
        nz = np.flatnonzero(flat)
        return {"format": _DICT_FORMAT_THRESHOLDS, "num_classes": self.num_classes,
                "bins": self.bins, "index": nz.tolist(), "count": flat[nz].tolist()}

    @classmethod
    def from_dict(cls, state):
        """Inverse of to_dict."""
        _check_format(state, _DICT_FORMAT_THRESHOLDS, "a ClassThresholds")
        obj = cls(state["num_classes"], state["bins"])
        index = np.asarray(state["index"], np.int64)
        count = np.asarray(state["count"], np.int64)
        if index.shape != count.shape or (
                index.size and (index.min() < 0 or index.max() >= obj._hist.size)):
            raise ValueError("ClassThresholds state has bad index/count lists")
        obj._hist.ravel()[index] = count
        return obj


def separate_pixels(probs, thresholds, alpha):
    """Splits pixels into easy and hard subdomains (Eq. 2, 3, 7).

    probs [..,H,W,C] (y), thresholds t_k [C] or [B,C] (per image), alpha in [0, 1] ->
    (hard_mask, pseudo_label, z) [..,H,W]:
      hard_mask uint8, 1 = hard: every y_k <= alpha * t_k (Eq. 2);
      pseudo_label uint8: on easy pixels the class of the largest PROBABILITY among those with
        y_k > alpha * t_k (Eq. 3; not the largest y_k / t_k), lowest index on ties; 255 on hard;
      z float32: 0 on easy pixels, 1 - max_k y_k on hard ones (Eq. 7).
    Compares in float32 (alpha * t_k rounded to float32).
    """
    alpha = _check_alpha(alpha)
    probs = _check_probs(probs, labels=True)
    above = probs > _scaled_thresholds(thresholds, probs, alpha)
    hard = ~np.any(above, axis=-1)
    # Probabilities are >= 0, so -1 never wins over a class above threshold.
    candidates = np.where(above, probs, np.float32(-1.0))
    label = np.argmax(candidates, axis=-1).astype(np.uint8)
    label[hard] = IGNORE_LABEL
    z = np.where(hard, np.float32(1.0) - probs.max(axis=-1), np.float32(0.0)).astype(np.float32)
    return hard.astype(np.uint8), label, z


def separate_pixels_with_thresholds(probs, thresholds):
    """Eq. 2, 3, 7 with IAS thresholds (paper Table 6) as alpha * t_k. (IAST keeps the argmax
    class if >= its threshold: that differs only on ties and where the argmax is below its
    threshold, another class above.)"""
    return separate_pixels(probs, thresholds, 1.0)


def easy_pixel_proportion(hard_masks):
    """Prop. (Eq. 4): fraction of easy pixels (M = 0) in a hard mask or an iterable of them; 0.0
    if there is no pixel."""
    if isinstance(hard_masks, np.ndarray):
        hard_masks = [hard_masks]
    counter = PropCounter(0)
    for m in hard_masks:
        counter.update(m)
    return counter.proportion


class PropCounter:
    """Streaming, mergeable Prop. (Eq. 4) with per-class easy counts; with
    ``alphas``, ``update_sweep`` counts Prop. for each alpha in one pass."""

    def __init__(self, num_classes, alphas=()):
        self.num_classes = int(num_classes)
        self.alphas = tuple(_check_alpha(a, "alphas entry") for a in alphas)
        self.easy = 0
        self.total = 0
        self.class_easy = np.zeros(self.num_classes, np.int64)
        self.sweep_easy = np.zeros(len(self.alphas), np.int64)
        self.sweep_total = 0

    def update(self, hard_mask, pseudo_label=None):
        """Counts one mask (any shape); pseudo_label gives per-class counts."""
        m = np.asarray(hard_mask)
        self.total += m.size
        self.easy += m.size - int(np.count_nonzero(m))
        if pseudo_label is not None:
            lab = np.asarray(pseudo_label).ravel().astype(np.int64)
            lab = lab[lab < self.num_classes]
            self.class_easy += np.bincount(lab, minlength=self.num_classes)
        return self

    def update_sweep(self, probs, thresholds):
        """Counts easy pixels of probs for every alpha in ``self.alphas``."""
        probs = _check_probs(probs)
        self.sweep_easy += alpha_sweep_counts(probs, thresholds, self.alphas)
        self.sweep_total += int(np.prod(probs.shape[:-1]))
        return self

    @property
    def proportion(self):
        """easy / total (Eq. 4); 0.0 before any update."""
        return self.easy / self.total if self.total else 0.0

    def sweep_proportions(self):
        """{alpha: Prop.} from update_sweep; 0.0 before any update."""
        return {a: (int(e) / self.sweep_total if self.sweep_total else 0.0)
                for a, e in zip(self.alphas, self.sweep_easy)}

    def merge(self, other):
        """Adds another counter's counts (exact); returns self."""
        _check_mergeable(self, other, ("num_classes", "alphas"))
        for key in ("easy", "total", "class_easy", "sweep_easy", "sweep_total"):
            setattr(self, key, getattr(self, key) + getattr(other, key))
        return self

    def to_dict(self):
        """JSON-serialisable state."""
        return {"format": _DICT_FORMAT_PROP, "num_classes": self.num_classes,
                "alphas": list(self.alphas), "easy": int(self.easy), "total": int(self.total),
                "class_easy": self.class_easy.tolist(), "sweep_easy": self.sweep_easy.tolist(),
                "sweep_total": int(self.sweep_total)}

    @classmethod
    def from_dict(cls, state):
        """Inverse of to_dict."""
        _check_format(state, _DICT_FORMAT_PROP, "a PropCounter")
        obj = cls(state["num_classes"], state["alphas"])
        obj.easy = int(state["easy"])
        obj.total = int(state["total"])
        obj.class_easy = np.asarray(state["class_easy"], np.int64)
        obj.sweep_easy = np.asarray(state["sweep_easy"], np.int64)
        obj.sweep_total = int(state["sweep_total"])
        return obj


def alpha_sweep_counts(probs, thresholds, alphas):
    """int64[len(alphas)]: easy pixels (Eq. 2) of probs for each alpha, as separate_pixels in one
    pass: easy iff max_k y_k / t_k > alpha, re-checked in float32 within rounding of alpha."""
    alphas = [_check_alpha(a, "alphas entry") for a in alphas]
    probs = _check_probs(probs)
    c = probs.shape[-1]
    t = _scaled_thresholds(thresholds, probs, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = probs / t                # y/0 -> inf (y > 0) or NaN (y = 0)
    ratio = np.fmax.reduce(ratio, axis=-1)   # ignores NaN unless all NaN
    flat_ratio = np.nan_to_num(ratio, nan=0.0, posinf=np.inf).ravel()
    flat_probs = probs.reshape(-1, c)
    per_pixel_t = None
    counts = np.zeros(len(alphas), np.int64)
    for i, a in enumerate(alphas):
        approx = flat_ratio > a
        near = np.flatnonzero(np.abs(flat_ratio - a) <= 1e-5 * max(a, 1e-30))
        n = int(np.count_nonzero(approx))
        if near.size:
            if per_pixel_t is None:
                per_pixel_t = np.broadcast_to(t, probs.shape).reshape(-1, c)
            scaled = np.float32(a) * per_pixel_t[near]
            exact = np.any(flat_probs[near] > scaled, axis=-1)
            n += int(np.count_nonzero(exact)) - int(np.count_nonzero(approx[near]))
        counts[i] = n
    return counts


# IntraDA baseline (Pan et al. 2020): image-level entropy ranking.
def normalized_entropy(probs):
    """Normalised entropy ``-sum_c p_c log p_c / log C`` in [0, 1], float32
    [..,H,W] (ADVENT's weighted self-information summed over channels)."""
    probs = _check_probs(probs)
    c = probs.shape[-1]
    if c < 2:
        raise ValueError(f"need at least 2 classes, got {c}")
    plogp = probs * np.log(np.maximum(probs, np.finfo(np.float32).tiny))
    return (-plogp.sum(axis=-1) / np.float32(math.log(c))).astype(np.float32)


def image_entropy_scores(probs):
    """IntraDA image score, float64 [B] (or scalar): mean normalised entropy
    (IntraDA's is this / C, the same ranking; no rare-class "normalizor")."""
    return normalized_entropy(probs).astype(np.float64).mean(axis=(-2, -1))


def rank_images_by_entropy(scores, lam):
    """IntraDA split (easy_indices, hard_indices), int64, in rank order: the first
    ``floor(lam * N)`` of a stable ascending sort are easy (IntraDA's ``int(len * lambda1)``;
    1e-9 makes 0.29 * 100 give 29)."""
    lam = _check_alpha(lam, "lam")
    scores = np.asarray(scores, np.float64).ravel()
    order = np.argsort(scores, kind="stable").astype(np.int64)
    n_easy = int(math.floor(lam * scores.size + 1e-9))
    return order[:n_easy], order[n_easy:]


def intrada_pseudo_labels(probs):
    """IntraDA pseudo labels for easy images: full argmax, uint8 [..,H,W]."""
    return np.argmax(_check_probs(probs, labels=True), axis=-1).astype(np.uint8)


class InstanceAdaptiveSelector:
    """Instance adaptive selector of IAST (Mei et al. 2020), paper Table 6.

    Class thresholds theta start at ``init`` each pass (as IAST); per image:
    1. with the OLD theta, class k's image threshold is the percentile
       ``100 * (1 - alpha * theta_k ** gamma)`` (np.percentile, linear) of
       {theta_k} + {max-probability of the pixels whose argmax is k};
    2. theta <- min(beta * theta + (1 - beta) * image_threshold, cap)
       (IAST only resets values >= 1 to 0.999);
    3. the UPDATED theta labels this image (as IAST): `thresholds_for`.
    Order-dependent, not mergeable. IAST's alpha: 0.2, later 0.25 and 0.3.
    """

    def __init__(self, num_classes, alpha=0.2, gamma=8.0, beta=0.9, cap=0.999, init=0.9):
        self.num_classes = int(num_classes)
        self.alpha = _check_alpha(alpha)
        self.gamma = float(gamma)
        self.beta = _check_alpha(beta, "beta")
        self.cap = float(cap)
        self.theta = np.full(self.num_classes, float(init), np.float64)

    def thresholds_for(self, probs):
        """Updates theta with an image [H,W,C] -> float32[C] ([B,H,W,C]: each in turn -> [B,C])."""
        probs = _check_probs(probs, self.num_classes)
        if probs.ndim == 4:
            return np.stack([self.thresholds_for(p) for p in probs])
        label, maxp = _argmax_and_max(probs)
        maxp = maxp.astype(np.float64)
        old = self.theta
        q = 100.0 * (1.0 - self.alpha * old ** self.gamma)
        image_thr = old.copy()
        for k in np.unique(label):
            values = np.concatenate(([old[k]], maxp[label == k]))
            image_thr[k] = np.percentile(values, q[k])
        self.theta = np.minimum(self.beta * old + (1.0 - self.beta) * image_thr, self.cap)
        return self.theta.astype(np.float32)

    def to_dict(self):
        """JSON-serialisable state (to resume a pass)."""
        return {"format": _DICT_FORMAT_IAS, "num_classes": self.num_classes,
                "alpha": self.alpha, "gamma": self.gamma, "beta": self.beta,
                "cap": self.cap, "theta": self.theta.tolist()}

    @classmethod
    def from_dict(cls, state):
        """Inverse of to_dict."""
        _check_format(state, _DICT_FORMAT_IAS, "an InstanceAdaptiveSelector")
        obj = cls(state["num_classes"], state["alpha"], state["gamma"],
                  state["beta"], state["cap"])
        obj.theta = np.asarray(state["theta"], np.float64)
        return obj
