"""Stage II adapter: Eq. 5 + beta * Eq. 6/8 (+ KLD), one or two replicas."""

import numpy as np
import pytest
import tensorflow as tf

from adapter_fixtures import (H, W, compile_tiny, make_dataset_fn,
                              stage2_batches, tiny_discriminators,
                              tiny_generator, weights_of)
import linear_standin as S
import tolerances as T
from tf_pixintra import losses
from tf_pixintra.config import OptimConfig
from tf_pixintra.adapters import diagnostics
from tf_pixintra.adapters.common import upsample
from tf_pixintra.models import split_outputs
from tf_pixintra.adapters.intra import PixelIntraAdapter


def build(strategy, method="cts", kld_lambda=0.0, lr=0.01, seed=5,
          diag_every=0, standin=False, bn_mode="frozen"):
    """The adapter on the tiny DeepLab-v2 and discriminators, or (standin)
    on the linear stand-ins of linear_standin."""
    with strategy.scope():
        g, ds = ((S.linear_generator(seed), S.linear_discriminators(seed))
                 if standin else (tiny_generator(seed=seed, bn_mode=bn_mode),
                                  tiny_discriminators(seed, pixel_level=True)))
        adapter = PixelIntraAdapter(
            g, *ds,
            method=method, kld_lambda=kld_lambda, diag_every=diag_every)
        compile_tiny(adapter, lr=lr)
    return adapter


def first_batch(n=2):
    return {k: v[:n] for k, v in stage2_batches(n).items()}


def test_generator_step_is_eq9_with_kld(one_device):
    """w1 = w0 - lr * mult * d/dw [Eq.5 (main + 0.1 aux) + 0.1 KLD + beta Eq.8 + L2].

    With diag_every=1 the adversarial share of that gradient is logged too.
    On the stand-ins of linear_standin: the exact float64 step and share,
    and bounds on any float32 execution of them (a deep random G and D have
    no useful bound).
    """
    adapter = build(one_device, method="cts", kld_lambda=0.1, diag_every=1,
                    standin=True)
    data = first_batch()
    state = S.state_of(adapter)
    passes, adv_passes = S.intra_deltas(state, data, "cts", 0.1)
    expected, bound, _ = S.expected_step(state, passes, base_lr=0.01)
    lo, hi = S.share_interval(state, passes, adv_passes)
    logs = adapter.fit(tf.data.Dataset.from_tensor_slices(data).batch(2),
                       epochs=1, verbose=0).history
    assert set(logs) >= {"loss_seg", "loss_seg_aux", "loss_kld", "loss_adv",
                         "loss_adv_aux", "loss_d", "loss_d_aux", "lr_g", "lr_d",
                         "diag_auc_d", "diag_auc_d_aux", "diag_zcorr_d",
                         "diag_zcorr_d_aux", "diag_adv_grad_share"}
    assert 0.0 < lo <= hi < 1.0
    assert lo <= logs["diag_adv_grad_share"][-1] <= hi
    S.assert_step(adapter, expected, bound)


@pytest.mark.parametrize("method, d_loss, target", [
    ("pla", losses.pla_discriminator_loss, "hard_mask"),
    ("cts", losses.cts_discriminator_loss, "z"),
])
def test_discriminator_fits_m_or_z_and_g_is_untouched(one_device, method,
                                                      d_loss, target):
    adapter = build(one_device, method=method, lr=0.0)
    data = first_batch()

    def current_d_loss():
        main = split_outputs(adapter.generator(data["image"]))[0]
        p = tf.nn.softmax(upsample(main, (H, W)))
        return float(d_loss(adapter.d_main(p), data[target]))

    g_before = weights_of(adapter.generator)
    start = current_d_loss()
    adapter.fit(tf.data.Dataset.from_tensor_slices(data).batch(2), epochs=3,
                verbose=0)
    assert current_d_loss() < start
    for a, b in zip(g_before, weights_of(adapter.generator)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("method", ["pla", "cts"])
def test_padded_pixels_are_left_out_of_the_adversarial_losses(one_device,
                                                              method):
    """Padding (M = 255) counts in neither D's loss nor G's adversarial mean.

    The logged losses of one step equal the losses computed by hand over
    the real pixels with G and D as they were before the step, and differ
    from the old reading (padding = easy, Z = its pad value); the logged
    AUC is that of sigmoid(D) against M over the real pixels.
    """
    adapter = build(one_device, method=method, lr=0.0)
    bias = adapter.d_main.trainable_variables[-1]   # D's output bias, shape (1,)
    assert bias.shape == (1,)
    bias.assign([2.0])      # D says "hard" everywhere: padding-as-easy would cost
    data = first_batch()
    # Image 0 padded below row H/2, image 1 right of column W/3 (uneven).
    pad = np.zeros((2, H, W), bool)
    pad[0, H // 2:] = True
    pad[1, :, W // 3:] = True
    data["hard_mask"][pad] = 255
    data["pseudo_label"][pad] = 255
    data["z"][pad] = 0.7     # garbage in padding must not reach CTS' D
    data["image"][pad] = 0.0
    mask, valid = losses.hard_mask_and_valid(data["hard_mask"])
    main = split_outputs(adapter.generator(data["image"], training=True))[0]
    d_out = adapter.d_main(tf.nn.softmax(upsample(main, (H, W))), training=True)
    if method == "pla":
        d_args = (d_out, mask)
        expected_d = losses.pla_discriminator_loss(*d_args, valid)
        expected_g = losses.pla_generator_loss(d_out, mask, valid)
        old_g = losses.pla_generator_loss(d_out, mask)
    else:
        d_args = (d_out, data["z"])
        expected_d = losses.cts_discriminator_loss(*d_args, valid)
        expected_g = losses.cts_generator_loss(d_out, mask, valid)
        old_g = losses.cts_generator_loss(d_out, mask)
    old_d = (losses.pla_discriminator_loss if method == "pla" else
             losses.cts_discriminator_loss)(*d_args)
    auc = diagnostics.PairwiseAUC("expected")
    auc.update_state(mask, d_out[..., 0], valid)
    logs = adapter.fit(tf.data.Dataset.from_tensor_slices(data).batch(2),
                       epochs=1, verbose=0).history
    # Same float32 ops on 2x32x48 pixels in both graphs: rounding ~1e-6.
    assert logs["loss_d"][-1] == pytest.approx(float(expected_d), rel=1e-5)
    assert logs["loss_adv"][-1] == pytest.approx(float(expected_g), rel=1e-5)
    assert abs(float(old_d) / float(expected_d) - 1) > 1e-2
    assert abs(float(old_g) / float(expected_g) - 1) > 1e-2
    assert logs["diag_auc_d"][-1] == pytest.approx(float(auc.result()),
                                                   abs=1e-6)


def test_pixel_level_discriminator_output_is_input_size(one_device):
    adapter = build(one_device)
    p = tf.nn.softmax(tf.zeros((1, H, W, 19)))
    assert adapter.d_main(p).shape == (1, H, W, 1)


def test_method_none_trains_on_eq5_only(one_device):
    with one_device.scope():
        adapter = PixelIntraAdapter(tiny_generator(seed=2), method="none")
        compile_tiny(adapter)
    logs = adapter.fit(tf.data.Dataset.from_tensor_slices(first_batch()).batch(2),
                       epochs=1, verbose=0).history
    assert "loss_adv" not in logs and "loss_d" not in logs
    assert np.isfinite(logs["loss_seg"][-1])


def test_two_replicas_match_one_device_with_uneven_easy_pixels(one_device, mirrored):
    """Replicas see different numbers of easy pixels; the result is still exact."""
    data = stage2_batches(8)
    data["pseudo_label"][0:2] = 255          # replica 0's first batch: no easy pixel
    data["hard_mask"][0:2] = 1
    # Replica 1 of the first batch: padded pixels (M = 255), so the replicas
    # average D's loss and G's adversarial term over different pixel counts.
    data["hard_mask"][2, H // 3:] = 255
    data["pseudo_label"][2, H // 3:] = 255
    results = []
    for strategy in (one_device, mirrored):
        # diag_every=2: the gradient-share branch runs on step 0 only.
        # On the stand-ins of linear_standin: every G step of either
        # strategy is within a written bound of the exact float64 step on
        # the whole batch (means over all its easy / real pixels), from the
        # state that step starts from.
        adapter = build(strategy, method="pla", kld_lambda=0.1, diag_every=2,
                        standin=True)
        check = S.step_checker(
            lambda state, batch: S.intra_deltas(state, batch, "pla", 0.1)[0],
            lambda step: {k: v[4 * (step % 2):4 * (step % 2) + 4]
                          for k, v in data.items()})
        adapter.fit(make_dataset_fn(data, batch_size=4)(0), steps_per_epoch=2,
                    epochs=1, verbose=0, callbacks=[check])
        assert check.checked == 2
        results.append((weights_of(adapter.generator),
                        weights_of(adapter.d_main, adapter.d_aux)))
    (g_one, d_one), (g_two, d_two) = results
    assert all(np.all(np.isfinite(w)) for w in g_one + d_one), "diverged"
    # Adam's step is bounded whatever the gradient, and float noise on a
    # near-zero gradient can flip its sign: each run moves a D weight by at
    # most adam_move_bound, so the two are within twice that. (Adam is
    # scale-invariant: D's replica scaling cannot show in its weights.)
    optim = OptimConfig()
    d_tol = T.across(T.adam_move_bound(optim.lr_d, 2, optim.adam_beta1,
                                       optim.adam_beta2))
    for a, b in zip(d_one, d_two):
        np.testing.assert_allclose(a, b, rtol=0, atol=d_tol)


def test_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="method"):
        PixelIntraAdapter(tiny_generator(), method="gan")


def test_get_config_round_trip():
    adapter = PixelIntraAdapter(tiny_generator(seed=4),
                                *tiny_discriminators(4, pixel_level=True),
                                method="pla", beta_main=2e-3, kld_lambda=0.1)
    clone = PixelIntraAdapter.from_config(adapter.get_config())
    assert (clone.method, clone.beta_main, clone.beta_aux, clone.kld_lambda) == (
        "pla", 2e-3, 2e-4, 0.1)
    p = tf.nn.softmax(tf.zeros((1, H, W, 19)))
    assert clone.d_main(p).shape == (1, H, W, 1)


def test_trained_bn_under_two_replicas_with_the_gradient_diagnostic(mirrored):
    """bn_mode=train on two replicas, the gradient-share diagnostic on every
    step (its extra backward pass runs inside a tf.cond, where TF refuses a
    collective): the steps run, and both replicas end with the same BN moving
    statistics."""
    adapter = build(mirrored, diag_every=1, bn_mode="train")
    adapter.fit(make_dataset_fn(stage2_batches(8), batch_size=4)(0), steps_per_epoch=2,
                epochs=1, verbose=0)
    moving = [v for v in adapter.generator.weights if "moving_" in v.path]
    assert moving
    for v in moving:
        first, second = (t.numpy() for t in mirrored.experimental_local_results(v.value))
        np.testing.assert_array_equal(first, second)
