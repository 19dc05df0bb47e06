"""Tests of tf_pixintra.models.discriminator (AdaptSegNet FC discriminator)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_pixintra.errors import ConfigError
from tf_pixintra.models import build_discriminator
from tf_pixintra.models.layers import LeakyReLU


def test_parameter_count_19_classes_ndf_64(count_weights):
    model = build_discriminator(19)
    expected = (16 * 19 * 64 + 64) + (16 * 64 * 128 + 128) \
        + (16 * 128 * 256 + 256) + (16 * 256 * 512 + 512) + (16 * 512 + 1)
    assert expected == 2_781_121
    assert count_weights(model) == expected
    assert len(model.trainable_variables) == 10


def test_layout():
    model = build_discriminator(19, ndf=4)
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [4, 8, 16, 32, 1]
    for conv in convs:
        assert conv.kernel_size == (4, 4) and conv.strides == (2, 2)
        assert conv.padding == "valid" and conv.use_bias
        pad = model.get_layer(conv.name + "_pad")
        assert pad.padding == ((1, 1), (1, 1))
    relus = [l for l in model.layers if isinstance(l, keras.layers.LeakyReLU)]
    assert len(relus) == 4
    assert all(abs(l.negative_slope - 0.2) < 1e-7 for l in relus)
    assert not any(isinstance(l, keras.layers.BatchNormalization)
                   for l in model.layers)


@pytest.mark.parametrize("size, expected", [
    ((512, 1024), (16, 32)),
    ((100, 70), (3, 2)),     # 100->50->25->12->6->3, 70->35->17->8->4->2
])
def test_output_size(size, expected):
    model = build_discriminator(19, ndf=2, seed=0)
    out = model(np.zeros((1,) + size + (19,), np.float32))
    assert tuple(out.shape) == (1,) + expected + (1,)
    assert out.dtype == "float32"


def test_pixel_level_upsamples_to_dynamic_input_size():
    patch = build_discriminator(4, ndf=4, seed=5)
    pixel = build_discriminator(4, ndf=4, pixel_level=True, seed=5)
    assert tuple(pixel.input.shape) == (None, None, None, 4)
    x = np.random.default_rng(1).uniform(size=(2, 64, 96, 4))
    x = x.astype(np.float32)
    out = keras.ops.convert_to_numpy(pixel(x))
    assert out.shape == (2, 64, 96, 1) and out.dtype == np.float32
    expected = tf.image.resize(patch(x), (64, 96), method="bilinear")
    # Same seed, same weights, same eager ops on the same input, then the
    # same tf.image.resize: bit for bit.
    for a, b in zip(patch.get_weights(), pixel.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(out, expected.numpy())
    assert pixel(x[:, :40, :72]).shape == (2, 40, 72, 1)


def test_mixed_precision_output_is_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_discriminator(3, ndf=2, pixel_level=True, seed=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("d_conv1").compute_dtype == "float16"
    out = model(np.ones((1, 32, 64, 3), np.float32))
    assert out.dtype == "float32" and tuple(out.shape) == (1, 32, 64, 1)


def test_seed_determinism():
    def weights(seed):
        return [keras.ops.convert_to_numpy(v)
                for v in build_discriminator(3, ndf=2, seed=seed).weights]
    a, b, c = weights(1), weights(1), weights(2)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(weights(None)[0], weights(None)[0])


def _keras_leaky_relu_copy(model):
    """The same D with keras.layers.LeakyReLU (the formulation before the
    remapper fix): same layers and weights, Keras' own activation."""
    x = inputs = keras.Input(shape=(None, None, model.input.shape[-1]))
    for layer in model.layers[1:]:
        if isinstance(layer, LeakyReLU):
            x = keras.layers.LeakyReLU(negative_slope=layer.negative_slope)(x)
        else:
            x = layer(x)
    return keras.Model(inputs, x)


def _reference_float64(x, params, r, magnitudes=False):
    """D's output and the gradients of sum(D(x) * r) w.r.t. x and every
    weight, in float64. magnitudes=True runs the "absolute" network (|x|,
    |weights|, |r|, identity activation): every term any float32 rounding
    can scale, which bounds the float32 errors."""
    f = np.abs if magnitudes else (lambda a: a)
    x = tf.constant(f(x), tf.float64)
    params = [tf.constant(f(p), tf.float64) for p in params]
    with tf.GradientTape() as tape:
        tape.watch([x] + params)
        h, pre = x, []
        for i in range(0, len(params), 2):
            h = tf.pad(h, [[0, 0], [1, 1], [1, 1], [0, 0]])
            h = tf.nn.conv2d(h, params[i], 2, "VALID") + params[i + 1]
            if i + 2 < len(params):
                pre.append(h)
                h = h if magnitudes else tf.nn.leaky_relu(h, 0.2)
        loss = tf.reduce_sum(h * f(r))
    grads = tape.gradient(loss, [x] + params)
    return h.numpy(), [g.numpy() for g in grads], [p.numpy() for p in pre]


def test_same_outputs_and_gradients_as_keras_leaky_relu_when_compiled():
    # Compiled (grappler on: the new D gets the conv + bias + LeakyReLU
    # fusion, the old one does not), both are compared with a float64
    # reference. Error bound of float32 (unit roundoff u = 2^-24): each
    # computed quantity q is exact up to gamma_N * |q|_abs, where |q|_abs is
    # q computed on the absolute network and gamma_N = N u / (1 - N u), N the
    # longest chain of roundings: per layer K products summed + bias + slope
    # forward, as many backward, plus the positions summed into a weight
    # gradient. Given the same branch of every LeakyReLU (checked: no
    # pre-activation within its forward bound of 0), gradients are linear in
    # the upstream gradients, so the bound holds for them too.
    # Sparse kernels (3 taps per output channel) and random biases keep the
    # absolute network close to the real one, so that the float64
    # pre-activations clear their rounding bound by a wide margin (>= 9x
    # here) and both signs of every LeakyReLU are exercised.
    rng = np.random.default_rng(0)
    model = build_discriminator(4, ndf=4, seed=11)
    x = rng.uniform(size=(2, 32, 32, 4)).astype(np.float32)
    r = rng.normal(size=(2, 1, 1, 1)).astype(np.float32)
    params = []
    for kernel in model.trainable_variables[::2]:
        w = np.zeros(kernel.shape, np.float32)
        flat = w.reshape(-1, kernel.shape[-1])
        for c in range(kernel.shape[-1]):
            flat[rng.choice(flat.shape[0], 3, replace=False), c] = \
                rng.normal(size=3)
        params += [w, 0.5 * rng.normal(size=kernel.shape[-1])
                   .astype(np.float32)]
    model.set_weights(params)
    old = _keras_leaky_relu_copy(model)
    u = 2.0 ** -24
    ks = [16 * p.shape[2] for p in params[::2]]
    n_forward = [sum(k + 2 for k in ks[:i + 1]) for i in range(len(ks))]
    n_total = 2 * n_forward[-1] + 2 * 16 * 16
    gamma = lambda n: n * u / (1 - n * u)  # noqa: E731

    ref_out, ref_grads, ref_pre = _reference_float64(x, params, r)
    abs_out, abs_grads, abs_pre = _reference_float64(x, params, r, True)
    for layer, (z, z_abs) in enumerate(zip(ref_pre, abs_pre)):
        margin = gamma(n_forward[layer]) * z_abs
        assert (np.abs(z) > margin).all(), f"layer {layer}: a pre-activation " \
            "within rounding of 0; pick another seed"
        assert 0.1 < (z < 0).mean() < 0.9

    for net in (model, old):
        @tf.function
        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                out = net(x, training=True)
                loss = tf.reduce_sum(out * r)
            return out, tape.gradient(loss, [x] + net.trainable_variables)
        out, grads = step(tf.constant(x))
        np.testing.assert_array_less(np.abs(out.numpy() - ref_out),
                                     gamma(n_total) * abs_out + 1e-30)
        for g, g_ref, g_abs in zip(grads, ref_grads, abs_grads):
            np.testing.assert_array_less(np.abs(g.numpy() - g_ref),
                                         gamma(n_total) * g_abs + 1e-30)


def test_training_step_fuses_every_conv_bias_leaky_relu():
    # With Keras' LeakyReLU, the gradient read the conv + bias output, which
    # kept the activation out of grappler's fusion and, with oneDNN on
    # (TF_ENABLE_ONEDNN_OPTS=1, or the default on recent Intel CPUs), made
    # the remapper fail on every step: "remapper failed: ... fanout
    # '.../LeakyReluGrad' exist for missing node '.../BiasAdd'". Here: no
    # LeakyRelu is left outside a fused conv in the optimised step (the
    # fusion is the same with and without oneDNN).
    import collections
    from tensorflow.python.eager import context  # run metadata: graphs
    from tf_pixintra import losses
    d = build_discriminator(19, ndf=4, seed=0)
    x = tf.random.stateless_uniform([1, 32, 32, 19], seed=(1, 2))

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            loss = losses.inter_discriminator_loss(
                d(x, training=True), d(x[:, ::-1], training=True))
        return tape.gradient(loss, d.trainable_variables)

    context.enable_run_metadata()
    try:
        step(x)
        metadata = context.export_run_metadata()
    finally:
        context.disable_run_metadata()
    ops = collections.Counter()
    for graph in metadata.function_graphs:
        for node in graph.post_optimization_graph.node:
            fused = ",".join(f.decode() for f in node.attr["fused_ops"].list.s)
            ops[node.op + (f"[{fused}]" if fused else "")] += 1
    assert ops["_FusedConv2D[BiasAdd,LeakyRelu]"] == 8, dict(ops)
    assert ops["LeakyRelu"] == 0, dict(ops)


@pytest.mark.parametrize("stride, size, expected", [
    (4, (64, 128), (16, 32)),    # 1/8 of the paper's input, the paper's grid
    (8, (64, 128), (8, 16)),
    (16, (100, 70), (6, 4)),     # 100->50->25->12->6, 70->35->17->8->4
    (2, (33, 31), (16, 15)),
])
def test_output_stride_sets_the_grid(stride, size, expected):
    model = build_discriminator(19, ndf=2, seed=0, output_stride=stride)
    out = model(np.zeros((1,) + size + (19,), np.float32))
    assert tuple(out.shape) == (1,) + expected + (1,)
    strides = [model.get_layer(f"d_conv{i}").strides for i in range(1, 5)]
    strides.append(model.get_layer("d_classifier").strides)
    assert strides == [(2, 2) if 2 ** (i + 1) <= stride else (1, 1)
                       for i in range(5)]


def test_output_stride_keeps_the_weights_and_rejects_other_values():
    paper = build_discriminator(19, ndf=64, seed=0)
    fine = build_discriminator(19, ndf=64, seed=0, output_stride=4)
    assert paper.count_params() == fine.count_params() == 2_781_121
    for a, b in zip(paper.weights, fine.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a),
                                      keras.ops.convert_to_numpy(b))
    with pytest.raises(ConfigError, match="output_stride=12"):
        build_discriminator(19, ndf=2, output_stride=12)


def test_stride_one_conv_sees_a_centred_4x4_window():
    # A stride-1 conv pads (1, 2): output (i, j) reads input rows and columns
    # i-1 .. i+2, so an impulse at (3, 3) reaches outputs (1..4, 1..4) and
    # the size is kept.
    model = build_discriminator(1, ndf=1, seed=0, output_stride=16)
    layer = model.get_layer("d_classifier")
    assert layer.strides == (1, 1)
    inner = keras.Sequential([model.get_layer("d_classifier_pad"), layer])
    impulse = np.zeros((1, 6, 6, 8), np.float32)
    impulse[0, 3, 3, :] = 1.0
    out = keras.ops.convert_to_numpy(inner(impulse))[0, :, :, 0]
    bias = keras.ops.convert_to_numpy(layer.bias)[0]
    reached = np.argwhere(out != bias)
    assert out.shape == (6, 6)
    assert reached.min(0).tolist() == [1, 1] and reached.max(0).tolist() == [4, 4]
