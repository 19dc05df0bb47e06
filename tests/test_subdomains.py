"""Tests for tf_pixintra.subdomains with hand-computed answers."""

import json

import numpy as np
import pytest

import tolerances as T
from tf_pixintra import subdomains as sd

# Thresholds used by the hand cases: t = [0.8, 0.6, 0.9]; with alpha = 0.5
# alpha * t = [0.4, 0.3, 0.45] (exact halves of the float32 values).
T3 = np.array([0.8, 0.6, 0.9], np.float32)


def _img(rows):
    """[H,W,C] float32 from nested lists."""
    return np.array(rows, np.float32)


# ------------------------------------------------------ separate_pixels
def test_separate_pixels_hand_case_alpha_half():
    probs = _img([[
        # two classes above (0.45 > 0.4, 0.40 > 0.3): the larger PROBABILITY
        # wins -> 0, although y/t is larger for class 1 (0.667 > 0.5625)
        [0.45, 0.40, 0.15],
        # every y_k <= alpha t_k (0.40 == 0.4, 0.30 == 0.3): hard, Z = 0.6
        [0.40, 0.30, 0.30],
        # tie of probabilities above threshold -> lowest index 0
        [0.45, 0.45, 0.10],
        # class 2 has the largest prob but 0.45 is not > 0.45: label 1
        [0.20, 0.35, 0.45],
        # one class above
        [0.10, 0.10, 0.80],
    ]])
    hard, label, z = sd.separate_pixels(probs, T3, 0.5)
    assert hard.dtype == np.uint8 and label.dtype == np.uint8
    assert z.dtype == np.float32
    np.testing.assert_array_equal(hard, [[0, 1, 0, 0, 0]])
    np.testing.assert_array_equal(label, [[0, 255, 0, 1, 2]])
    np.testing.assert_allclose(z, [[0, 0.6, 0, 0, 0]], atol=1e-7)


def test_separate_pixels_list_thresholds_compare_in_float32():
    # thresholds given as python floats behave like the float32 ones
    probs = _img([[[0.40, 0.30, 0.30]]])
    hard, _, _ = sd.separate_pixels(probs, [0.8, 0.6, 0.9], 0.5)
    assert hard[0, 0] == 1


def test_separate_pixels_alpha_zero_every_positive_pixel_easy():
    probs = _img([[[0.0, 0.3, 0.7], [0.0, 0.0, 0.0], [0.6, 0.4, 0.0]]])
    hard, label, z = sd.separate_pixels(probs, T3, 0.0)
    np.testing.assert_array_equal(hard, [[0, 1, 0]])
    np.testing.assert_array_equal(label, [[2, 255, 0]])   # plain argmax
    np.testing.assert_allclose(z, [[0.0, 1.0, 0.0]])       # 1 - max(0) = 1


def test_separate_pixels_alpha_one():
    probs = _img([[[0.85, 0.10, 0.05], [0.70, 0.20, 0.10],
                   [0.05, 0.05, 0.90]]])
    hard, label, z = sd.separate_pixels(probs, T3, 1.0)
    # .85 > .8 easy; .7 <= .8, .2 <= .6, .1 <= .9 hard; .9 == .9 hard
    np.testing.assert_array_equal(hard, [[0, 1, 1]])
    np.testing.assert_array_equal(label, [[0, 255, 255]])
    np.testing.assert_allclose(z, [[0.0, 0.3, 0.1]], atol=1e-6)


def test_separate_pixels_batch_and_per_image_thresholds():
    probs = np.stack([_img([[[0.7, 0.2, 0.1]]]), _img([[[0.7, 0.2, 0.1]]])])
    hard, label, _ = sd.separate_pixels(probs, T3, 1.0)
    np.testing.assert_array_equal(hard, [[[1]], [[1]]])
    per_image = np.array([[0.8, 0.6, 0.9], [0.5, 0.6, 0.9]], np.float32)
    hard, label, _ = sd.separate_pixels_with_thresholds(probs, per_image)
    np.testing.assert_array_equal(hard, [[[1]], [[0]]])
    np.testing.assert_array_equal(label, [[[255]], [[0]]])
    with pytest.raises(ValueError, match="thresholds"):
        sd.separate_pixels(probs, np.ones((3, 3)), 1.0)


@pytest.mark.parametrize("alpha", [1.5, -0.1, float("nan")])
def test_separate_pixels_rejects_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha") as err:
        sd.separate_pixels(_img([[[0.5, 0.5, 0.0]]]), T3, alpha)
    assert repr(alpha) in str(err.value)


# -------------------------------------------------------- ClassThresholds
def test_class_thresholds_hand_case_cap_and_unseen_class():
    probs = _img([[
        [0.5, 0.3, 0.2],      # class 0, max 0.5
        [0.7, 0.2, 0.1],      # class 0, max 0.7
        [0.05, 0.95, 0.0],    # class 1, max 0.95
        [0.6, 0.4, 0.0],      # class 0, max 0.6
    ]])
    ct = sd.ClassThresholds(3).update(probs)
    np.testing.assert_array_equal(ct.counts, [3, 1, 0])
    # The histogram median is within one bin of np.median (the bins'
    # quantisation), plus the float32 rounding of the result (u).
    tol = 1.0 / sd.DEFAULT_BINS + T.U
    # medians: class 0 -> 0.6, class 1 -> 0.95 capped to 0.9, class 2 unseen
    r = ct.result()
    assert r.dtype == np.float32
    np.testing.assert_allclose(r, [0.6, 0.9, 0.9], rtol=0, atol=tol)
    np.testing.assert_allclose(ct.result(cap=1.0), [0.6, 0.95, 1.0],
                               rtol=0, atol=tol)
    # an even count: mean of the two middle values (0.5, 0.7) -> 0.6
    ct2 = sd.ClassThresholds(3).update(probs[:, :2])
    assert ct2.result()[0] == pytest.approx(0.6, rel=0, abs=tol)


def _exact_medians(probs, c):
    flat = probs.reshape(-1, c)
    lab, mx = flat.argmax(-1), flat.max(-1)
    return np.array([np.median(mx[lab == k]) if np.any(lab == k) else np.nan
                     for k in range(c)]), np.bincount(lab, minlength=c)


@pytest.mark.parametrize("shape,conc", [
    ((1, 10, 11, 4), 1.0), ((3, 17, 23, 5), 0.3), ((2, 8, 9, 3), 3.0),
    ((16, 9, 3), 0.5)])
def test_class_thresholds_match_np_median(shape, conc):
    rng = np.random.default_rng(sum(shape))
    c = shape[-1]
    probs = rng.dirichlet(np.full(c, conc), size=shape[:-1]).astype(
        np.float32)
    ct = sd.ClassThresholds(c).update(probs)
    exact, counts = _exact_medians(probs, c)
    np.testing.assert_array_equal(ct.counts, counts)
    seen = ~np.isnan(exact)
    got = ct.result(cap=1.0)
    # Within one bin of np.median, plus got's float32 rounding.
    assert np.all(np.abs(got[seen] - exact[seen])
                  <= 1.0 / sd.DEFAULT_BINS + T.U)
    assert np.all(got[~seen] == 1.0)


def test_class_thresholds_even_count_far_apart_and_ties():
    # two classes, so every max-prob is >= 0.5.
    # class 0: {0.55, 0.95} -> median 0.75 (middle pair in distant bins)
    # class 1: {0.6, 0.6, 0.6} -> 0.6 (all in one bin)
    probs = _img([[[0.55, 0.45], [0.95, 0.05], [0.4, 0.6], [0.4, 0.6],
                   [0.4, 0.6]]])
    r = sd.ClassThresholds(2).update(probs).result(cap=1.0)
    tol = 1.0 / sd.DEFAULT_BINS + T.U    # one bin + float32 rounding
    np.testing.assert_allclose(r, [0.75, 0.6], rtol=0, atol=tol)
    # interpolation inside a bin: bins=4, class 0 values {0.55, 0.6, 0.7}
    # in [0.5, 0.75) and {0.8, 0.9} in [0.75, 1). The median (rank 2 of 5)
    # is the 3rd of the 3 values of bin 2: 0.5 + (2 + 0.5) / 3 * 0.25
    # = 0.7083333 (exact median 0.7; the bin centre would be 0.625)
    five = _img([[[0.55, 0.45], [0.6, 0.4], [0.7, 0.3], [0.8, 0.2],
                  [0.9, 0.1]]])
    r = sd.ClassThresholds(2, bins=4).update(five).medians()
    assert r[0] == pytest.approx(0.7083333333) and np.isnan(r[1])
    # coarse bins still interpolate inside the bin
    r = sd.ClassThresholds(2, bins=1000).update(probs).result(cap=1.0)
    np.testing.assert_allclose(r, [0.75, 0.6], rtol=0, atol=1e-3 + T.U)


def test_class_thresholds_merge_exact_and_json_roundtrip():
    rng = np.random.default_rng(7)
    probs = rng.dirichlet(np.full(5, 0.4), size=(4, 12, 13)).astype(
        np.float32)
    whole = sd.ClassThresholds(5).update(probs)
    a = sd.ClassThresholds(5).update(probs[:1])
    b = sd.ClassThresholds(5).update(probs[1:3]).update(probs[3])
    b_json = json.loads(json.dumps(b.to_dict()))
    merged = a.merge(sd.ClassThresholds.from_dict(b_json))
    np.testing.assert_array_equal(merged.result(), whole.result())
    np.testing.assert_array_equal(merged.counts, whole.counts)
    with pytest.raises(ValueError, match="merge"):
        whole.merge(sd.ClassThresholds(4))
    with pytest.raises(ValueError, match="classes"):
        whole.update(np.zeros((2, 2, 4), np.float32))


# --------------------------------------------------------------- Prop.
def test_easy_pixel_proportion():
    assert sd.easy_pixel_proportion(np.array([[0, 1], [1, 1]])) == 0.25
    # two images of different sizes: 3 easy of 6
    masks = [np.array([[0, 1]]), np.array([[0, 0, 1, 1]])]
    assert sd.easy_pixel_proportion(masks) == 0.5


def test_prop_counter_counts_merge_and_roundtrip():
    a = sd.PropCounter(3).update(np.array([[0, 1, 0]], np.uint8),
                                 np.array([[2, 255, 2]], np.uint8))
    b = sd.PropCounter(3).update(np.array([[0, 1]], np.uint8),
                                 np.array([[0, 255]], np.uint8))
    b = sd.PropCounter.from_dict(json.loads(json.dumps(b.to_dict())))
    a.merge(b)
    assert (a.easy, a.total) == (3, 5)
    assert a.proportion == pytest.approx(0.6)
    np.testing.assert_array_equal(a.class_easy, [1, 0, 2])
    assert sd.PropCounter(3).proportion == 0.0


def test_alpha_sweep_counts_hand_case():
    # max_k y_k / t_k per pixel: .45/.8=.5625 vs .40/.6=.667 -> 0.667;
    # .40/.8=.5 (.30/.6=.5); .8/.9=.889; 0 for the all-zero pixel
    probs = _img([[[0.45, 0.40, 0.15], [0.40, 0.30, 0.30],
                   [0.10, 0.10, 0.80], [0.0, 0.0, 0.0]]])
    counts = sd.alpha_sweep_counts(probs, T3, [0.0, 0.5, 0.6, 0.9, 1.0])
    # alpha 0: 3 positive pixels; 0.5: ties (0.5 not > 0.5) -> 2; 0.6 -> 2;
    # 0.9 -> 0; 1.0 -> 0
    np.testing.assert_array_equal(counts, [3, 2, 2, 0, 0])


def test_alpha_sweep_counts_match_separate_pixels_including_ties():
    rng = np.random.default_rng(3)
    c = 4
    probs = rng.dirichlet(np.full(c, 0.5), size=(2, 9, 10)).astype(
        np.float32)
    # 0.6232655 * 0.3 and 0.7066899 * 0.7 are cases where y one float32
    # step above alpha * t still gives y / t == alpha after rounding
    t = np.array([0.6232655, 0.7066899, 0.9, 0.28297812], np.float32)
    alphas = [0.0, 0.25, 0.3, 0.7, 0.85, 0.9, 1.0]
    # put exact ties y_k == alpha * t_k (float32) into the map, and values
    # one float32 step above / below them (where y/t rounds onto alpha)
    for i, a in enumerate(alphas[1:]):
        tie = np.float32(a) * t
        probs[0, i, :, :] = tie
        probs[1, i, :5, :] = np.nextafter(tie, np.float32(1))
        probs[1, i, 5:, :] = np.nextafter(tie, np.float32(0))
    counts = sd.alpha_sweep_counts(probs, t, alphas)
    want = [int((sd.separate_pixels(probs, t, a)[0] == 0).sum())
            for a in alphas]
    np.testing.assert_array_equal(counts, want)
    assert 0 < want[-1] < want[1] < probs[..., 0].size    # not trivial
    # pixels with one class one float32 step above alpha * t_k: easy by the
    # exact comparison although y_k / t_k rounds to alpha exactly
    for k, a in [(0, 0.3), (1, 0.7), (3, 0.85)]:
        y = np.nextafter(np.float32(a) * t[k], np.float32(1))
        assert y / t[k] == np.float32(a)          # the ratio alone says hard
        pixel = np.zeros((1, 1, 1, c), np.float32)
        pixel[..., k] = y
        assert sd.separate_pixels(pixel, t, a)[0][0, 0, 0] == 0
        assert sd.alpha_sweep_counts(pixel, t, [a])[0] == 1
    # a zero threshold makes every pixel with y_k > 0 easy at every alpha
    t0 = np.array([0.8, 0.6, 0.9, 0.0], np.float32)
    counts0 = sd.alpha_sweep_counts(probs, t0, alphas)
    want0 = [int((sd.separate_pixels(probs, t0, a)[0] == 0).sum())
             for a in alphas]
    np.testing.assert_array_equal(counts0, want0)
    counter = sd.PropCounter(c, alphas).update_sweep(probs, t)
    props = counter.sweep_proportions()
    assert props[0.3] == pytest.approx(want[2] / probs[..., 0].size)


# -------------------------------------------------------------- IntraDA
def test_normalized_entropy_and_image_scores():
    probs = np.array([[[[0.25, 0.75], [0.5, 0.5]]],
                      [[[1.0, 0.0], [1.0, 0.0]]]], np.float32)  # 2x1x2x2
    ent = sd.normalized_entropy(probs)
    # H(.25) = 0.81127812 bits; H(.5) = 1; H(1) = 0
    np.testing.assert_allclose(ent, [[[0.8112781244591328, 1.0]],
                                     [[0.0, 0.0]]], rtol=1e-6)
    scores = sd.image_entropy_scores(probs)
    np.testing.assert_allclose(scores, [0.9056390622295664, 0.0], rtol=1e-6)


def test_rank_images_by_entropy():
    scores = [0.3, 0.1, 0.5, 0.2]
    easy, hard = sd.rank_images_by_entropy(scores, 0.5)
    np.testing.assert_array_equal(easy, [1, 3])
    np.testing.assert_array_equal(hard, [0, 2])
    # floor(0.67 * 4) = floor(2.68) = 2
    easy, hard = sd.rank_images_by_entropy(scores, 0.67)
    np.testing.assert_array_equal(easy, [1, 3])
    # 0.29 * 100 = 28.999999999999996 in floating point -> 29 easy
    easy, _ = sd.rank_images_by_entropy(np.arange(100.0), 0.29)
    assert len(easy) == 29
    # equal scores keep input order
    easy, hard = sd.rank_images_by_entropy([0.2, 0.1, 0.2, 0.1], 0.75)
    np.testing.assert_array_equal(easy, [1, 3, 0])
    np.testing.assert_array_equal(hard, [2])
    with pytest.raises(ValueError, match="lam"):
        sd.rank_images_by_entropy(scores, 1.2)


def test_intrada_pseudo_labels():
    probs = _img([[[0.2, 0.5, 0.3], [0.4, 0.4, 0.2]]])
    lab = sd.intrada_pseudo_labels(probs)
    assert lab.dtype == np.uint8
    np.testing.assert_array_equal(lab, [[1, 0]])


# ------------------------------------------------------------------ IAS
def test_ias_hand_case_simple_parameters():
    ias = sd.InstanceAdaptiveSelector(2, alpha=1.0, gamma=1.0, beta=0.5,
                                      cap=0.999, init=0.5)
    # class 0 pixels max-probs {0.6, 0.8, 1.0}; class 1 absent.
    img = _img([[[0.6, 0.4], [0.8, 0.2], [1.0, 0.0]]])
    th = ias.thresholds_for(img)
    # class 0: percentile 100 * (1 - 1 * 0.5) = 50 of {0.5 (old theta),
    # 0.6, 0.8, 1.0} = 0.7; EMA 0.5 * 0.5 + 0.5 * 0.7 = 0.6.
    # class 1: percentile of {0.5} = 0.5 -> stays 0.5.
    assert th.dtype == np.float32
    # Computed in float64 from float32 inputs (within u x 1 of the decimals;
    # percentiles and EMAs are convex), then one float32 rounding: < 1e-7.
    np.testing.assert_allclose(th, [0.6, 0.5], atol=1e-7)
    # second image uses the OLD theta (0.6) in the exponent:
    # class 1 pixels {0.9}, list {0.5, 0.9}; percentile 100 * (1 - 0.5) = 50
    # -> 0.7; EMA 0.5 * 0.5 + 0.5 * 0.7 = 0.6.
    # class 0 pixels {0.7}, list {0.6, 0.7}; percentile 100 * (1 - 0.6) = 40
    # -> 0.6 + 0.4 * 0.1 = 0.64; EMA 0.5 * 0.6 + 0.5 * 0.64 = 0.62.
    th = ias.thresholds_for(_img([[[0.1, 0.9], [0.7, 0.3]]]))
    np.testing.assert_allclose(th, [0.62, 0.6], atol=1e-7)


def test_ias_default_parameters_and_cap():
    ias = sd.InstanceAdaptiveSelector(2)          # 0.2, 8, 0.9, 0.999, 0.9
    img = _img([[[0.6, 0.4], [0.7, 0.3], [0.8, 0.2], [0.95, 0.05]]])
    th = ias.thresholds_for(img)
    # 0.9 ** 8 = 0.43046721; q = 100 * (1 - 0.2 * 0.43046721) = 91.3906558
    # sorted {0.6, 0.7, 0.8, 0.9, 0.95}: position 0.913906558 * 4 = 3.6556262
    # -> 0.9 + 0.6556262 * 0.05 = 0.93278131; EMA 0.81 + 0.093278131
    np.testing.assert_allclose(th, [0.90327813116, 0.9], atol=1e-6)
    capped = sd.InstanceAdaptiveSelector(2, beta=0.0, init=0.999)
    th = capped.thresholds_for(_img([[[1.0, 0.0]]]))
    # percentile of {0.999, 1.0} at ~80% -> ~0.9998 -> capped to 0.999
    np.testing.assert_allclose(th, [0.999, 0.999], atol=1e-7)
    state = sd.InstanceAdaptiveSelector.from_dict(
        json.loads(json.dumps(ias.to_dict())))
    np.testing.assert_array_equal(state.theta, ias.theta)


@pytest.mark.parametrize("cls, state", [
    (sd.ClassThresholds, sd.PropCounter(3, (0.5,)).to_dict()),
    (sd.PropCounter, sd.ClassThresholds(3).to_dict()),
    (sd.InstanceAdaptiveSelector, {"format": "tf_pixintra.InstanceAdaptive"
                                             "Selector/0"}),
])
def test_from_dict_refuses_another_class_or_version(cls, state):
    with pytest.raises(ValueError, match=f"not an? {cls.__name__} state: "
                                         "format="):
        cls.from_dict(state)
