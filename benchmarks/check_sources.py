"""Cost of the up-front data check (tf_pixintra/data/checks.py) at GTA5 scale.

Writes `--num_images` synthetic GTA5-layout pairs of 1914x1052 (an RGB PNG
with smooth regions, edges and sensor-like noise, so it compresses about as
a rendered frame does, and an 8-bit palette label PNG of label-id regions),
then times the check of one labelled example (full image decode + label
decode + size and label-id checks): per image on one thread, and the whole
list on `--workers` threads as a run does it. Extrapolates to the 24,966
images of GTA5.

    python -m benchmarks.check_sources --num_images 24 --work_dir /tmp/check_bench
"""

import argparse
import json
import os
import statistics
import time

import numpy as np
from PIL import Image

from tf_pixintra.data import checks
from tf_pixintra.data import datasets

GTA5_IMAGES = 24966
HEIGHT, WIDTH = 1052, 1914


def synthetic_pair(seed):
    """(RGB uint8 [H,W,3], label ids uint8 [H,W]) resembling a street frame."""
    rng = np.random.default_rng(seed)
    ids = np.full((HEIGHT, WIDTH), 7, np.uint8)                  # road
    ids[: HEIGHT // 2] = 23                                      # sky
    for _ in range(40):                                          # objects
        y, x = rng.integers(0, HEIGHT - 100), rng.integers(0, WIDTH - 100)
        h, w = rng.integers(20, 300, size=2)
        ids[y:y + h, x:x + w] = rng.choice([11, 17, 21, 26, 24, 20])
    colours = rng.integers(0, 256, size=(256, 3))
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    shade = (yy * 60 // HEIGHT + xx * 30 // WIDTH)[..., None]
    rgb = colours[ids] * 0.7 + shade + rng.normal(0, 6, (HEIGHT, WIDTH, 3))
    return np.clip(rgb, 0, 255).astype(np.uint8), ids


def write_set(work_dir, count):
    root = os.path.join(work_dir, "gta5")
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    os.makedirs(os.path.join(root, "labels"), exist_ok=True)
    for i in range(count):
        name = f"{i + 1:05d}.png"
        image_path = os.path.join(root, "images", name)
        if os.path.exists(image_path):
            continue
        rgb, ids = synthetic_pair(i)
        Image.fromarray(rgb).save(image_path)
        label = Image.fromarray(ids, mode="P")
        label.putpalette(list(np.arange(768) % 256))
        label.save(os.path.join(root, "labels", name))
    return datasets.list_examples("gta5", root, "train")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_images", type=int, default=24)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--work_dir", default="/tmp/check_bench")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    examples = write_set(args.work_dir, args.num_images)[:args.num_images]
    image_bytes = statistics.mean(os.path.getsize(e.image_path) for e in examples)
    checks.check_labelled(examples[0], "gta5")     # warm-up (TF start-up)

    per_image, per_image_cpu = [], []
    for example in examples:
        start, cpu = time.perf_counter(), time.process_time()
        checks.check_labelled(example, "gta5")
        per_image.append(time.perf_counter() - start)
        per_image_cpu.append(time.process_time() - cpu)
    entry = checks.ListToCheck("source", "gta5", tuple(examples), True)
    start, cpu = time.perf_counter(), time.process_time()
    checks.check_list(entry, workers=args.workers)
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu
    result = {
        "num_images": len(examples), "image_size": [HEIGHT, WIDTH],
        "mean_png_bytes": round(image_bytes),
        "one_thread_s_per_image_median": statistics.median(per_image),
        "one_thread_s_per_image_mean": statistics.mean(per_image),
        "one_thread_cpu_s_per_image_mean": statistics.mean(per_image_cpu),
        "workers": args.workers, "list_wall_s": wall, "list_cpu_s": cpu,
        "list_s_per_image": wall / len(examples),
        "gta5_one_thread_min": statistics.mean(per_image) * GTA5_IMAGES / 60,
        "gta5_workers_min": wall / len(examples) * GTA5_IMAGES / 60,
        "gta5_cpu_min": cpu / len(examples) * GTA5_IMAGES / 60,
        "load_average": os.getloadavg(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
