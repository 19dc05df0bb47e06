"""What Stage II does to the target-val pixels that the INTER model finds hard.

Stage II's discriminators see only G's softmax map, and "easy" pixels are
the confident ones (Eq. 2). So G can make a hard pixel "look easy" to D by
making it confident, right or wrong. This script tells the two apart. It
splits every labelled target-val pixel into easy and hard with the INTER
model's prediction and the run's own thresholds: Eq. 2 with the t_k and
alpha of `pseudo_r1/summary.json`. For each Stage II model it then reports
on each subdomain the pixel accuracy and the mean confidence (max
softmax).

    python -m benchmarks.hard_pixels --data_root .cache/toyscapes_shadows/cityscapes \
        --run INTER=runs/reproduce/control/seed0/pla \
        --run PLA=runs/reproduce/control/seed0/pla \
        --run "no D=runs/reproduce/control/seed0/easy_pixels_without_d"

The first --run names the run directory whose `inter/` model and
`pseudo_r1/summary.json` define the split. Each --run scores that run
directory's last Stage II model (`intra_r2/`, else `intra_r1/`), or its
`inter/` model for the name INTER. --size is the model input (the configs' --eval_size). Scores
are at the labels' size.
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# pylint: disable=wrong-import-position
import numpy as np  # noqa: E402

from tf_pixintra import inference  # noqa: E402
from tf_pixintra import subdomains  # noqa: E402
from tf_pixintra.data import datasets  # noqa: E402
from tf_pixintra.errors import DataError  # noqa: E402

IGNORE = 255


def model_path(name, run_dir):
    """INTER's model for the name INTER, else the run's last Stage II model."""
    stages = ("inter",) if name == "INTER" else ("intra_r2", "intra_r1")
    for stage in stages:
        path = os.path.join(run_dir, stage, "model.keras")
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"{run_dir}: no model.keras in {' or '.join(stages)}")


def split(run_dir):
    """(thresholds t_k, alpha) of the run's round-one pseudo labels."""
    with open(os.path.join(run_dir, "pseudo_r1", "summary.json"), encoding="utf-8") as f:
        summary = json.load(f)
    return np.asarray(summary["thresholds"], np.float32), float(summary["alpha"])


class Tally:
    """Pixel accuracy and mean confidence on the easy and the hard pixels
    (and, given a `shadowed` mask, on the shadowed and the unshadowed ones)."""

    def __init__(self):
        self.sums = {}   # group -> [pixels, correct, sum of confidence]

    def update(self, probs, label, hard, shadowed=None):
        pred, conf = probs.argmax(-1), probs.max(-1)
        labelled = label != IGNORE
        groups = [("easy", labelled & ~hard), ("hard", labelled & hard)]
        if shadowed is not None:
            groups += [("unshadowed", labelled & ~shadowed),
                       ("shadowed", labelled & shadowed),
                       ("shadowed hard", labelled & shadowed & hard)]
        for name, mask in groups:
            self.sums[name] = self.sums.get(name, np.zeros(3)) + [
                mask.sum(), (pred[mask] == label[mask]).sum(), conf[mask].sum()]

    def result(self):
        out = {}
        for name, (n, correct, conf) in self.sums.items():
            out[name] = {"pixels": int(n), "accuracy": correct / max(n, 1),
                         "confidence": conf / max(n, 1)}
        return out


# A pixel of the shadows variant is shadowed when it is darker than the same
# pixel of the standard variant (same scene, look and noise) by more than
# this many grey levels, averaged over R, G and B.
SHADOW_DARKER = 8


def shadow_mask(image, data_root, example, reference_root):
    """Shadowed pixels: `image` against the same file under `reference_root`."""
    relative = os.path.relpath(example.image_path, data_root)
    reference = datasets.read_image(os.path.join(reference_root, relative))
    darker = reference.astype(np.float32) - image.astype(np.float32)
    return darker.mean(-1) > SHADOW_DARKER


def analyse(data_root, runs, size, max_images=0, reference_root=""):
    """{name: Tally.result()} over the target-val images of `data_root`.

    With `reference_root` (the standard variant of a shadows benchmark) the
    pixels are also split into shadowed and unshadowed ones.
    """
    examples = datasets.list_examples("cityscapes", data_root, "val")
    if max_images:
        examples = examples[:max_images]
    thresholds, alpha = split(runs[0][1])
    # Each model file is loaded and predicted once per image, also when the
    # split's INTER model is one of the scored runs.
    split_path = model_path("INTER", runs[0][1])
    paths = {name: model_path(name, run_dir) for name, run_dir in runs}
    predict = {}
    for path in {split_path, *paths.values()}:
        model = inference.load_model(path)
        predict[path] = (model, inference.make_predict_fn(model, size))
    tallies = {name: Tally() for name, _ in runs}
    for example in examples:
        image, label = datasets.read_example(example, "cityscapes")
        out = image.shape[:2]
        probs = {path: inference.predict_probs(model, image, output_size=out,
                                               predict_fn=fn)
                 for path, (model, fn) in predict.items()}
        hard, _, _ = subdomains.separate_pixels(probs[split_path], thresholds, alpha)
        shadowed = (shadow_mask(image, data_root, example, reference_root)
                    if reference_root else None)
        for name, path in paths.items():
            tallies[name].update(probs[path], label, hard.astype(bool), shadowed)
    return {name: t.result() for name, t in tallies.items()}


def combine(per_seed):
    """Pools Tally results of several seeds (pixel-weighted), model by model."""
    out = {}
    for results in per_seed:
        for name, groups in results.items():
            pooled = out.setdefault(name, {})
            for group, r in groups.items():
                p = pooled.setdefault(group, {"pixels": 0, "correct": 0.0, "conf": 0.0})
                p["pixels"] += r["pixels"]
                p["correct"] += r["accuracy"] * r["pixels"]
                p["conf"] += r["confidence"] * r["pixels"]
    return {name: {g: {"pixels": p["pixels"],
                       "accuracy": p["correct"] / max(p["pixels"], 1),
                       "confidence": p["conf"] / max(p["pixels"], 1)}
                   for g, p in groups.items()} for name, groups in out.items()}


def markdown(results):
    """Accuracy / confidence per group; the share of labelled pixels that are
    hard, and (with shadows) shadowed and hard among shadowed and not."""
    groups = [g for g in ("easy", "hard", "unshadowed", "shadowed")
              if g in next(iter(results.values()))]
    head = " | ".join(f"{g}: accuracy | {g}: confidence" for g in groups)
    lines = [f"| model | {head} | hard share |", "|---|" + "---|" * (2 * len(groups) + 1)]
    for name, r in results.items():
        cells = " | ".join(f"{r[g]['accuracy']:.3f} | {r[g]['confidence']:.3f}"
                           for g in groups)
        share = r["hard"]["pixels"] / max(r["easy"]["pixels"] + r["hard"]["pixels"], 1)
        lines.append(f"| {name} | {cells} | {share:.3f} |")
    first = next(iter(results.values()))
    if "shadowed" in first:
        shadowed, hard = first["shadowed"]["pixels"], first["hard"]["pixels"]
        both = first["shadowed hard"]["pixels"]
        total = first["easy"]["pixels"] + hard
        lines += ["", f"Shadowed: {shadowed / max(total, 1):.3f} of the labelled "
                  f"pixels; hard among shadowed {both / max(shadowed, 1):.3f}, among "
                  f"unshadowed {(hard - both) / max(total - shadowed, 1):.3f}."]
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_root", required=True,
                        help="a Cityscapes-layout root with labelled val images")
    parser.add_argument("--run", action="append", required=True,
                        help="NAME=RUN_DIR; the first defines the split")
    parser.add_argument("--size", default="64,128", help="model input h,w")
    parser.add_argument("--reference_root", default="",
                        help="the standard variant's root, for a shadows benchmark: "
                        "also split the pixels into shadowed and unshadowed")
    parser.add_argument("--max_images", type=int, default=0)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    runs = []
    for item in args.run:
        name, sep, run_dir = item.partition("=")
        if not sep:
            parser.error(f"--run={item!r}: expected NAME=RUN_DIR")
        runs.append((name, run_dir))
    size = tuple(int(v) for v in args.size.split(","))
    try:
        results = analyse(args.data_root, runs, size, args.max_images,
                          args.reference_root)
    except (DataError, OSError, KeyError) as e:
        raise SystemExit(f"hard_pixels: {e}") from None
    print("\n".join(markdown(results)))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
