"""Import keras.applications ResNet50/101 weights into our dilated backbone.

keras.applications ResNet50/101 (v1) are Caffe-style like ours but undilated,
and their convs carry biases. The mapping comes from the Keras GRAPH, not its
layer names: from the output back through the residual Adds, the Add input
whose path to the block input holds three convs is the residual branch, one
conv a projection shortcut (which starts a stage), none the identity.

Each Keras conv must feed a BatchNormalization, into which its bias b folds
exactly: BN(Wx + b) with moving mean m is BN(Wx) with moving mean m - b.
The moving variance gets eps_keras - eps_ours (1.001e-5 - 1e-5) added, so
the inference-mode outputs are identical.
"""

import keras
import numpy as np

from tf_pixintra.errors import ConfigError
from tf_pixintra.models.resnet import bottleneck_prefixes


def _producer(tensor):
    """(operation, input tensors) that produced a KerasTensor."""
    history = tensor._keras_history
    node = history.operation._inbound_nodes[history.node_index]
    return history.operation, list(node.input_tensors)


def _trace_back(tensor):
    """(tensors, stop_op): back from `tensor` through single-input layers,
    nearest first, to `stop_op`, the layer with != 1 inputs that made the
    last one (an Add, or the InputLayer)."""
    tensors = []
    while True:
        tensors.append(tensor)
        op, inputs = _producer(tensor)
        if len(inputs) != 1:
            return tensors, op
        tensor = inputs[0]


def _conv_bn_pairs(tensors):
    """(conv, bn) pairs along a traced path, in forward order."""
    pairs = []
    for i, tensor in enumerate(tensors):
        op, _ = _producer(tensor)
        if not isinstance(op, keras.layers.Conv2D):
            continue
        consumer = _producer(tensors[i - 1])[0] if i > 0 else None
        if not isinstance(consumer, keras.layers.BatchNormalization):
            found = getattr(consumer, "name", None)
            raise ConfigError(
                f"Keras ResNet layer {op.name!r} is not followed by a "
                f"BatchNormalization (found {found!r}); expected a "
                "keras.applications ResNet50/ResNet101 (v1)")
        pairs.append((op, consumer))
    return pairs[::-1]


def keras_resnet_structure(keras_resnet):
    """(stem, stages) of a keras.applications ResNet (v1), from its graph.

    stem is a (conv, bn) pair; stages a list of lists of blocks, each block
    {"branch": [(conv, bn)] * 3, "shortcut": (conv, bn) or None}.
    """
    tensors, op = _trace_back(keras_resnet.outputs[0])
    blocks = []
    while isinstance(op, keras.layers.Add):
        _, inputs = _producer(tensors[-1])
        if len(inputs) != 2:
            raise ConfigError(
                f"Keras ResNet layer {op.name!r} adds {len(inputs)} tensors; "
                "expected 2 (residual branch + shortcut)")
        path_a, _ = _trace_back(inputs[0])
        path_b, _ = _trace_back(inputs[1])
        ids_b = [id(t) for t in path_b]
        common = [t for t in path_a if id(t) in ids_b]
        if not common:
            raise ConfigError(
                f"Keras ResNet layer {op.name!r}: its two inputs share no "
                "block input; expected a residual block")
        block_input = common[0]
        paths = [path_a[:path_a.index(block_input)],
                 path_b[:ids_b.index(id(block_input))]]
        pairs = sorted((_conv_bn_pairs(p) for p in paths), key=len)
        if [len(p) for p in pairs] not in ([0, 3], [1, 3]):
            raise ConfigError(
                f"Keras ResNet block ending in {op.name!r} has "
                f"{[len(p) for p in pairs]} convs on its two paths; expected "
                "a bottleneck (3 convs) with identity or 1-conv shortcut")
        blocks.append({"branch": pairs[1],
                       "shortcut": pairs[0][0] if pairs[0] else None})
        tensors, op = _trace_back(block_input)
    stem = _conv_bn_pairs(tensors)
    if len(stem) != 1:
        raise ConfigError(
            f"Keras ResNet stem has {len(stem)} convs; expected 1")
    stages = []
    for block in reversed(blocks):
        if block["shortcut"] is not None or not stages:
            stages.append([])
        stages[-1].append(block)
    return stem[0], stages


def _copy_pair(keras_conv, keras_bn, our_conv, our_bn):
    """Copy one conv + BN, folding the conv bias. Returns tensors copied."""
    kernel = keras.ops.convert_to_numpy(keras_conv.kernel)
    if tuple(our_conv.kernel.shape) != kernel.shape:
        raise ConfigError(
            f"shape mismatch: Keras layer {keras_conv.name!r} kernel "
            f"{kernel.shape} vs our layer {our_conv.name!r} kernel "
            f"{tuple(our_conv.kernel.shape)}")
    channels = kernel.shape[-1]
    bias = (keras.ops.convert_to_numpy(keras_conv.bias)
            if keras_conv.use_bias else np.zeros(channels, np.float32))

    def bn_value(attr, default):
        var = getattr(keras_bn, attr, None)
        if var is None:
            return np.full(channels, default, np.float32)
        return keras.ops.convert_to_numpy(var).astype(np.float64)

    gamma = bn_value("gamma", 1.0)
    beta = bn_value("beta", 0.0)
    mean = bn_value("moving_mean", 0.0) - bias
    variance = (bn_value("moving_variance", 1.0) + keras_bn.epsilon
                - our_bn.epsilon)
    if gamma.shape != (channels,):
        raise ConfigError(
            f"shape mismatch: Keras layer {keras_bn.name!r} has "
            f"{gamma.shape[0]} channels vs our layer {our_bn.name!r} "
            f"{channels}")
    our_conv.kernel.assign(kernel)
    targets = [(our_bn.gamma, gamma), (our_bn.beta, beta),
               (our_bn.moving_mean, mean),
               (our_bn.moving_variance, np.maximum(variance, 0.0))]
    for variable, value in targets:
        if variable is None:
            raise ConfigError(
                f"our layer {our_bn.name!r} lacks a BN parameter; expected "
                "center=True, scale=True")
        if tuple(variable.shape) != value.shape:
            raise ConfigError(
                f"shape mismatch: Keras layer {keras_bn.name!r} "
                f"{value.shape} vs our layer {our_bn.name!r} "
                f"{tuple(variable.shape)}")
        variable.assign(value.astype(np.float32))
    return 1 + len(targets)


def load_keras_resnet_weights(model, keras_resnet):
    """Copy every conv and BN weight of a keras.applications ResNet50/101.

    `model` holds a depth-50/101, width-1 backbone (`build_resnet` or
    `build_deeplab_v2`; heads are left untouched); `keras_resnet` is
    `keras.applications.ResNet50` / `ResNet101` (v1), with or without top.

    Returns {"convs": n, "batch_norms": n, "biases_folded": n,
    "tensors_copied": n}. Raises ConfigError if the block counts or any
    kernel / BN shape differ (naming both layers), or `keras_resnet` is not
    a v1 ResNet.
    """
    keras_stem, keras_stages = keras_resnet_structure(keras_resnet)
    our_stages = bottleneck_prefixes(model, ConfigError, "Keras ResNet weights")
    keras_counts = [len(s) for s in keras_stages]
    our_counts = [len(s) for s in our_stages]
    if keras_counts != our_counts:
        raise ConfigError(
            f"Keras model {keras_resnet.name!r} has blocks per stage "
            f"{keras_counts}; our model {model.name!r} has {our_counts}")
    get = model.get_layer
    names = {layer.name for layer in model.layers}
    pairs = [(keras_stem, (get("stem_conv"), get("stem_bn")))]
    for keras_blocks, prefixes in zip(keras_stages, our_stages):
        for block, prefix in zip(keras_blocks, prefixes):
            for k, keras_pair in enumerate(block["branch"], start=1):
                pairs.append((keras_pair, (get(f"{prefix}conv{k}"),
                                           get(f"{prefix}bn{k}"))))
            has_down = prefix + "down_conv" in names
            if (block["shortcut"] is not None) != has_down:
                raise ConfigError(
                    f"shortcut mismatch at our block {prefix[:-1]!r}: Keras "
                    f"has {'a conv' if block['shortcut'] else 'identity'}, "
                    f"ours {'a conv' if has_down else 'identity'}")
            if has_down:
                pairs.append((block["shortcut"], (get(prefix + "down_conv"),
                                                  get(prefix + "down_bn"))))
    copied = sum(_copy_pair(*keras_pair, *ours) for keras_pair, ours in pairs)
    folded = sum(int(bool(conv.use_bias)) for (conv, _), _ in pairs)
    return {"convs": len(pairs), "batch_norms": len(pairs),
            "biases_folded": folded, "tensors_copied": copied}
