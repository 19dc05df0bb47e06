"""Stage I and Stage II train steps under Keras mixed-precision policies.

The models compute in float16 / bfloat16 but keep float32 variables, and
their logits (G) and outputs (D) stay float32, so every loss is computed in
float32. Under mixed_float16 each optimizer is a LossScaleOptimizer (the
adapters scale each loss, the optimizer unscales and skips non-finite
steps); bfloat16 has float32's exponent range and needs no loss scaling.

The tiny random-init generator (frozen BN) gives logits in the hundreds on
Caffe-range inputs (std 50), whose float16 gradients overflow at any loss
scale Keras tries in the first steps; the training checks feed the same
images scaled to unit range, which keeps the losses O(1) as with a
pretrained model. The overflow itself is checked once: the step is skipped.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from adapter_fixtures import (compile_tiny, make_dataset_fn, stage1_batches,
                              stage2_batches, tiny_discriminators,
                              tiny_generator, weights_of)
from tf_pixintra.adapters.common import upsample
from tf_pixintra.adapters.inter import InterDomainAdapter
from tf_pixintra.adapters.intra import PixelIntraAdapter

COMPUTE_DTYPE = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}
STEPS = 2
INPUT_SCALE = 0.02   # std 50 -> 1


@pytest.fixture(params=sorted(COMPUTE_DTYPE))
def policy(request):
    """Sets the global dtype policy for the test; float32 again afterwards."""
    keras.mixed_precision.set_global_policy(request.param)
    try:
        yield request.param
    finally:
        keras.mixed_precision.set_global_policy("float32")


def build(kind, policy_name):
    """A tiny adapter built (after the policy was set) and compiled."""
    if kind == "inter":
        adapter = InterDomainAdapter(tiny_generator(seed=4),
                                     *tiny_discriminators(seed=4))
    else:
        adapter = PixelIntraAdapter(
            tiny_generator(seed=4), *tiny_discriminators(seed=4,
                                                         pixel_level=True),
            method="cts", kld_lambda=0.1)
    compile_tiny(adapter, lr=1e-4, precision=policy_name)
    return adapter


def data_for(kind, scale=INPUT_SCALE):
    data = stage1_batches(4) if kind == "inter" else stage2_batches(4)
    for key in ("source_image", "target_image", "image"):
        if key in data:
            data[key] = data[key] * np.float32(scale)
    return data


def conv_compute_dtypes(model):
    return {layer.compute_dtype for layer in model.layers
            if isinstance(layer, keras.layers.Conv2D)}


def check_structure(adapter, kind, policy_name):
    """Compute dtype, float32 variables and outputs, loss-scale wrapping."""
    g, d_main = adapter.generator, adapter.d_main
    assert conv_compute_dtypes(g) == {COMPUTE_DTYPE[policy_name]}
    assert conv_compute_dtypes(d_main) == {COMPUTE_DTYPE[policy_name]}
    for v in g.weights + d_main.weights + adapter.d_aux.weights:
        assert v.dtype == "float32", v.path
    x = data_for(kind)["source_image" if kind == "inter" else "image"][:1]
    main, aux = g(x)
    assert main.dtype == tf.float32 and aux.dtype == tf.float32
    probs = tf.nn.softmax(upsample(main, x.shape[1:3]))
    assert d_main(probs).dtype == tf.float32
    scaled = policy_name == "mixed_float16"
    for opt in (adapter.g_optimizer, adapter.d_main_optimizer,
                adapter.d_aux_optimizer):
        assert isinstance(opt, keras.optimizers.LossScaleOptimizer) == scaled


@pytest.mark.parametrize("kind", ["inter", "intra"])
def test_train_steps_under_mixed_precision(policy, kind):
    adapter = build(kind, policy)
    check_structure(adapter, kind, policy)
    if policy == "mixed_float16":
        check_overflow_is_skipped(adapter, kind)
    before = weights_of(adapter.generator, adapter.d_main, adapter.d_aux)
    history = adapter.fit(make_dataset_fn(data_for(kind), batch_size=2)(0),
                          steps_per_epoch=STEPS, epochs=1, verbose=0).history
    for name in ("loss_seg", "loss_seg_aux", "loss_adv", "loss_adv_aux",
                 "loss_d", "loss_d_aux"):
        assert np.isfinite(history[name][-1]), name
    if kind == "intra":
        assert np.isfinite(history["loss_kld"][-1])
    after = weights_of(adapter.generator, adapter.d_main, adapter.d_aux)
    assert all(np.isfinite(w).all() for w in after)
    # Every conv kernel of G and both Ds has moved (under float16 a step
    # with an overflowing scaled gradient is skipped, not all of them).
    for w0, w1 in zip(before, after):
        if w0.ndim == 4:
            assert not np.array_equal(w0, w1)
    if policy == "mixed_float16":
        # A G step is applied (iterations + 1) unless its gradients overflow;
        # the scale keeps halving until they fit, so one may still be skipped.
        assert 1 <= int(adapter.g_optimizer.iterations) <= STEPS


def check_overflow_is_skipped(adapter, kind):
    """One step on std-50 images: G's float16 gradients overflow at scale
    2**15, so the LossScaleOptimizer skips G's update and halves its scale."""
    g_opt = adapter.g_optimizer
    g_before = weights_of(adapter.generator)
    assert float(g_opt.dynamic_scale) == 2.0 ** 15
    adapter.fit(make_dataset_fn(data_for(kind, scale=1.0), batch_size=2)(0),
                steps_per_epoch=1, epochs=1, verbose=0)
    assert float(g_opt.dynamic_scale) == 2.0 ** 14
    assert int(g_opt.iterations) == 0
    for w0, w1 in zip(g_before, weights_of(adapter.generator)):
        np.testing.assert_array_equal(w0, w1)


def test_policy_is_restored_after_the_mixed_tests():
    assert keras.mixed_precision.global_policy().name == "float32"
