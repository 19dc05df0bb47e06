"""Stand-in G and D for the adapter tests: the exact SGD step and its bound.

The tiny DeepLab-v2 is a deep random network: the float32 rounding of its
gradient is amplified by products of weight norms and depends on the
summation order, so no a-priori bound on graph vs eager, or one vs two
replicas, is useful (issue 17, item 0). The update rule of the adapters is
checked instead on a stand-in G whose float32 gradient has a written bound:

    image -> 8x8 average pool -> 1x1 conv "stem" (3 -> STEM)
          -> 1x1 convs "head_main", "head_aux" (STEM -> 19)

(output stride 8 like DeepLab-v2; the "head_" names make
`tf_pixintra.models.head_variables` put the two heads at 10x), and on
stand-in discriminators that are one 1x1 conv (19 -> 1) each.

`expected_step` computes, in float64 and independently of the adapters,
the exact gradient of the stage's loss (written out here from the paper's
equations), the SGD-with-momentum step with coupled L2 and the heads' 10x,
and a bound on the distance of any float32 execution of that step from it
(Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., Sec. 3):

- Forward: every value is a sum of products; its rounding error is at most
  gamma(k_f) times the same computation on absolute values (|x|, |W|, |b|),
  k_f the roundings on the longest path (pool 65, stem 4, head STEM + 1,
  resize 6). The bilinear weights themselves may be off by 3u(n_in + 1)
  each (`tolerances.resize_bound`), which the absolute computation covers
  by using the weights plus that much on every pair it reads.
- The gradient at the upsampled logits, delta, is a per-pixel function of
  the logits: its error is the softmax's (`tolerances.softmax_bound`) times
  the Lipschitz constants written in `_adversarial` and `_cross_entropy`,
  plus its own rounding.
- Backward: the gradient is linear in delta with coefficients from the
  forward pass, so its error is at most the absolute computation applied
  to the error of delta, plus gamma(k_f + k_b) times the absolute
  computation applied to |delta| + that error (k_b: the resize gradient's
  accumulation, the heads' 2 x 19 terms, the sum over pooled pixels, and 8
  for the scalar weights, the replica sum and the L2 term).
- The step, m = mu m - lr g, w = w + m, with lr from the poly schedule
  (a power: TRANSCENDENTAL_ULPS): (TRANSCENDENTAL_ULPS + 8) u of its terms.
"""

import numpy as np

import tolerances as T

STEM = 4
STRIDE = 8
NUM_CLASSES = 19
HEAD_MULT = 10.0


# ------------------------------------------------------------------ models

def linear_generator(seed=0):
    """The stand-in G; outputs [main, aux] logits at stride 8, as DeepLab-v2."""
    import keras  # pylint: disable=import-outside-toplevel

    def conv(filters, name, k, stddev):
        init = keras.initializers.RandomNormal
        return keras.layers.Conv2D(
            filters, 1, name=name,
            kernel_initializer=init(stddev=stddev, seed=seed + k),
            bias_initializer=init(stddev=stddev, seed=seed + k + 1))
    inputs = keras.Input((None, None, 3))
    pooled = keras.layers.AveragePooling2D(STRIDE, name="pool")(inputs)
    features = conv(STEM, "stem", 0, 1.0)(pooled)
    heads = [conv(NUM_CLASSES, name, 2 + 2 * i, 0.05)(features)
             for i, name in enumerate(("head_main", "head_aux"))]
    return keras.Model(inputs, heads, name="linear_g")


def linear_discriminators(seed=0):
    """Two stand-in pixel-level discriminators: a 1x1 conv 19 -> 1 each."""
    import keras  # pylint: disable=import-outside-toplevel
    out = []
    for k, name in enumerate(("d_main", "d_aux")):
        inputs = keras.Input((None, None, NUM_CLASSES))
        init = keras.initializers.RandomNormal(stddev=1.0, seed=seed + 10 + k)
        logits = keras.layers.Conv2D(1, 1, kernel_initializer=init,
                                     bias_initializer=init)(inputs)
        out.append(keras.Model(inputs, logits, name=name))
    return out


def state_of(adapter):
    """What one G step starts from: G's weights and momenta, D's weights,
    the step; float64 copies."""
    g_vars = adapter.generator.trainable_variables
    opt = adapter.g_optimizer
    momenta = [opt.momentums[opt._get_variable_index(v)]  # pylint: disable=protected-access
               for v in g_vars]
    return {
        "g": {v.path: np.float64(v.numpy()) for v in g_vars},
        "m": {v.path: np.float64(m.numpy()) for v, m in zip(g_vars, momenta)},
        "d": [None if d is None else [np.float64(w) for w in d.get_weights()]
              for d in (adapter.d_main, adapter.d_aux)],
        "step": int(opt.iterations.numpy()),
    }


# ------------------------------------------------------- resize matrices

def _bilinear(n_in, n_out):
    """(R, S): TF's half-pixel bilinear resize as an n_out x n_in matrix,
    and S, 1 on every pair (output, input) that R reads (the support)."""
    r = np.zeros((n_out, n_in))
    s = np.zeros((n_out, n_in))
    src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    low = np.floor(src)
    frac = src - low
    lo = np.clip(low, 0, n_in - 1).astype(int)
    hi = np.clip(low + 1, 0, n_in - 1).astype(int)
    for i in range(n_out):
        r[i, lo[i]] += 1 - frac[i]
        r[i, hi[i]] += frac[i]
        s[i, lo[i]] += 1
        s[i, hi[i]] += 1
    return r, s


class _Resize:
    """The exact resize, its absolute-value bound and its transposes."""

    def __init__(self, low, high):
        (self.ry, sy), (self.rx, sx) = (_bilinear(low[0], high[0]),
                                        _bilinear(low[1], high[1]))
        # Each weight within 3u(n_in + 1) (tolerances.resize_bound), and a
        # product of two: within twice that (plus u^2 terms, in the 1.01).
        dw = 1.01 * 6 * T.U * (max(low) + 1)
        self.ry_abs = self.ry + dw * sy
        self.rx_abs = self.rx + dw * sx
        # Terms accumulated into one low-resolution cell by the gradient.
        self.max_terms = int(sy.sum(0).max() * sx.sum(0).max())

    @staticmethod
    def _apply(ry, rx, z):
        return np.einsum("ip,jq,bpqc->bijc", ry, rx, z)

    def up(self, z):
        return self._apply(self.ry, self.rx, z)

    def up_abs(self, z):
        return self._apply(self.ry_abs, self.rx_abs, z)

    def down(self, d):
        return np.einsum("ip,jq,bijc->bpqc", self.ry, self.rx, d)

    def down_abs(self, d):
        return np.einsum("ip,jq,bijc->bpqc", self.ry_abs, self.rx_abs, d)


# ----------------------------------------------------------------- passes

def _kernel(w):
    return w.reshape(w.shape[-2], w.shape[-1])


def forward(g, x):
    """Exact and absolute-value forward pass of the stand-in G on images x."""
    x = np.float64(x)
    b, h, w, _ = x.shape
    pool = lambda v: v.reshape(b, h // STRIDE, STRIDE, w // STRIDE, STRIDE,
                               -1).mean(axis=(2, 4))
    ks, bs = _kernel(g["stem/kernel"]), g["stem/bias"]
    fw = {"xb": pool(x), "xb_abs": pool(np.abs(x)),
          "resize": _Resize((h // STRIDE, w // STRIDE), (h, w))}
    fw["f"] = fw["xb"] @ ks + bs
    fw["f_abs"] = fw["xb_abs"] @ np.abs(ks) + np.abs(bs)
    k_f = 65 + 4 + STEM + 1 + 6
    for head in ("main", "aux"):
        kh, bh = _kernel(g[f"head_{head}/kernel"]), g[f"head_{head}/bias"]
        fw[head] = fw["resize"].up(fw["f"] @ kh + bh)
        low_abs = fw["f_abs"] @ np.abs(kh) + np.abs(bh)
        z_abs = fw["resize"].up_abs(low_abs)
        # Per-pixel bound on the upsampled logits' error (max over classes):
        # the roundings, and the resize weights' own error.
        err = T.gamma(k_f) * z_abs + (z_abs - fw["resize"].up(low_abs))
        fw[head + "_err"] = err.max(-1, keepdims=True)
    fw["k_f"] = k_f
    return fw


def _grads(g, fw, d_main, d_aux, absolute, exact_resize=False):
    """d(loss)/d(weights) from the gradients at the upsampled logits: the
    exact linear map, or (absolute) the same map on absolute values, with
    the resize weights plus their error unless exact_resize."""
    rs = fw["resize"]
    down = rs.down_abs if absolute and not exact_resize else rs.down
    val = np.abs if absolute else (lambda v: v)
    f, xb = (fw["f_abs"], fw["xb_abs"]) if absolute else (fw["f"], fw["xb"])
    out, d_f = {}, 0.0
    for head, d_z in (("main", d_main), ("aux", d_aux)):
        low = down(d_z)
        kh = _kernel(g[f"head_{head}/kernel"])
        out[f"head_{head}/kernel"] = np.einsum("bpqi,bpqj->ij", f, low
                                               ).reshape(g[f"head_{head}/kernel"].shape)
        out[f"head_{head}/bias"] = low.sum((0, 1, 2))
        d_f = d_f + low @ val(kh).T
    out["stem/kernel"] = np.einsum("bpqi,bpqj->ij", xb, d_f
                                   ).reshape(g["stem/kernel"].shape)
    out["stem/bias"] = d_f.sum((0, 1, 2))
    return out


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _prob_err(z_err):
    return T.softmax_bound(z_err, NUM_CLASSES)


def _cross_entropy(z, z_err, labels, weight):
    """delta of weight * sum CE over labelled pixels: weight * (p - onehot).

    The softmax is within _prob_err; p - y and the products add 2u."""
    p = _softmax(z)
    lab = (labels != 255)[..., None]
    onehot = np.eye(NUM_CLASSES)[np.where(lab[..., 0], labels, 0)]
    return (weight * lab * (p - onehot),
            weight * lab * (_prob_err(z_err) + 2 * T.U))


def _kld(z, z_err, labels, weight):
    """delta of weight * sum over labelled pixels of -mean_c log p_c:
    weight * (p - 1/C)."""
    p = _softmax(z)
    lab = (labels != 255)[..., None]
    return (weight * lab * (p - 1.0 / NUM_CLASSES),
            weight * lab * (_prob_err(z_err) + 2 * T.U))


def _adversarial(z, z_err, d_weights, phi_prime, weight):
    """delta of sum weight * phi(d), d = a . softmax(z) + b (the stand-in D).

    phi is softplus(-d), M softplus(d) or (M sigmoid(d))^2: |phi'| <= 1 and
    phi' is 1-Lipschitz (|phi''| <= 1/4, 1/4, 0.2). delta = weight phi'(d)
    J^T a with J^T a = p * (a - a.p), so |J^T a|_i <= 2A p_i, A = max|a|.
    With |dp| <= ep (max-norm) and A1 = sum |a|: |dd| <= A1 ep + gamma(20)
    (A + |b|) (19 products and the bias); |d(J^T a)_i| <= 2A ep + p_i A1 ep
    + gamma(22) 2A (p_i + ep); |d phi'| <= |dd| + (TRANSCENDENTAL_ULPS + 3)
    u. delta's error: |phi'| |d(J^T a)| + |J^T a| |d phi'|, with |phi'| <=
    1.01 once rounded.
    """
    a, b = d_weights[0].reshape(-1), float(d_weights[1].reshape(-1)[0])
    p = _softmax(z)
    d = p @ a + b
    jta = p * (a - (p @ a)[..., None])
    big_a, a1 = np.abs(a).max(), np.abs(a).sum()
    ep = _prob_err(z_err)
    dd = a1 * ep + T.gamma(20) * (big_a + abs(b))
    err = (1.01 * (2 * big_a * ep + p * a1 * ep
                   + T.gamma(22) * 2 * big_a * (p + ep))
           + 2 * big_a * p * (dd + (T.TRANSCENDENTAL_ULPS + 3) * T.U))
    w = weight[..., None] if np.ndim(weight) else weight
    return w * phi_prime(d)[..., None] * jta, np.abs(w) * err


def _sigmoid(d):
    return 1.0 / (1.0 + np.exp(-d))


PHI_PRIME = {
    "inter": lambda d: -_sigmoid(-d),                   # softplus(-d)
    "pla": _sigmoid,                                    # softplus(d), on M
    "cts": lambda d: 2 * _sigmoid(d) ** 2 * (1 - _sigmoid(d)),   # s^2, on M
}


# ------------------------------------------------------------ the stages

def inter_deltas(state, data, variant, lambda_adv=(1e-3, 2e-4), lambda_aux=0.1):
    """[(images, {main, aux: (delta, error)})] of Eq. 1 on a batch."""
    g = state["g"]
    xs, ys = data["source_image"], data["source_label"]
    fw = forward(g, xs)
    n = max(int(np.sum(ys != 255)), 1)
    passes = [(fw, {head: _cross_entropy(fw[head], fw[head + "_err"], ys,
                                         weight / n)
                    for head, weight in (("main", 1.0), ("aux", lambda_aux))})]
    if variant != "source_only":
        xt = data["target_image"]
        ft = forward(g, xt)
        weight = 1.0 / np.prod(xt.shape[:3])
        passes.append((ft, {head: _adversarial(
            ft[head], ft[head + "_err"], state["d"][i], PHI_PRIME["inter"],
            lam * weight) for i, (head, lam) in enumerate(
                zip(("main", "aux"), lambda_adv))}))
    return passes


def intra_deltas(state, data, method, kld_lambda, beta=(1e-3, 2e-4),
                 lambda_aux=0.1):
    """[(images, {main, aux: (delta, error)})] of Eq. 5 + beta Eq. 6/8 + KLD."""
    g = state["g"]
    fw = forward(g, data["image"])
    labels, hard = data["pseudo_label"], data["hard_mask"]
    n = max(int(np.sum(labels != 255)), 1)
    deltas = {head: _cross_entropy(fw[head], fw[head + "_err"], labels,
                                   weight / n)
              for head, weight in (("main", 1.0), ("aux", lambda_aux))}
    if kld_lambda:
        d, e = _kld(fw["main"], fw["main_err"], labels, kld_lambda / n)
        deltas["main"] = (deltas["main"][0] + d, deltas["main"][1] + e)
    adversarial = {}
    if method != "none":
        valid = hard != 255
        weight = (hard == 1) * valid / max(int(valid.sum()), 1)
        for i, (head, b) in enumerate(zip(("main", "aux"), beta)):
            adversarial[head] = _adversarial(
                fw[head], fw[head + "_err"], state["d"][i], PHI_PRIME[method],
                b * weight)
            deltas[head] = tuple(s + t for s, t in zip(deltas[head],
                                                       adversarial[head]))
    return [(fw, deltas)], ([(fw, adversarial)] if adversarial else [])


def gradient(state, passes):
    """(exact gradient, bound on its float32 error), dicts by variable path."""
    g = state["g"]
    exact, bound = {}, {}
    for fw, deltas in passes:
        rs = fw["resize"]
        d = {h: deltas[h][0] for h in ("main", "aux")}
        e = {h: np.broadcast_to(deltas[h][1], d[h].shape) for h in d}
        k_b = (rs.max_terms + 2) + 2 * NUM_CLASSES + int(
            np.prod(fw["f"].shape[:3])) + 8
        gamma = T.gamma(fw["k_f"] + k_b + len(passes))
        g_exact = _grads(g, fw, d["main"], d["aux"], False)
        g_err = _grads(g, fw, e["main"], e["aux"], True)
        g_abs = _grads(g, fw, np.abs(d["main"]) + e["main"],
                       np.abs(d["aux"]) + e["aux"], True)
        # The resize gradient's weights, each off by up to dw (not relative).
        g_dw = _grads(g, fw, np.abs(d["main"]), np.abs(d["aux"]), True)
        g_nodw = _grads(g, fw, np.abs(d["main"]), np.abs(d["aux"]), True,
                        exact_resize=True)
        for key in g_exact:
            exact[key] = exact.get(key, 0.0) + g_exact[key]
            bound[key] = (bound.get(key, 0.0) + g_err[key] + gamma * g_abs[key]
                          + (g_dw[key] - g_nodw[key]))
    return exact, bound


def poly_lr(base_lr, step, decay_steps, power=0.9):
    return base_lr * (1.0 - min(step, decay_steps) / decay_steps) ** power


def expected_step(state, passes, base_lr, decay_steps=100, momentum=0.9,
                  weight_decay=5e-4):
    """(exact G weights after the step, bound on a float32 step's distance
    from them, the applied gradient), dicts by variable path."""
    lr = poly_lr(base_lr, state["step"], decay_steps)
    grad, grad_err = gradient(state, passes)
    weights, bound, applied = {}, {}, {}
    for key, w0 in state["g"].items():
        mult = HEAD_MULT if key.startswith("head_") else 1.0
        applied[key] = mult * (grad[key] + weight_decay * w0)
        m0 = state["m"][key]
        m1 = momentum * m0 - lr * applied[key]
        weights[key] = w0 + m1
        bound[key] = (lr * mult * grad_err[key]
                      + (T.TRANSCENDENTAL_ULPS + 8) * T.U * (
                          lr * mult * (np.abs(grad[key])
                                       + weight_decay * np.abs(w0))
                          + momentum * np.abs(m0) + np.abs(w0)))
    return weights, bound, applied


def assert_step(adapter, weights, bound):
    """Every G weight of the adapter within `bound` of the exact step."""
    seen = set()
    for v in adapter.generator.trainable_variables:
        seen.add(v.path)
        got = np.float64(v.numpy())
        excess = np.abs(got - weights[v.path]) - bound[v.path]
        assert np.all(excess <= 0), (
            f"{v.path}: off the exact step by up to "
            f"{np.abs(got - weights[v.path]).max():.3g}, "
            f"{int(np.sum(excess > 0))} weights beyond the bound")
    assert seen == set(weights)


def share_interval(state, passes, adv_passes, weight_decay=5e-4):
    """(lo, hi) holding any float32 value of the logged adversarial share
    ||mult grad(adv)|| / ||mult (grad(loss) + wd w)|| (global norms).

    Each gradient is within its elementwise bound E (relative u more for
    the head multiplier and 4u for the L2 term and the sum); a global norm
    of n values is a sum of n squares, then a square root: within
    gamma(n + 4) relative. So ||v|| +- ||E|| widened by that, and the
    division's u.
    """
    grad, grad_err = gradient(state, passes)
    adv, adv_err = gradient(state, adv_passes)
    norms = {}
    for name, values, errors, l2 in (("adv", adv, adv_err, 0.0),
                                     ("total", grad, grad_err, weight_decay)):
        exact = err = 0.0
        for key, w0 in state["g"].items():
            mult = HEAD_MULT if key.startswith("head_") else 1.0
            v = mult * (values[key] + l2 * w0)
            e = mult * (errors[key] + 4 * T.U * (np.abs(values[key])
                                                 + l2 * np.abs(w0)))
            exact += np.sum(v ** 2)
            err += np.sum(e ** 2)
        norms[name] = (np.sqrt(exact), np.sqrt(err))
    n = sum(w.size for w in state["g"].values())
    gam = T.gamma(n + 4)
    (na, ea), (nt, et) = norms["adv"], norms["total"]
    assert et < nt, "the bound is void"
    lo = (na - ea) * (1 - gam) / ((nt + et) * (1 + gam)) * (1 - T.U)
    hi = (na + ea) * (1 + gam) / ((nt - et) * (1 - gam)) * (1 + T.U)
    return lo, hi


def step_checker(deltas_of, batch_of, base_lr=0.01):
    """A Keras callback that checks every G step of `fit` against the exact
    step from the state that step starts from (its own G, momenta and D):
    deltas_of(state, batch) -> passes; batch_of(step) -> the step's batch."""
    import keras  # pylint: disable=import-outside-toplevel

    class StepChecker(keras.callbacks.Callback):
        checked = 0

        def on_train_batch_begin(self, batch, logs=None):
            state = state_of(self.model)
            self.expected = expected_step(
                state, deltas_of(state, batch_of(state["step"])), base_lr)[:2]

        def on_train_batch_end(self, batch, logs=None):
            assert_step(self.model, *self.expected)
            StepChecker.checked += 1

    return StepChecker()
