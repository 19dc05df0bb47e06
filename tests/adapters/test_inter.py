"""Stage I adapter: one train step does what Eq. 1 says, on one or two replicas."""

import numpy as np
import pytest
import tensorflow as tf

from adapter_fixtures import (compile_tiny, make_dataset_fn, stage1_batches,
                              tiny_discriminators, tiny_generator, weights_of)
import linear_standin as S
import tolerances as T
from tf_pixintra import losses
from tf_pixintra.config import OptimConfig
from tf_pixintra.adapters import diagnostics
from tf_pixintra.adapters.common import upsample
from tf_pixintra.models import split_outputs
from tf_pixintra.adapters.inter import InterDomainAdapter


def build(strategy, variant="adaptsegnet", standin=False):
    """The adapter on the tiny DeepLab-v2 and discriminators, or (standin)
    on the linear stand-ins of linear_standin."""
    with strategy.scope():
        if standin:
            g, (d_main, d_aux) = (S.linear_generator(3),
                                  S.linear_discriminators(3))
        else:
            g = tiny_generator(seed=3)
            d_main, d_aux = tiny_discriminators(seed=3)
        adapter = InterDomainAdapter(g, d_main, d_aux, variant=variant)
        compile_tiny(adapter)
    return adapter


def test_source_only_step_is_sgd_on_cross_entropy_plus_l2(one_device):
    """G moves by -lr * mult * (dCE/dw + wd * w) on the first step (momentum
    buffer empty), mult = 10 on the heads. On the stand-in G of
    linear_standin, whose float32 step is within a written bound of the
    exact float64 one (a deep random G has no useful bound)."""
    with one_device.scope():
        g = S.linear_generator(seed=1)
        adapter = InterDomainAdapter(g, variant="source_only")
        compile_tiny(adapter, lr=0.01)
    assert {v.path for v in g.trainable_variables
            if id(v) in adapter._head_ids} == {
                "head_main/kernel", "head_main/bias",
                "head_aux/kernel", "head_aux/bias"}
    data = {k: v[:2] for k, v in stage1_batches(2).items()}
    state = S.state_of(adapter)
    expected, bound, _ = S.expected_step(
        state, S.inter_deltas(state, data, "source_only"), base_lr=0.01)
    adapter.fit(tf.data.Dataset.from_tensor_slices(data).batch(2), epochs=1,
                verbose=0)
    S.assert_step(adapter, expected, bound)


def test_discriminator_step_lowers_its_loss_and_leaves_g_alone(one_device):
    """With G's LR at 0, a step changes only D, and D's Eq. 1 loss drops."""
    with one_device.scope():
        adapter = InterDomainAdapter(tiny_generator(seed=3),
                                     *tiny_discriminators(seed=3))
        compile_tiny(adapter, lr=0.0)
    data = {k: v[:2] for k, v in stage1_batches(2).items()}

    def d_loss():
        main_s = adapter.generator(data["source_image"])[0]
        main_t = adapter.generator(data["target_image"])[0]
        p_s = tf.nn.softmax(upsample(main_s, (32, 48)))
        p_t = tf.nn.softmax(upsample(main_t, (32, 48)))
        return float(losses.inter_discriminator_loss(adapter.d_main(p_s),
                                                     adapter.d_main(p_t)))

    g_before = weights_of(adapter.generator)
    loss_before = d_loss()
    logs = adapter.fit(tf.data.Dataset.from_tensor_slices(data).batch(2),
                       epochs=3, verbose=0).history
    for key in ("loss_seg", "loss_seg_aux", "loss_adv", "loss_adv_aux",
                "loss_d", "loss_d_aux", "lr_g", "lr_d"):
        assert key in logs and np.isfinite(logs[key][-1]), key
    assert d_loss() < loss_before
    for a, b in zip(g_before, weights_of(adapter.generator)):
        np.testing.assert_array_equal(a, b)


def test_advent_feeds_weighted_self_information(one_device):
    adapter = build(one_device, variant="advent")
    probs = tf.constant([[[[0.5, 0.5] + [0.0] * 17]]])
    expected = losses.weighted_self_information(probs)
    np.testing.assert_allclose(adapter.discriminator_input(
        tf.math.log(probs + 1e-30)).numpy(), expected.numpy(), atol=1e-6)


def test_two_replicas_match_one_device(one_device, mirrored):
    """MirroredStrategy on 2 logical CPUs takes the single-device step.

    On the stand-ins of linear_standin: every G step of either strategy is
    within a written bound of the exact float64 step of Eq. 1 on the whole
    batch (source CE over all labelled pixels, adversarial mean over all
    target pixels), from the state that step starts from.
    """
    data = stage1_batches(8)
    results = []
    for strategy in (one_device, mirrored):
        adapter = build(strategy, standin=True)
        dataset = make_dataset_fn(data, batch_size=4)(0)
        check = S.step_checker(
            lambda state, batch: S.inter_deltas(state, batch, "adaptsegnet"),
            lambda step: {k: v[4 * (step % 2):4 * (step % 2) + 4]
                          for k, v in data.items()})
        adapter.fit(dataset, steps_per_epoch=3, epochs=1, verbose=0,
                    callbacks=[check])
        assert check.checked == 3
        results.append((weights_of(adapter.generator),
                        weights_of(adapter.d_main, adapter.d_aux)))
    fresh = build(one_device, standin=True)
    initial = weights_of(fresh.generator, fresh.d_main, fresh.d_aux)
    (g_one, d_one), (g_two, d_two) = results
    assert all(not np.allclose(a, b) for a, b in zip(g_one + d_one, initial))
    # D: each run moves a weight by at most adam_move_bound whatever its
    # gradients (float noise can flip a near-zero one), so the two are
    # within twice that.
    optim = OptimConfig()
    d_tol = T.across(T.adam_move_bound(optim.lr_d, 3, optim.adam_beta1,
                                       optim.adam_beta2))
    for a, b in zip(d_one, d_two):
        np.testing.assert_allclose(a, b, rtol=0, atol=d_tol)


def test_unknown_variant_is_rejected():
    with pytest.raises(ValueError, match="variant"):
        InterDomainAdapter(tiny_generator(), variant="cycada")


def test_get_config_round_trip():
    adapter = InterDomainAdapter(tiny_generator(seed=4), *tiny_discriminators(4),
                                 variant="advent", lambda_adv_main=3e-3,
                                 weight_decay=1e-4, head_lr_mult=5.0)
    clone = InterDomainAdapter.from_config(adapter.get_config())
    assert (clone.variant, clone.lambda_adv_main, clone.weight_decay,
            clone.head_lr_mult) == ("advent", 3e-3, 1e-4, 5.0)
    x = np.random.default_rng(0).normal(0, 50, (1, 32, 48, 3)).astype(np.float32)
    clone.generator.set_weights(adapter.generator.get_weights())
    # Same architecture, same weights, same eager ops on the same input.
    np.testing.assert_array_equal(clone(x)[0], adapter(x)[0])
    assert clone.d_main.count_params() == adapter.d_main.count_params()


def test_intrada_discriminator_auc_and_gradient_share_are_logged(one_device):
    """IntraDA's D (pixel-level, entropy maps): AUC of "hard image" over the
    real pixels of both sides, from D before its update; the share of G's
    gradient from the adversarial term on a diagnostic step."""
    with one_device.scope():
        adapter = InterDomainAdapter(
            tiny_generator(seed=6), *tiny_discriminators(6, pixel_level=True),
            variant="advent", diag_every=1)
        compile_tiny(adapter, lr=0.0)
    data = {k: v[:2] for k, v in stage1_batches(2).items()}
    valid_s = np.ones((2, 32, 48), np.float32)
    valid_s[:, 20:] = 0.0                      # padded rows of the easy side
    data["source_valid"] = valid_s
    data["target_valid"] = np.ones((2, 32, 48), np.float32)
    scores = []
    for image in ("source_image", "target_image"):
        main = split_outputs(adapter.generator(data[image], training=True))[0]
        d_out = adapter.d_main(adapter.discriminator_input(
            upsample(main, (32, 48))), training=True)
        scores.append(-d_out[..., 0])   # logit of "target" (1 - D)
    expected = diagnostics.PairwiseAUC("expected")
    expected.update_state(
        np.concatenate([np.zeros((2, 32, 48)), np.ones((2, 32, 48))]),
        tf.concat(scores, 0), np.concatenate([valid_s, data["target_valid"]]))
    logs = adapter.fit(tf.data.Dataset.from_tensor_slices(data).batch(2),
                       epochs=1, verbose=0).history
    assert logs["diag_auc_d"][-1] == pytest.approx(float(expected.result()),
                                                   abs=1e-6)
    assert "diag_auc_d_aux" in logs
    assert 0.0 < logs["diag_adv_grad_share"][-1] < 1.0
