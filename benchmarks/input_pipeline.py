"""Throughput of the tf.data input pipelines on synthetic images.

Writes random-noise PNGs at the paper's sizes into a temporary directory:
GTA5-like sources (1280x720 RGB + 8-bit palette label-id PNGs, as GTA5 ships
them) and Cityscapes-like targets (2048x1024 RGB, resized to 1024x512 by the
pipeline), then times `source_dataset` and `target_dataset` at batch 1 after
a warm-up, and prints a table (optionally --json OUT).

Noise does not compress, so these PNGs are larger and slower to decode than
real photographs: the figures are a lower bound for real data on the same
machine.

    python -m benchmarks.input_pipeline --num_images 8 --steps 20
"""

import argparse
import os
import shutil
import tempfile
import time

import numpy as np
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402  pylint: disable=wrong-import-position

from tf_pixintra import io_utils  # noqa: E402  pylint: disable=wrong-import-position
from tf_pixintra.data import labels, pipeline  # noqa: E402  pylint: disable=wrong-import-position

GTA5_SIZE = (720, 1280)  # (H, W) of GTA5 images, also the training size.
CITYSCAPES_SIZE = (1024, 2048)  # Original Cityscapes images.
CITYSCAPES_TRAIN_SIZE = (512, 1024)  # The size the paper trains at.


def _palette():
    """A GTA5-like palette: Cityscapes colours for train ids, black otherwise."""
    palette = np.zeros((256, 3), np.uint8)
    for label_id, train_id in labels.CITYSCAPES_ID_TO_TRAINID.items():
        palette[label_id] = labels.PALETTE[train_id]
    return palette.reshape(-1).tolist()


def write_images(directory, num_images, seed=0):
    """Writes the synthetic data set; returns (gta5 images, gta5 labels, targets)."""
    rng = np.random.default_rng(seed)
    sources, source_labels, targets = [], [], []
    palette = _palette()
    for i in range(num_images):
        path = os.path.join(directory, f"gta5_{i:05d}.png")
        Image.fromarray(rng.integers(0, 256, GTA5_SIZE + (3,), dtype=np.uint8)).save(
                path, compress_level=1)
        sources.append(path)
        path = os.path.join(directory, f"gta5_{i:05d}_label.png")
        label = Image.fromarray(rng.integers(0, 34, GTA5_SIZE, dtype=np.uint8), "P")
        label.putpalette(palette)
        label.save(path, compress_level=1)
        source_labels.append(path)
        path = os.path.join(directory, f"cityscapes_{i:05d}.png")
        Image.fromarray(rng.integers(0, 256, CITYSCAPES_SIZE + (3,), dtype=np.uint8)).save(
                path, compress_level=1)
        targets.append(path)
    return sources, source_labels, targets


def measure(dataset, warmup, steps):
    """(images/s, seconds) for `steps` batches after `warmup` batches."""
    iterator = iter(dataset)
    batch_size = None
    for _ in range(warmup):
        batch = next(iterator)
        batch_size = int(batch["image"].shape[0])
    start = time.perf_counter()
    for _ in range(steps):
        batch = next(iterator)
        batch_size = int(batch["image"].shape[0])
    elapsed = time.perf_counter() - start
    return steps * batch_size / elapsed, elapsed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_images", type=int, default=8,
                        help="synthetic images per data set")
    parser.add_argument("--steps", type=int, default=50, help="timed batches")
    parser.add_argument("--warmup", type=int, default=5, help="untimed batches first")
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--workdir", default=None,
                        help="keep the synthetic PNGs here (default: a temp dir)")
    args = parser.parse_args(argv)

    workdir = args.workdir or tempfile.mkdtemp(prefix="tf_pixintra_bench_")
    os.makedirs(workdir, exist_ok=True)
    try:
        start = time.perf_counter()
        sources, source_labels, targets = write_images(workdir, args.num_images)
        print(f"wrote {3 * args.num_images} PNGs in {time.perf_counter() - start:.1f} s")
        streams = [
            ("source_dataset (gta5, flip)", f"{GTA5_SIZE[1]}x{GTA5_SIZE[0]}",
             GTA5_SIZE,
             pipeline.source_dataset(sources, source_labels, "gta5", GTA5_SIZE,
                                     flip=True, batch_size=args.batch_size)),
            ("target_dataset (cityscapes, flip)",
             f"{CITYSCAPES_SIZE[1]}x{CITYSCAPES_SIZE[0]}", CITYSCAPES_TRAIN_SIZE,
             pipeline.target_dataset(targets, CITYSCAPES_TRAIN_SIZE, flip=True,
                                     batch_size=args.batch_size)),
        ]
        results = []
        for name, input_size, size, dataset in streams:
            rate, elapsed = measure(dataset, args.warmup, args.steps)
            results.append({"stream": name, "input": input_size,
                            "output": f"{size[1]}x{size[0]}",
                            "batch_size": args.batch_size, "steps": args.steps,
                            "seconds": round(elapsed, 3),
                            "images_per_second": round(rate, 2),
                            "ms_per_image": round(1000.0 / rate, 1)})
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    load = os.getloadavg()
    print(f"\n{os.cpu_count()} CPUs, load average {load[0]:.2f}, TF {tf.__version__}, "
          f"batch {args.batch_size}, {args.steps} timed steps after {args.warmup}")
    print(f"{'stream':36s} {'input':>10s} {'output':>10s} {'images/s':>9s} {'ms/img':>8s}")
    for r in results:
        print(f"{r['stream']:36s} {r['input']:>10s} {r['output']:>10s} "
              f"{r['images_per_second']:9.2f} {r['ms_per_image']:8.1f}")
    if args.json:
        io_utils.write_json(args.json, {
            "benchmark": "input_pipeline",
            "cpus": os.cpu_count(), "load_average_1min": round(load[0], 2),
            "tensorflow": tf.__version__, "num_images": args.num_images,
            "warmup": args.warmup, "results": results})
        print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    main()
