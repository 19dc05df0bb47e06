"""Stage II adapter: Eq. 5 + beta * Eq. 6/8 (+ KLD), one or two replicas."""

import numpy as np
import pytest
import tensorflow as tf

from adapter_fixtures import (H, W, compile_tiny, make_dataset_fn,
                              stage2_batches, tiny_discriminators,
                              tiny_generator, weights_of)
from tf_pixintra import losses
from tf_pixintra.adapters.common import split_outputs, upsample
from tf_pixintra.adapters.intra import PixelIntraAdapter


def build(strategy, method="cts", kld_lambda=0.0, lr=0.01, seed=5):
    with strategy.scope():
        adapter = PixelIntraAdapter(
            tiny_generator(seed=seed), *tiny_discriminators(seed, pixel_level=True),
            method=method, kld_lambda=kld_lambda)
        compile_tiny(adapter, lr=lr)
    return adapter


def first_batch(n=2):
    return {k: v[:n] for k, v in stage2_batches(n).items()}


def test_generator_step_is_eq9_with_kld(one_device):
    """w1 = w0 - lr * mult * d/dw [Eq.5 (main + 0.1 aux) + 0.1 KLD + beta Eq.8 + L2]."""
    adapter = build(one_device, method="cts", kld_lambda=0.1)
    g, d_main, d_aux = adapter.generator, adapter.d_main, adapter.d_aux
    data = first_batch()
    labels, mask = tf.constant(data["pseudo_label"]), tf.constant(data["hard_mask"])
    before = [v.numpy().copy() for v in g.trainable_variables]
    with tf.GradientTape() as tape:
        main, aux = split_outputs(g(data["image"], training=True))
        main, aux = upsample(main, (H, W)), upsample(aux, (H, W))
        loss = (losses.partial_cross_entropy(main, labels)
                + 0.1 * losses.partial_cross_entropy(aux, labels)
                + 0.1 * losses.kld_regularizer(main, labels)
                + 1e-3 * losses.cts_generator_loss(d_main(tf.nn.softmax(main)), mask)
                + 2e-4 * losses.cts_generator_loss(d_aux(tf.nn.softmax(aux)), mask))
    grads = tape.gradient(loss, g.trainable_variables)
    logs = adapter.fit(tf.data.Dataset.from_tensor_slices(data).batch(2),
                       epochs=1, verbose=0).history
    assert set(logs) >= {"loss_seg", "loss_seg_aux", "loss_kld", "loss_adv",
                         "loss_adv_aux", "loss_d", "loss_d_aux", "lr_g", "lr_d"}
    for v, w0, gr in zip(g.trainable_variables, before, grads):
        mult = 10.0 if id(v) in adapter._head_ids else 1.0
        expected = w0 - 0.01 * mult * (gr.numpy() + 5e-4 * w0)
        np.testing.assert_allclose(v.numpy(), expected, rtol=2e-4, atol=1e-6)


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
    results = []
    for strategy in (one_device, mirrored):
        adapter = build(strategy, method="pla", kld_lambda=0.1)
        adapter.fit(make_dataset_fn(data, batch_size=4)(0), steps_per_epoch=2,
                    epochs=1, verbose=0)
        results.append((weights_of(adapter.generator),
                        weights_of(adapter.d_main, adapter.d_aux)))
    (g_one, d_one), (g_two, d_two) = results
    assert all(np.all(np.isfinite(w)) for w in g_one + d_one), "diverged"
    # Summation order differs between one and two replicas: float32 noise,
    # amplified by the 10x head learning rate, reaches ~1e-4 relative.
    for a, b in zip(g_one, g_two):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    # Adam moves a weight by ~lr whatever the gradient's size, so float noise
    # on a near-zero gradient can flip a step: allow 2 steps of lr_d (1e-4).
    for a, b in zip(d_one, d_two):
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-4)


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
