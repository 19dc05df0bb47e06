"""Map a PyTorch DeepLab-v2 state dict onto our DeepLab-v2 (no torch needed).

The PyTorch DeepLab-v2 ResNet-101 of AdaptSegNet (wasidennis/AdaptSegNet,
model/deeplab_multi.py), ADVENT / IntraDA (valeoai/ADVENT,
advent/model/deeplabv2.py), BDL (liyunsheng13/BDL, model/deeplab.py) and
CRST (yzou2/CRST, deeplab/model.py) names its modules

    conv1, bn1                                  stem
    layer{1..4}.{b}.conv{1,2,3}, .bn{1,2,3}     bottleneck b (0-based)
    layer{1..4}.0.downsample.0 / .1             projection conv / BN
    layer5, layer6 .conv2d_list.{0..3}          classifier heads (with bias)

`arch` "multi" (AdaptSegNet, ADVENT, IntraDA): layer5 on layer3 = our aux
head, layer6 on layer4 = our main head. "single" (BDL, CRST: layer5; ADVENT
with MULTI_LEVEL False: layer6): the one head on layer4 = our main head.
"backbone" (DeepLab init checkpoints, e.g.
DeepLab_resnet_pretrained_init-f81d91e8.pth): the head keys (layer5, layer6,
fc) are skipped; our heads keep their fresh initialisation.

Key prefixes `module.` (nn.DataParallel) and `Scale.` (Pytorch-Deeplab's
MS_Deeplab wrapper of the DeepLab init, whose first key part the reference
loaders drop) are removed in any combination; `num_batches_tracked`
counters are ignored. Conv weights [out, in, kh, kw] become kernels [kh,
kw, in, out]; BN weight/bias/running_mean/running_var become gamma/beta/
moving_mean/moving_variance (PyTorch eps 1e-5 = ours).

`head_branches=2` reproduces AdaptSegNet's Classifier_Module, whose forward
returns inside its loop and so sums only conv2d_list.0 and .1: branches 2
and 3 are loaded as zeros.
"""

import numpy as np

from tf_pixintra import choices
from tf_pixintra.errors import DataError
from tf_pixintra.models.deeplab_v2 import ASPP_DILATIONS
from tf_pixintra.models.resnet import bottleneck_prefixes

PREFIXES = ("module.", "Scale.")
HEAD_KEYS = ("layer5", "layer6")
_SKIPPED_IN_BACKBONE = ("layer5.", "layer6.", "fc.")
_BN_FIELDS = (("weight", "gamma"), ("bias", "beta"),
              ("running_mean", "moving_mean"),
              ("running_var", "moving_variance"))


def strip_prefixes(key):
    """`key` without leading `module.` / `Scale.` parts."""
    while key.startswith(PREFIXES):
        key = key.split(".", 1)[1]
    return key


def normalize_state(state, source):
    """{key: value} without key prefixes and BN step counters; DataError if
    two keys become equal once their prefixes are gone."""
    out = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        short = strip_prefixes(key)
        if short in out:
            raise DataError(f"{source}: keys {key!r} and another one both "
                            f"map to {short!r}; expected one state dict")
        out[short] = value
    return out


def head_map(arch, keys, multi_level, source):
    """{torch head name: our head prefix} for `arch` and the checkpoint keys."""
    choices.check("arch", arch, choices.TORCH_ARCHS)
    if arch == "backbone":
        return {}
    if arch == "multi":
        if not multi_level:
            raise DataError("arch 'multi' needs a multi-level model")
        return {"layer5": "head_aux", "layer6": "head_main"}
    if multi_level:
        raise DataError("arch 'single' needs a single-level model")
    present = [h for h in HEAD_KEYS if any(k.startswith(h + ".") for k in keys)]
    if len(present) == 2:
        raise DataError(
            f"{source}: holds both heads layer5 and layer6, a multi-level "
            "checkpoint; use --arch multi")
    return {present[0] if present else "layer5": "head_main"}


def _shape(value):
    return tuple(int(d) for d in value.shape)


def _setter(variable, kernel=False, variance_shift=None, zero=False):
    """assign(value): a numpy value of the torch layout into `variable`."""
    def assign(value):
        if kernel:
            value = np.transpose(np.asarray(value, np.float32), (2, 3, 1, 0))
        else:
            value = np.asarray(value, np.float64)
            if variance_shift is not None:
                value = np.maximum(value + variance_shift, 0.0)
        if zero:
            value = np.zeros_like(value)
        variable.assign(value.astype(np.float32))
    return assign


def torch_layout(model, arch="multi", head_keys=(), head_branches=4,
                 source="checkpoint"):
    """The state dict `model` needs: [(torch key, torch shape, setter)].

    `setter(value)` assigns a numpy value of the torch shape; the entries
    come in PyTorch's state-dict order. `head_keys`, the checkpoint's keys,
    tell whether a single head is named layer5 or layer6.
    """
    stages = bottleneck_prefixes(model, DataError,
                                 "PyTorch DeepLab-v2 checkpoints")
    names = {layer.name for layer in model.layers}
    get = model.get_layer
    entries = []

    def conv(torch_name, layer_name, zero=False):
        kernel = get(layer_name).kernel
        kh, kw, cin, cout = _shape(kernel)
        entries.append((torch_name + ".weight", (cout, cin, kh, kw),
                        _setter(kernel, kernel=True, zero=zero)))

    def bn(torch_name, layer_name):
        layer = get(layer_name)
        for torch_field, attr in _BN_FIELDS:
            var = getattr(layer, attr)
            shift = (1e-5 - float(layer.epsilon)
                     if attr == "moving_variance" else None)
            entries.append((f"{torch_name}.{torch_field}", _shape(var),
                            _setter(var, variance_shift=shift)))

    conv("conv1", "stem_conv")
    bn("bn1", "stem_bn")
    for layer_index, prefixes in enumerate(stages, start=1):
        for block, ours in enumerate(prefixes):
            theirs = f"layer{layer_index}.{block}."
            for k in (1, 2, 3):
                conv(theirs + f"conv{k}", ours + f"conv{k}")
                bn(theirs + f"bn{k}", ours + f"bn{k}")
            if ours + "down_conv" in names:
                conv(theirs + "downsample.0", ours + "down_conv")
                bn(theirs + "downsample.1", ours + "down_bn")
    heads = head_map(arch, head_keys, "head_aux_d6" in names, source)
    for torch_head, prefix in sorted(heads.items()):
        for i, d in enumerate(ASPP_DILATIONS):
            zero = i >= head_branches
            conv(f"{torch_head}.conv2d_list.{i}", f"{prefix}_d{d}", zero)
            bias = get(f"{prefix}_d{d}").bias
            entries.append((f"{torch_head}.conv2d_list.{i}.bias",
                            _shape(bias), _setter(bias, zero=zero)))
    return entries


def check_state(entries, state, arch, source):
    """Raise DataError naming the first missing, mismatching or extra key.

    Reads shapes only, so a torch model on the meta device can be checked.
    """
    for key, shape, _ in entries:
        if key not in state:
            raise DataError(f"{source}: missing key {key!r} (expected shape "
                            f"{shape}); --arch {arch}")
        have = _shape(state[key])
        if have != shape:
            raise DataError(f"{source}: key {key!r} has shape {have}, "
                            f"expected {shape}; --arch {arch}")
    wanted = {key for key, _, _ in entries}
    for key in state:
        if key in wanted or (arch == "backbone"
                             and key.startswith(_SKIPPED_IN_BACKBONE)):
            continue
        raise DataError(f"{source}: unexpected key {key!r} (shape "
                        f"{_shape(state[key])}); --arch {arch} expects none")


def load_torch_state(model, state, arch="multi", head_branches=4,
                     source="checkpoint"):
    """Copy a PyTorch DeepLab-v2 state dict into `model`.

    `model`: a `build_deeplab_v2` model with a bottleneck backbone
    (multi-level for arch "multi", single-level for "single"); `state`:
    {key: numpy array} (`torch_reader.read_state_dict`); `arch` and
    `head_branches` (4 or 2): see the module docstring; `source`: the file
    name for error messages (DataError, see `check_state`).

    Returns {"tensors": n copied, "skipped": [keys not used (backbone heads)],
    "heads": {torch head: our head}}.
    """
    choices.check("head_branches", head_branches, choices.HEAD_BRANCHES)
    state = normalize_state(state, source)
    entries = torch_layout(model, arch, tuple(state), head_branches, source)
    check_state(entries, state, arch, source)
    for key, _, assign in entries:
        assign(state[key])
    used = {key for key, _, _ in entries}
    multi_level = any(layer.name == "head_aux_d6" for layer in model.layers)
    return {"tensors": len(entries),
            "skipped": sorted(k for k in state if k not in used),
            "heads": head_map(arch, tuple(state), multi_level, source)}
