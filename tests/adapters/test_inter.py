"""Stage I adapter: one train step does what Eq. 1 says, on one or two replicas."""

import numpy as np
import pytest
import tensorflow as tf

from adapter_fixtures import (compile_tiny, make_dataset_fn, stage1_batches,
                              tiny_discriminators, tiny_generator, weights_of)
from tf_pixintra import losses
from tf_pixintra.adapters.common import split_outputs, upsample
from tf_pixintra.adapters.inter import InterDomainAdapter


def build(strategy, variant="adaptsegnet"):
    with strategy.scope():
        g = tiny_generator(seed=3)
        d_main, d_aux = tiny_discriminators(seed=3)
        adapter = InterDomainAdapter(g, d_main, d_aux, variant=variant)
        compile_tiny(adapter)
    return adapter


def test_source_only_step_is_sgd_on_cross_entropy_plus_l2(one_device):
    """G moves by -lr * (dCE/dw + wd * w) on the first step (momentum buffer empty)."""
    with one_device.scope():
        g = tiny_generator(seed=1)
        adapter = InterDomainAdapter(g, variant="source_only")
        compile_tiny(adapter, lr=0.01)
    data = {k: v[:2] for k, v in stage1_batches(2).items()}
    x = tf.constant(data["source_image"])
    y = tf.constant(data["source_label"])
    before = [v.numpy().copy() for v in g.trainable_variables]
    with tf.GradientTape() as tape:
        main, aux = split_outputs(g(x, training=True))
        loss = (losses.segmentation_cross_entropy(upsample(main, (32, 48)), y)
                + 0.1 * losses.segmentation_cross_entropy(upsample(aux, (32, 48)), y))
    grads = tape.gradient(loss, g.trainable_variables)
    adapter.fit(tf.data.Dataset.from_tensor_slices(data).batch(2), epochs=1,
                verbose=0)
    head_ids = adapter._head_ids
    for v, w0, gr in zip(g.trainable_variables, before, grads):
        mult = 10.0 if id(v) in head_ids else 1.0
        expected = w0 - 0.01 * mult * (gr.numpy() + 5e-4 * w0)
        np.testing.assert_allclose(v.numpy(), expected, rtol=2e-4, atol=1e-6)


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
    """MirroredStrategy on 2 logical CPUs ends with the same weights."""
    data = stage1_batches(8)
    results = []
    for strategy in (one_device, mirrored):
        adapter = build(strategy)
        dataset = make_dataset_fn(data, batch_size=4)(0)
        adapter.fit(dataset, steps_per_epoch=3, epochs=1, verbose=0)
        results.append(weights_of(adapter.generator, adapter.d_main, adapter.d_aux))
    fresh = build(one_device)
    initial = weights_of(fresh.generator, fresh.d_main, fresh.d_aux)
    assert any(not np.allclose(a, b) for a, b in zip(results[0], initial))
    for a, b in zip(*results):
        assert np.all(np.isfinite(a)), "training diverged: the comparison would be void"
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


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
    np.testing.assert_allclose(clone(x)[0], adapter(x)[0], atol=1e-5)
    assert clone.d_main.count_params() == adapter.d_main.count_params()
