"""tf_pixintra.models.torch_weights / torch_reader against a PyTorch DeepLab-v2.

The PyTorch model is benchmarks/torch_models.py (reference module names,
bottleneck depth-50 layout at width 1/8 so every test is fast). Logits are
compared at an odd input size, where the stem's ceil-mode max pool differs
from a floor-mode one.
"""

import math
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

# pylint: disable=wrong-import-position
from tf_pixintra.errors import DataError  # noqa: E402
from tf_pixintra.models import build_deeplab_v2  # noqa: E402
from tf_pixintra import torch_reader  # noqa: E402
from tf_pixintra.models import torch_weights  # noqa: E402

from benchmarks.torch_models import DeepLabV2  # noqa: E402
from benchmarks.torch_models import randomize  # noqa: E402
from benchmarks.torch_models import rounding_tolerance  # noqa: E402

BLOCKS = (3, 4, 6, 3)          # our depth 50
DEPTH, WIDTH, CLASSES = 50, 0.125, 19
# Odd input; the stem conv gives 32x40, which the ceil-mode pool turns into
# 17x21 (a floor-mode pool: 16x20, and the logits would be 8x10, not 9x11).
ODD_SIZE = (63, 79)


def tolerance(torch_model):
    """Relative tolerance (max|diff| / max|logit|) from float32 rounding
    (benchmarks.torch_models.rounding_tolerance), capped at the 1e-4 the
    importer promises."""
    return min(1e-4, rounding_tolerance(torch_model))


def caffe_input(size, seed=0):
    """Caffe-preprocessed NHWC batch (BGR minus mean: about -123..151)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-123.0, 151.0, (1, *size, 3)).astype(np.float32)


def torch_outputs(model, x_nhwc):
    with torch.no_grad():
        out = model(torch.from_numpy(x_nhwc.transpose(0, 3, 1, 2)))
    out = out if isinstance(out, tuple) else (out,)
    return [o.numpy().transpose(0, 2, 3, 1) for o in out]


def keras_outputs(model, x_nhwc):
    out = model(x_nhwc, training=False)
    out = out if isinstance(out, (list, tuple)) else [out]
    return [np.asarray(o) for o in out]


def relative_error(expected, actual):
    assert expected.shape == actual.shape
    return float(np.max(np.abs(expected - actual)) / np.max(np.abs(expected)))


def save(state, path, legacy):
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    return str(path)


@pytest.fixture(scope="module")
def keras_models():
    """{"multi": model, "single": model, "fresh_heads": {layer: weights}}.

    Built once (graph construction dominates these tests' time); every test
    that loads into them overwrites all the weights it compares. The head
    weights of the multi-level model are kept as built with seed 9.
    """
    multi = build_deeplab_v2(CLASSES, depth=DEPTH, width=WIDTH, seed=9)
    fresh = {layer.name: [w.copy() for w in layer.get_weights()]
             for layer in multi.layers if layer.name.startswith("head_")}
    single = build_deeplab_v2(CLASSES, depth=DEPTH, width=WIDTH,
                              multi_level=False, seed=9)
    return {"multi": multi, "single": single, "fresh_heads": fresh}


# (heads of the PyTorch model, legacy format, key prefix, head branches,
# input size); 64x80 checks an even size too.
CASES = [
    ("multi", False, "module.", 4, ODD_SIZE),
    ("multi", True, "", 2, (64, 80)),    # AdaptSegNet's two-branch sum
    ("layer5", True, "module.", 4, ODD_SIZE),   # BDL / CRST naming
    ("layer6", False, "", 4, ODD_SIZE),  # ADVENT single-level naming
]


@pytest.mark.parametrize("heads,legacy,prefix,branches,size", CASES)
def test_logits_match_pytorch(tmp_path, keras_models, heads, legacy, prefix,
                              branches, size):
    torch_model = randomize(
        DeepLabV2(CLASSES, BLOCKS, WIDTH, heads, branches=branches), seed=2)
    state = {prefix + k: v for k, v in torch_model.state_dict().items()}
    path = save(state, tmp_path / "ckpt.pth", legacy)
    multi = heads == "multi"
    model = keras_models["multi" if multi else "single"]
    summary = torch_weights.load_torch_state(
        model, torch_reader.read_state_dict(path),
        "multi" if multi else "single", head_branches=branches, source=path)
    head = "layer5" if heads == "layer5" else "layer6"
    assert summary["heads"][head] == "head_main"
    x = caffe_input(size)
    expected = torch_outputs(torch_model, x)
    actual = keras_outputs(model, x)
    assert len(expected) == len(actual) == (2 if multi else 1)
    assert expected[0].shape == (1, 9, 11, CLASSES)
    tol = tolerance(torch_model)
    for e, a in zip(expected, actual):      # main, then aux
        assert relative_error(e, a) <= tol


def test_backbone_init_keeps_fresh_heads(tmp_path, keras_models):
    """A DeepLab init (`Scale.` keys, its own 21-class layer5, no layer6)
    loads into the backbone; the heads stay exactly as initialised."""
    init = randomize(DeepLabV2(21, BLOCKS, WIDTH, "layer5"), seed=4)
    state = {"Scale." + k: v for k, v in init.state_dict().items()}
    path = save(state, tmp_path / "init.pth", legacy=True)
    from tf_pixintra.config import ModelConfig
    from tf_pixintra.stages import common
    cfg = ModelConfig(depth=DEPTH, width=WIDTH, backbone_weights=path)
    model = common.build_generator(cfg, seed=9)
    fresh = keras_models["fresh_heads"]
    assert len(fresh) == 2 * (4 + 2)    # 4 convs, a sum and a cast per head
    for name, weights in fresh.items():
        for w, f in zip(model.get_layer(name).get_weights(), weights):
            np.testing.assert_array_equal(w, f)
    import keras
    features = keras.Model(model.input,
                           model.get_layer("layer4_block3_out").output)
    init.heads = "none"
    x = caffe_input(ODD_SIZE, seed=4)
    expected = torch_outputs(init, x)[0]
    assert relative_error(expected, np.asarray(features(x))) <= tolerance(init)


def test_resnet101_every_key_and_shape_maps(deeplab101):
    """The full-size multi-level model against the reference layout, built on
    the meta device (shapes only, no weights in memory, no forward pass)."""
    with torch.device("meta"):
        reference = DeepLabV2(CLASSES, (3, 4, 23, 3), 1.0, "multi")
    state = {"module." + k: v for k, v in reference.state_dict().items()}
    state = torch_weights.normalize_state(state, "meta")
    entries = torch_weights.torch_layout(deeplab101, "multi", tuple(state))
    torch_weights.check_state(entries, state, "multi", "meta")
    table = {key: shape for key, shape, _ in entries}
    assert table == {k: tuple(v.shape) for k, v in state.items()}
    # stem conv + BN (5), 33 blocks x 3 (conv + 4 BN tensors), 4 projection
    # shortcuts x 5, two heads x 4 branches x (weight, bias).
    assert len(table) == 5 + 33 * 15 + 4 * 5 + 2 * 4 * 2 == 536
    assert sum(math.prod(s) for k, s in table.items()
               if not k.split(".")[-1].startswith("running")) == sum(
        int(np.prod(v.shape)) for v in deeplab101.weights
        if "moving_" not in v.path)


def _layer_state(heads="multi", classes=CLASSES):
    """A zero state dict with the layout of the `keras_models`."""
    with torch.device("meta"):
        model = DeepLabV2(classes, BLOCKS, WIDTH, heads)
    return {k: np.zeros(tuple(v.shape), np.float32)
            for k, v in model.state_dict().items()
            if not k.endswith("num_batches_tracked")}


@pytest.mark.parametrize("mutate,arch,pattern", [
    (lambda s: s.pop("layer3.2.bn2.running_var"), "multi",
     r"missing key 'layer3.2.bn2.running_var' \(expected shape \(32,\)\)"),
    (lambda s: s.update({"layer6.conv2d_list.0.weight":
                         np.zeros((16, 256, 3, 3), np.float32)}), "multi",
     r"key 'layer6.conv2d_list.0.weight' has shape \(16, 256, 3, 3\), "
     r"expected \(19, 256, 3, 3\)"),
    (lambda s: s.update({"layer7.weight": np.zeros(3, np.float32)}), "multi",
     r"unexpected key 'layer7.weight' \(shape \(3,\)\)"),
    (lambda s: None, "single", r"holds both heads layer5 and layer6.*--arch multi"),
])
def test_mismatch_names_first_key(keras_models, mutate, arch, pattern):
    state = _layer_state("multi")
    mutate(state)
    model = keras_models[arch]
    with pytest.raises(DataError, match="^ckpt.pth: " + pattern):
        torch_weights.load_torch_state(model, state, arch, source="ckpt.pth")


def test_single_head_into_multi_model_is_refused(keras_models):
    with pytest.raises(DataError, match="missing key 'layer5.conv2d_list"):
        torch_weights.load_torch_state(keras_models["multi"],
                                       _layer_state("layer6"),
                                       "multi", source="ckpt.pth")


def test_prefix_collision_is_refused():
    state = {"module.conv1.weight": np.zeros(1), "Scale.conv1.weight":
             np.zeros(1)}
    with pytest.raises(DataError, match="both map to 'conv1.weight'"):
        torch_weights.normalize_state(state, "x.pth")


def test_reader_refuses_code_and_non_checkpoints(tmp_path):
    marker = tmp_path / "ran"

    class Payload:  # unpickling it would create `marker`
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "evil.pth"
    torch.save({"conv1.weight": Payload()}, evil)
    with pytest.raises(DataError, match=f"^{evil}: refused: .*could run code"):
        torch_reader.read_state_dict(str(evil))
    assert not marker.exists()
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint\n")
    with pytest.raises(DataError, match=f"^{text}: not a PyTorch checkpoint"):
        torch_reader.read_state_dict(str(text))
    good = tmp_path / "good.pth"
    torch.save({"a": torch.ones(3)}, good)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(DataError, match=f"^{cut}: not a PyTorch checkpoint"):
        torch_reader.read_state_dict(str(cut))
    listed = tmp_path / "list.pth"
    torch.save([torch.ones(1)], listed)
    with pytest.raises(DataError, match="holds a list, not a PyTorch state"):
        torch_reader.read_state_dict(str(listed))
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {"a": torch.ones(2, dtype=torch.float64)},
                "epoch": 3}, wrapped)
    read = torch_reader.read_state_dict(str(wrapped))
    assert read["a"].dtype == np.float32 and read["a"].tolist() == [1, 1]
    assert os.path.exists(wrapped)
