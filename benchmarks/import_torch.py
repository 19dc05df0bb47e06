"""Import a ResNet-101 DeepLab-v2 PyTorch checkpoint: time, memory, sizes.

    python -m benchmarks.import_torch [--arch multi] [--size 63,79] [--out DIR]

Builds the reference-layout PyTorch DeepLab-v2 ResNet-101 (benchmarks/
torch_models.py) with random weights and BN statistics, saves its state dict
(zip format, `module.` prefix as DataParallel writes it), then runs
`python -m tf_pixintra.import_torch` in a child process and reports its wall
time and peak RSS, the .pth and .keras sizes, and how far the imported
model's logits (main and aux) are from PyTorch's on one Caffe-preprocessed
input of --size (max |diff| / max |logit|).
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="multi", choices=("multi", "single"))
    parser.add_argument("--size", default="63,79", help="H,W of the logits check")
    parser.add_argument("--out", default=None, help="work directory (default: temp)")
    args = parser.parse_args()
    import torch  # pylint: disable=import-outside-toplevel
    # torch is an optional extra: imported here so that --help works without.
    from benchmarks.torch_models import DeepLabV2  # pylint: disable=import-outside-toplevel
    from benchmarks.torch_models import randomize  # pylint: disable=import-outside-toplevel
    work = args.out or tempfile.mkdtemp(prefix="import_torch_bench_")
    os.makedirs(work, exist_ok=True)
    heads = "multi" if args.arch == "multi" else "layer5"
    torch.manual_seed(0)
    model = randomize(DeepLabV2(19, (3, 4, 23, 3), 1.0, heads), seed=0)
    ckpt = os.path.join(work, "deeplab_v2_r101.pth")
    torch.save({"module." + k: v for k, v in model.state_dict().items()}, ckpt)
    out = os.path.join(work, "deeplab_v2_r101.keras")
    cmd = [sys.executable, "-m", "tf_pixintra.import_torch", "--checkpoint",
           ckpt, "--arch", args.arch, "--out", out]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                          check=False)
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if done.returncode != 0:
        sys.exit(f"import failed ({done.returncode}): {done.stderr[-2000:]}")
    params = sum(v.numel() for k, v in model.state_dict().items()
                 if not k.endswith("num_batches_tracked"))
    print(f"checkpoint: ResNet-101 DeepLab-v2 --arch {args.arch}, "
          f"{len(model.state_dict())} tensors, {params / 1e6:.2f}M values")
    print(f"import (python -m tf_pixintra.import_torch, child process): "
          f"{seconds:.1f} s wall, peak RSS {peak_mib:.0f} MiB")
    print(f"sizes: .pth {os.path.getsize(ckpt) / 2**20:.1f} MiB, "
          f".keras {os.path.getsize(out) / 2**20:.1f} MiB")
    import keras  # pylint: disable=import-outside-toplevel
    import tf_pixintra.models  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    h, w = (int(v) for v in args.size.split(","))
    x = np.random.default_rng(0).uniform(-123, 151, (1, h, w, 3))
    x = x.astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x.transpose(0, 3, 1, 2)))
    expected = expected if isinstance(expected, tuple) else (expected,)
    imported = keras.saving.load_model(out, compile=False)
    actual = imported(x, training=False)
    actual = actual if isinstance(actual, (list, tuple)) else [actual]
    for name, e, a in zip(("main", "aux"), expected, actual):
        e = e.numpy().transpose(0, 2, 3, 1)
        a = np.asarray(a)
        rel = np.max(np.abs(e - a)) / np.max(np.abs(e))
        print(f"logits {name} {tuple(e.shape)} at input {h}x{w}: "
              f"max|diff|/max|logit| = {rel:.2e}")


if __name__ == "__main__":
    main()
