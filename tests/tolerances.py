"""Float error bounds for the numeric tests: every tolerance is derived here.

Rules the tests follow (issue 17, item 0):

- Same code path, same inputs, same process: compared exactly
  (`assert_array_equal`), never with a tolerance.
- A value worked out by hand: the float32 rounding of the few operations
  the code performs, written next to the assertion.
- Two code paths (graph vs eager, SavedModel vs Keras, one vs two
  replicas, ...): each path is within a bound B of the exact real-number
  result whatever its summation order, SIMD width or use of FMA, so the two
  are within `across(B)` = 2B of each other. B comes from the functions
  below, with the magnitudes of the actual operands (never from an observed
  difference).
- When B is useless (a deep random network multiplies rounding errors by
  products of weight norms no a-priori argument can keep small), the test
  is restructured: a stand-in model whose bound is known, or the
  intermediate recorded from the code under test.

Error model (N. J. Higham, Accuracy and Stability of Numerical Algorithms,
2nd ed., 2002, Sec. 2.2 and 3.1): fl(a op b) = (a op b)(1 + d), |d| <= u,
with u = 2^-24 for float32. A sum or dot product of n terms in any order is
within gamma(n) * sum |terms| of the exact value, gamma(n) = n u / (1 - n u).
exp and log are not correctly rounded in Eigen, oneDNN or XNNPACK: we
allow them TRANSCENDENTAL_ULPS units of u of relative error.
"""

U = 2.0 ** -24                  # float32 unit roundoff
U16 = 2.0 ** -11                # float16 unit roundoff
# The smallest normal float32. TensorFlow's CPU kernels flush subnormal
# results to zero, numpy keeps them: the same operation on the same numbers
# can differ by less than TINY per operation, and by nothing else.
TINY = 2.0 ** -126
TRANSCENDENTAL_ULPS = 8         # exp / log relative error, in units of u


def gamma(n, u=U):
    """Higham's gamma_n = n u / (1 - n u): n roundings of relative size u."""
    return n * u / (1.0 - n * u)


def sum_bound(n, abs_sum, u=U):
    """|fl(sum of n terms) - sum| for any order, sum |terms| = abs_sum.

    Also a dot product of length n (n products, n - 1 additions: n
    roundings on the path of each term) with abs_sum = sum |a_i b_i|.
    """
    return gamma(n, u) * abs_sum


def resize_bound(max_abs, n_in, u=U):
    """|fl(bilinear resize) - exact| of values |x| <= max_abs, n_in >= the
    input side length.

    Two levels of lerp a + (b - a) w, three roundings each on values of at
    most 2 max_abs: 12 u max_abs. The weight w = frac((i + 0.5) s - 0.5)
    with s = n_in / n_out rounded, one product and one difference on a
    number below n_in + 1: |dw| <= 3 u (n_in + 1); the output moves by at
    most 2 max_abs per unit of each of the two weights: 4 max_abs |dw|.
    """
    return max_abs * u * (12.0 + 12.0 * (n_in + 1))


def softmax_bound(logit_error, num_classes, u=U):
    """|fl(softmax(z + e)) - softmax(z)| (max-norm) for |e| <= logit_error.

    The Jacobian diag(p) - p p^T has max-norm max_i 2 p_i (1 - p_i) <= 1/2,
    so an input error moves p by at most logit_error / 2. Rounding: z - max
    (one rounding; exp turns an absolute error u |z_i - max| into a relative
    one, and p_i |z_i - max| u <= u / e), exp, a sum of C terms, a division:
    p_i is within (1 + TRANSCENDENTAL_ULPS + C + 1) u relative, p_i <= 1.
    """
    return 0.5 * logit_error + (TRANSCENDENTAL_ULPS + num_classes + 2) * u


def mean_bound(n, error_each, max_abs, u=U):
    """|fl(mean of n values) - exact mean| for values within error_each of
    theirs and |values| <= max_abs: the inputs' error (a mean does not grow
    it), the sum's rounding (gamma(n - 1) n max_abs / n) and the division."""
    return error_each + gamma(max(n - 1, 0), u) * max_abs + u * max_abs


def across(bound):
    """Two computations each within `bound` of the exact value."""
    return 2.0 * bound


def probs_sum_bound(num_classes, variants=1, u=U):
    """|sum_k fl(p_k) - 1| for a softmax (or a mean of `variants` of them).

    Each p_k is within (TRANSCENDENTAL_ULPS + C + 2) u relative (see
    `softmax_bound`) and sum p_k = 1; adding C of them rounds C - 1 times
    on partial sums <= 1 + small; the mean of V of them adds V - 1 sums and
    a division, elementwise, so relative gamma(V) + u more.
    """
    per_p = (TRANSCENDENTAL_ULPS + num_classes + 2) * u
    return per_p + gamma(num_classes - 1, u) + gamma(variants, u) + u


def adam_move_bound(lr, steps, beta1, beta2, u=U):
    """Largest |total change| of one weight after `steps` Adam steps with
    learning rates <= lr, whatever the gradients.

    Keras' Adam moves w by lr_t m_t / (sqrt(v_t) + eps) with bias-corrected
    m_t = sum_i a_i g_i, v_t = sum_i b_i g_i^2, a_i = (1 - beta1)
    beta1^(t-i) / (1 - beta1^t), b_i likewise with beta2. By Cauchy-Schwarz
    |m_t| <= sqrt(sum a_i^2 / b_i) sqrt(v_t) (Kingma and Ba, ICLR 2015,
    Sec. 2.1, bound the same ratio), and eps only shrinks the step. The
    step's own float32 arithmetic adds a few u relative: 16 u allowed.
    """
    total = 0.0
    for t in range(1, steps + 1):
        a = [(1 - beta1) * beta1 ** (t - i) / (1 - beta1 ** t)
             for i in range(1, t + 1)]
        b = [(1 - beta2) * beta2 ** (t - i) / (1 - beta2 ** t)
             for i in range(1, t + 1)]
        total += lr * sum(x * x / y for x, y in zip(a, b)) ** 0.5
    return total * (1 + 16 * u)
