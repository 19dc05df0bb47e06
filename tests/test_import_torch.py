"""python -m tf_pixintra.import_torch, and torch staying out of the package.

The logits-level checks of the mapping are in tests/models/test_torch_weights.py.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_core_modules_never_import_torch():
    """Training, evaluation, export and the stages run without torch."""
    code = (
        "import sys\n"
        "import tf_pixintra.train, tf_pixintra.evaluate, tf_pixintra.export\n"
        "import tf_pixintra.export_savedmodel, tf_pixintra.export_tflite\n"
        "import tf_pixintra.inference, tf_pixintra.import_torch\n"
        "from tf_pixintra.stages import (common, inter_stage, intra_stage,\n"
        "    pseudo_stage, eval_stage, export_stage)\n"
        "from tf_pixintra.models import torch_weights\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'torch')\n"
        "print(loaded)\n"
        "sys.exit(1 if loaded else 0)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]


def test_missing_torch_is_one_clear_line(monkeypatch):
    from tf_pixintra import torch_reader
    from tf_pixintra.errors import DataError
    monkeypatch.setitem(sys.modules, "torch", None)   # import torch fails
    with pytest.raises(DataError, match="needs torch: pip install -r "
                       "requirements-torch.txt"):
        torch_reader.read_state_dict("any.pth")


torch = pytest.importorskip("torch")
# pylint: disable=wrong-import-position
from benchmarks.torch_models import DeepLabV2  # noqa: E402
from benchmarks.torch_models import randomize  # noqa: E402
from benchmarks.torch_models import rounding_tolerance  # noqa: E402

from tf_pixintra import import_torch  # noqa: E402


def test_cli_writes_a_model_the_pipeline_loads(tmp_path, capsys):
    model = randomize(DeepLabV2(19, (3, 4, 6, 3), 0.0625, "layer5"), seed=3)
    ckpt = tmp_path / "bdl.pth"
    torch.save({"module." + k: v for k, v in model.state_dict().items()},
               ckpt, _use_new_zipfile_serialization=False)
    out = tmp_path / "models" / "bdl.keras"
    code = import_torch.cli(["import_torch", "--checkpoint", str(ckpt),
                             "--arch", "single", "--out", str(out),
                             "--depth", "50", "--width", "0.0625"])
    assert code == 0
    assert "layer5 -> head_main" in capsys.readouterr().out
    assert sorted(os.listdir(out.parent)) == ["bdl.keras"]   # no temp left
    from tf_pixintra.stages import common
    loaded = common.load_generator(str(out))
    x = np.random.default_rng(1).uniform(-120, 150, (1, 63, 79, 3))
    x = x.astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    actual = np.asarray(loaded(x, training=False)).transpose(0, 3, 1, 2)
    # Tolerance as in tests/models/test_torch_weights.py (float32 rounding
    # over the accumulation lengths, capped at the promised 1e-4).
    tol = min(1e-4, rounding_tolerance(model))
    assert np.max(np.abs(expected - actual)) <= tol * np.max(np.abs(expected))


@pytest.mark.parametrize("args,pattern", [
    (["--arch", "both"], "--arch='both': expected one of multi, single"),
    (["--out", "x.h5"], "--out='x.h5': expected a path ending in .keras"),
    (["--head_branches", "3"], "--head_branches=3: expected one of 4, 2"),
])
def test_cli_bad_flags_exit_2(tmp_path, capsys, args, pattern):
    base = {"--checkpoint": "a.pth", "--arch": "multi", "--out": "m.keras"}
    base.update(dict(zip(args[::2], args[1::2])))
    argv = ["import_torch"] + [x for kv in base.items() for x in kv]
    assert import_torch.cli(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and pattern in err


def test_cli_mismatch_exits_2_and_keeps_the_old_model(tmp_path, capsys):
    """A checkpoint that does not fit leaves an existing --out untouched."""
    model = DeepLabV2(16, (3, 4, 6, 3), 0.0625, "multi")   # 16 classes
    ckpt = tmp_path / "advent.pth"
    torch.save(model.state_dict(), ckpt)
    out = tmp_path / "model.keras"
    out.write_bytes(b"previous model")
    code = import_torch.cli(["import_torch", "--checkpoint", str(ckpt),
                             "--arch", "multi", "--out", str(out),
                             "--depth", "50", "--width", "0.0625"])
    assert code == 2
    err = capsys.readouterr().err
    assert err == (f"error: {ckpt}: key 'layer5.conv2d_list.0.weight' has "
                   "shape (16, 64, 3, 3), expected (19, 64, 3, 3); --arch "
                   "multi\n")
    assert out.read_bytes() == b"previous model"
    assert sorted(os.listdir(tmp_path)) == ["advent.pth", "model.keras"]


def test_module_entry_point_on_a_non_checkpoint(tmp_path):
    """`python -m tf_pixintra.import_torch`: one line, exit 2, no traceback."""
    bad = tmp_path / "readme.pth"
    bad.write_text("this is not a checkpoint\n")
    done = subprocess.run(
        [sys.executable, "-m", "tf_pixintra.import_torch", "--checkpoint",
         str(bad), "--arch", "multi", "--out", str(tmp_path / "m.keras")],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {bad}: not a PyTorch checkpoint (")
    assert not (tmp_path / "m.keras").exists()
