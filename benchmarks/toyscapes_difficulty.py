"""Is ToyScapes' target difficulty really there, between images and between pixels?

Takes a model trained on source only (a run directory or .keras file) and the
ToyScapes benchmark, predicts every target image of a split, and prints:
- how the mean normalised entropy of the prediction spreads across images,
  and its rank correlation with each image's haze density beta;
- the share of hard pixels (Eq. 2, t_k from the same images, --alpha) per
  depth band (depth re-rendered exactly from the generator's seeds), and the
  pixel accuracy per band;
- with --oracle_run_dir and --source_run_dir, the target-val mIoU of the
  source-only and oracle (trained on target labels) runs and their gap.

    python -m benchmarks.toyscapes_difficulty --model runs/toyscapes_so \
        --toyscapes_dir .cache/toyscapes --split val --eval_size 64,128 \
        --source_run_dir runs/toyscapes_so --oracle_run_dir runs/toyscapes_oracle
"""

import argparse
import os

import numpy as np


# pylint: disable=wrong-import-position
from tf_pixintra import inference  # noqa: E402
from tf_pixintra import subdomains  # noqa: E402
from tf_pixintra.data import datasets  # noqa: E402
from tf_pixintra.data import toyscapes  # noqa: E402
from tf_pixintra.data import toyscapes_render as render  # noqa: E402
from tf_pixintra.io_utils import read_json  # noqa: E402

DEPTH_BANDS = (0, 10, 20, 40, 80, np.inf)


def spearman(a, b):
    """Spearman rank correlation (no ties expected in continuous data)."""
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def depth_map(seed, split, index, height, width):
    """The per-pixel depth (metres) the generator used for this image."""
    scene_rng, _ = toyscapes._generators(seed, split, index)  # pylint: disable=protected-access
    _, depth, _, _ = render.render_scene(scene_rng, height, width,
                                         render.TARGET_PALETTE)
    return depth


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--toyscapes_dir", required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--eval_size", default="64,128")
    parser.add_argument("--alpha", type=float, default=0.85)
    parser.add_argument("--source_run_dir")
    parser.add_argument("--oracle_run_dir")
    parser.add_argument("--json")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.eval_size.split(","))
    manifest = read_json(os.path.join(args.toyscapes_dir, "toyscapes.json"))
    looks = manifest["target_images"][args.split]
    model = inference.load_model(args.model)
    root = os.path.join(args.toyscapes_dir, "cityscapes")
    examples = datasets.list_examples("cityscapes", root, args.split)
    by_name = {e.name: e for e in examples}

    probs, labels, depths, betas = [], [], [], []
    thresholds = subdomains.ClassThresholds(19)
    for index, look in enumerate(looks):
        example = by_name[look["name"]]
        image = datasets.read_image(example.image_path)
        label = datasets.read_label(example.label_path, "cityscapes")
        p = inference.predict_probs(model, image, size=size,
                                    output_size=label.shape)
        thresholds.update(p)
        probs.append(p.astype(np.float16))
        labels.append(label)
        depths.append(depth_map(manifest["seed"], args.split, index,
                                *label.shape))
        betas.append(look["beta"])
    t_k = thresholds.result(cap=0.9)

    entropy = np.array([subdomains.image_entropy_scores(p.astype(np.float32))
                        for p in probs])
    bands = []
    for lo, hi in zip(DEPTH_BANDS[:-1], DEPTH_BANDS[1:]):
        hard = total = correct = 0
        for p, label, depth in zip(probs, labels, depths):
            sel = (depth >= lo) & (depth < hi) & (label != 255)
            if not sel.any():
                continue
            p32 = p.astype(np.float32)
            m, _, _ = subdomains.separate_pixels(p32, t_k, args.alpha)
            hard += int(m[sel].sum())
            total += int(sel.sum())
            correct += int((p32.argmax(-1)[sel] == label[sel]).sum())
        bands.append({"depth_m": f"{lo}-{hi}", "pixels": total,
                      "hard_share": hard / max(total, 1),
                      "pixel_accuracy": correct / max(total, 1)})
    result = {
        "split": args.split, "num_images": len(probs), "alpha": args.alpha,
        "thresholds": [float(t) for t in t_k],
        "entropy": {"min": float(entropy.min()),
                    "quartiles": [float(q) for q in np.percentile(entropy, [25, 50, 75])],
                    "max": float(entropy.max()),
                    "spearman_vs_beta": spearman(entropy, np.array(betas))},
        "depth_bands": bands,
    }
    if args.source_run_dir and args.oracle_run_dir:
        so = read_json(os.path.join(args.source_run_dir, "source_only", "metrics.json"))
        orc = read_json(os.path.join(args.oracle_run_dir, "source_only", "metrics.json"))
        result["source_only_miou"] = so["target_miou"]
        result["oracle_miou"] = orc["target_miou"]
        result["gap"] = orc["target_miou"] - so["target_miou"]

    print(f"{len(probs)} {args.split} images; mean normalised entropy per image: "
          f"min {result['entropy']['min']:.3f}, quartiles "
          + ", ".join(f"{q:.3f}" for q in result["entropy"]["quartiles"])
          + f", max {result['entropy']['max']:.3f}; Spearman vs haze beta "
          f"{result['entropy']['spearman_vs_beta']:+.2f}")
    print(f"{'depth (m)':>10} {'pixels':>9} {'hard share':>10} {'accuracy':>9}")
    for b in bands:
        print(f"{b['depth_m']:>10} {b['pixels']:>9} {b['hard_share']:>10.3f} "
              f"{b['pixel_accuracy']:>9.3f}")
    if "gap" in result:
        print(f"target-val mIoU: source only {result['source_only_miou']:.2f}, "
              f"oracle {result['oracle_miou']:.2f}, gap {result['gap']:.2f}")
    if args.json:
        from tf_pixintra.io_utils import write_json  # pylint: disable=import-outside-toplevel
        write_json(args.json, result)


if __name__ == "__main__":
    main()
