"""benchmarks/torch_step.py: the PyTorch reference step against the TF one.

At the tiny config: G and D have as many weights in PyTorch as in TF; one
step of each kind runs with finite losses; with the TF weights copied in,
every loss the TF step logs (segmentation, adversarial, discriminator) has
the same value on the shared batch, within what float32 rounding explains.
"""

import inspect

import numpy as np
import pytest

torch = pytest.importorskip("torch")

# pylint: disable=wrong-import-position
from tf_pixintra.adapters.common import AdversarialAdapter  # noqa: E402
from tf_pixintra.adapters.inter import InterDomainAdapter  # noqa: E402
from tf_pixintra.adapters.intra import PixelIntraAdapter  # noqa: E402

from benchmarks import step_common  # noqa: E402
from benchmarks import torch_step  # noqa: E402
from benchmarks import train_step  # noqa: E402
from benchmarks.torch_models import copy_keras_weights  # noqa: E402
from benchmarks.torch_models import rounding_tolerance  # noqa: E402

CFG = step_common.CONFIGS["tiny"]
EPS = float(np.finfo(np.float32).eps)
F = torch.nn.functional


def _layer_weights(model):
    return {layer.name: layer.get_weights() for layer in model.layers
            if layer.get_weights()}


# D's final bias in both frameworks: D's logits then sit well away from 0,
# where a swapped label or target changes every adversarial and D loss by
# far more than its tolerance (with the zero init they are all near log 2).
D_BIASES = (1.5, -1.0)


@pytest.fixture(scope="module")
def steps():
    """{kind: (TF adapter, its batch, PyTorch step with the TF weights)}.

    PyTorch runs on one thread here: its OpenMP threads slow down badly
    when the cores are shared with TensorFlow's.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {}
    for kind in step_common.KINDS:
        adapter = train_step.build_adapter(kind, CFG)
        for keras_d, bias in zip((adapter.d_main, adapter.d_aux), D_BIASES):
            if keras_d is not None:
                keras_d.get_layer("d_classifier").bias.assign([bias])
        step = torch_step.TorchStep(kind, CFG)
        copy_keras_weights(step.g, _layer_weights(adapter.generator))
        for d, keras_d in zip(step.ds, (adapter.d_main, adapter.d_aux)):
            copy_keras_weights(d, _layer_weights(keras_d))
        out[kind] = (adapter, train_step.make_batch(kind, CFG), step)
    yield out
    torch.set_num_threads(threads)


def test_constants_are_the_tf_adapters_defaults():
    inter = inspect.signature(InterDomainAdapter).parameters
    intra = inspect.signature(PixelIntraAdapter).parameters
    # Both adapters take lambda_seg_aux from their base.
    base = inspect.signature(AdversarialAdapter).parameters
    assert torch_step.LAMBDA_SEG_AUX == base["lambda_seg_aux"].default
    assert torch_step.LAMBDA_ADV_MAIN == inter["lambda_adv_main"].default
    assert torch_step.LAMBDA_ADV_AUX == inter["lambda_adv_aux"].default
    assert torch_step.BETA_MAIN == intra["beta_main"].default
    assert torch_step.BETA_AUX == intra["beta_aux"].default


def test_parameter_counts_match_tf(steps):
    adapter, _, step = steps["stage1"]
    counts = step.parameter_counts()
    g = adapter.generator
    assert counts["generator_parameters"] == train_step.count_weights(g.weights)
    assert counts["generator_trainable_parameters"] == (
        train_step.count_weights(g.trainable_weights))
    assert counts["discriminator_parameters"] == (
        train_step.count_weights(adapter.d_main.weights)) == 2781121
    # Frozen BN: G trains its convs only (and the heads' biases).
    assert counts["generator_trainable_parameters"] < counts[
        "generator_parameters"]


def _head_logit_errors(step, image):
    """max |logit error| of G's (main, aux) heads that float32 rounding
    explains (benchmarks.torch_models.rounding_tolerance), and the logits."""
    with torch.no_grad():
        logits = step.g(image)
    rel = rounding_tolerance(step.g)
    return [rel * float(o.abs().max()) for o in logits], logits


def _ce_tolerance(logit_error, logits, loss, pixels):
    """|d CE| <= 2 max|d logit| (the CE gradient has L1 norm <= 2 per
    pixel; bilinear upsampling never increases max|d logit|), plus the
    rounding of the log-sum-exp (terms up to max|logit|) and of the mean
    over `pixels` values."""
    return (2 * logit_error
            + 8 * EPS * (float(logits.abs().max())
                         + np.sqrt(pixels) * abs(loss)))


def _d_loss_tolerance(fn, d, maps, map_errors, pixels):
    """Error of fn(d(map_1), d(map_2), ...) to first order (Hoelder):
    sum_i ||d fn / d map_i||_1 max|d map_i| for the maps' errors, plus
    ||d fn / d logits_i||_1 times D's own rounding error of its logits,
    plus the rounding of the mean over `pixels` values."""
    maps = [m.detach().clone().requires_grad_(True) for m in maps]
    d_out = [d(m) for m in maps]
    held = [o.detach().clone().requires_grad_(True) for o in d_out]
    value = fn(*held)
    logit_grads = torch.autograd.grad(value, held)
    map_grads = torch.autograd.grad(
        d_out, maps, grad_outputs=list(logit_grads))
    d_out = [o.detach() for o in d_out]
    d_error = rounding_tolerance(d)
    bound = sum(float(g.abs().sum()) * e
                for g, e in zip(map_grads, map_errors))
    bound += sum(float(g.abs().sum()) * d_error * float(o.abs().max())
                 for g, o in zip(logit_grads, d_out))
    return bound + 8 * EPS * np.sqrt(pixels) * abs(float(value.detach()))


def _maps(logits, size):
    return F.softmax(torch_step.upsample(logits, size), dim=1)


def _map_error(logit_error):
    """max|d softmax| <= 1/2 max|d logit| (the softmax Jacobian's rows have
    L1 norm 2 p (1 - p) <= 1/2), plus its own rounding (p <= 1)."""
    return 0.5 * logit_error + 8 * EPS


def _run_both(steps, kind):
    adapter, batch, step = steps[kind]
    want = {k: float(v) for k, v in adapter.train_step(batch).items()
            if k.startswith("loss")}
    got = {k: float(v) for k, v in step().items()}
    assert set(got) == set(want)
    assert all(np.isfinite(v) for v in got.values())
    return want, got, step


def _check_segmentation(want, got, step, image):
    errors, logits = _head_logit_errors(step, image)
    pixels = image.shape[0] * image.shape[2] * image.shape[3]
    for name, error, out in zip(("loss_seg", "loss_seg_aux"), errors, logits):
        tol = _ce_tolerance(error, out, want[name], pixels)
        assert abs(got[name] - want[name]) <= tol, (name, got, want, tol)
    return errors, logits


def test_supervised_losses_match_tf(steps):
    want, got, step = _run_both(steps, "supervised")
    _check_segmentation(want, got, step, step.batch["source_image"])


def test_stage1_losses_match_tf(steps):
    want, got, step = _run_both(steps, "stage1")
    xs, xt = step.batch["source_image"], step.batch["target_image"]
    errors_s, logits_s = _check_segmentation(want, got, step, xs)
    errors_t, logits_t = _head_logit_errors(step, xt)
    size = xs.shape[2:]

    def adv(o):
        return torch_step.bce(o, 1)

    def disc(o_s, o_t):
        return 0.5 * torch_step.bce(o_s, 1) + 0.5 * torch_step.bce(o_t, 0)

    for i, suffix in enumerate(("", "_aux")):
        d = step.ds[i]
        m_s, m_t = _maps(logits_s[i], size), _maps(logits_t[i], size)
        e_s, e_t = _map_error(errors_s[i]), _map_error(errors_t[i])
        pixels = int(np.prod(d(m_t).shape))
        tol = _d_loss_tolerance(adv, d, [m_t], [e_t], pixels)
        name = "loss_adv" + suffix
        assert abs(got[name] - want[name]) <= tol, (name, got, want, tol)
        tol = _d_loss_tolerance(disc, d, [m_s, m_t], [e_s, e_t], pixels)
        name = "loss_d" + suffix
        assert abs(got[name] - want[name]) <= tol, (name, got, want, tol)


def test_stage2_losses_match_tf(steps):
    want, got, step = _run_both(steps, "stage2")
    x = step.batch["image"]
    errors, logits = _check_segmentation(want, got, step, x)
    mask = (step.batch["hard_mask"] == 1).float()
    valid = torch.ones_like(mask)
    z = step.batch["z"]

    def adv(o):
        return torch_step.masked_mean(
            (torch.sigmoid(o.squeeze(1)) * mask) ** 2, valid)

    def disc(o):
        return torch_step.masked_mean(
            (torch.sigmoid(o.squeeze(1)) - z) ** 2, valid)

    pixels = int(mask.numel())
    for i, suffix in enumerate(("", "_aux")):
        m = _maps(logits[i], x.shape[2:])
        for name, fn in (("loss_adv", adv), ("loss_d", disc)):
            tol = _d_loss_tolerance(fn, step.ds[i], [m],
                                    [_map_error(errors[i])], pixels)
            name += suffix
            assert abs(got[name] - want[name]) <= tol, (name, got, want, tol)
