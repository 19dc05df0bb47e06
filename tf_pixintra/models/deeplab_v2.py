"""Multi-level DeepLab-v2 segmentation network (the generator G).

Dilated ResNet (`resnet.py`) with the DeepLab-v2 classifier ("ASPP" of v2)
on layer4 (main head) and, when multi-level, on layer3 (auxiliary head), as
in AdaptSegNet. Each head SUMS four 3x3 convs to `num_classes`, dilations
6/12/18/24 (padding = dilation), with bias, kernels N(0, 0.01), biases 0
(all four, as ADVENT/BDL/CRST; AdaptSegNet's code sums only two by a bug).
Head layers are named "head_main_*" / "head_aux_*".
"""

import keras

from tf_pixintra.errors import ConfigError
from tf_pixintra.models.layers import DilatedConv2D
from tf_pixintra.models.resnet import layer_seed, resnet_features

ASPP_DILATIONS = (6, 12, 18, 24)
HEAD_PREFIX = "head_"


def aspp_classifier(x, num_classes, prefix, seed):
    """Sum of four dilated 3x3 convs; float32 logits under any dtype policy."""
    branches = []
    for d in ASPP_DILATIONS:
        name = f"{prefix}_d{d}"
        branches.append(DilatedConv2D(
            num_classes, 3, padding="same", dilation_rate=d, use_bias=True,
            kernel_initializer=keras.initializers.RandomNormal(
                0.0, 0.01, seed=layer_seed(seed, name)),
            bias_initializer="zeros", name=name)(x))
    logits = keras.layers.Add(name=f"{prefix}_sum")(branches)
    return keras.layers.Activation("linear", dtype="float32",
                                   name=f"{prefix}_logits")(logits)


def build_deeplab_v2(num_classes, depth=101, width=1.0, multi_level=True,
                     bn_mode="frozen", seed=None, name="deeplab_v2"):
    """DeepLab-v2 with a dilated ResNet backbone (the paper's G).

    `depth` (18/34/50/101), `width` (channel multiplier, 1.0 = the paper's),
    `bn_mode` ("frozen" / "train") and `seed` (int, or None for random) go to
    the ResNet (`resnet.py`); `multi_level` adds the layer3 head's logits.

    Returns a keras.Model: input float32 [B, H, W, 3] Caffe-preprocessed,
    H, W dynamic; output float32 logits [B, h, w, num_classes] at output
    stride 8, not upsampled: [main_logits, aux_logits] when multi_level,
    else main_logits alone.
    """
    if not (isinstance(num_classes, int) and num_classes >= 1):
        raise ConfigError(f"num_classes={num_classes!r}; expected an int >= 1")
    inputs = keras.Input(shape=(None, None, 3), dtype="float32", name="image")
    features = resnet_features(inputs, depth, width, bn_mode, seed)
    main = aspp_classifier(features["layer4"], num_classes, "head_main", seed)
    if not multi_level:
        return keras.Model(inputs, main, name=name)
    aux = aspp_classifier(features["layer3"], num_classes, "head_aux", seed)
    return keras.Model(inputs, [main, aux], name=name)


def head_variables(model):
    """Trainable variables of the classifier heads (trained at 10x LR)."""
    return [v for layer in model.layers if layer.name.startswith(HEAD_PREFIX)
            for v in layer.trainable_variables]


def backbone_variables(model):
    """Trainable variables of everything but the heads (base LR)."""
    head_ids = {id(v) for v in head_variables(model)}
    return [v for v in model.trainable_variables if id(v) not in head_ids]


def split_outputs(outputs):
    """(main, aux) logits of a DeepLab-v2 output ([main, aux]: Sec 5.1's two
    heads, or main alone); aux is None when single-level."""
    if isinstance(outputs, (list, tuple)):
        return outputs[0], (outputs[1] if len(outputs) > 1 else None)
    if isinstance(outputs, dict):
        raise ValueError("model returns a dict; expected a tensor or a list "
                         "[main_logits, aux_logits]")
    return outputs, None


def main_output(outputs):
    """The main head's logits of a DeepLab-v2 output (see `split_outputs`)."""
    return split_outputs(outputs)[0]
