"""Per-class pixel statistics of a data set in its official layout.

    python -m tf_pixintra.data.stats --dataset {gta5,synthia,cityscapes} \\
        --root DIR --split SPLIT [--list_file F] [--json OUT]

prints a table (class name, pixels, share of all pixels) and writes, when
--json is given, the `compute_stats` dict (atomically). Bad input exits with
status 1 and the error message on stderr.
"""

import numpy as np
from absl import app
from absl import flags

from tf_pixintra import choices
from tf_pixintra import io_utils
from tf_pixintra import progress
from tf_pixintra.data import datasets
from tf_pixintra.data import labels as labels_lib
from tf_pixintra.errors import absl_main

flags.DEFINE_enum("dataset", None, list(choices.DATASETS), "Data set layout.")
flags.DEFINE_string("root", None, "Data set root folder.")
flags.DEFINE_string("split", "train",
                    "Split: a Cityscapes split folder; for GTA5/SYNTHIA "
                    "'train' or 'all' (every image) unless --list_file is given.")
flags.DEFINE_string("list_file", None,
                    "Optional list of image names (one per line, relative to "
                    "the image folder) selecting a subset.")
flags.DEFINE_string("json", None, "Where to write the statistics as JSON.")


def compute_stats(dataset, root, split, list_file=None):
    """Counts the labelled pixels of every trainId over a data set's labels.

    Returns {"num_images": N, "class_pixels": [19 ints, trainId order],
    "ignored_pixels": n}, all Python ints.
    """
    examples = datasets.list_examples(dataset, root, split, list_file=list_file,
                                      require_labels=True)
    counts = np.zeros((256,), dtype=np.int64)
    for example in progress.track(examples, "counting labels", unit="label"):
        train_ids = datasets.read_label(example.label_path, dataset)
        counts += np.bincount(train_ids.ravel(), minlength=256)
    return {
        "num_images": len(examples),
        "class_pixels": [int(c) for c in counts[:labels_lib.NUM_CLASSES]],
        "ignored_pixels": int(counts[labels_lib.IGNORE_LABEL]),
    }


def format_table(stats):
    """A readable table: class name, pixels and share of all pixels (%)."""
    rows = list(zip(labels_lib.CLASS_NAMES, stats["class_pixels"]))
    rows.append(("(ignored)", stats["ignored_pixels"]))
    total = sum(count for _, count in rows)
    width = max(len(name) for name, _ in rows)
    lines = [f"images: {stats['num_images']}",
             f"{'class':<{width}}  {'pixels':>14}  {'share %':>8}"]
    for name, count in rows + [("total", total)]:
        share = 100.0 * count / total if total else 0.0
        lines.append(f"{name:<{width}}  {count:>14,d}  {share:>8.3f}")
    return "\n".join(lines)


def run(fv):
    """Computes, prints and optionally writes the statistics."""
    stats = compute_stats(fv.dataset, fv.root, fv.split, list_file=fv.list_file)
    print(format_table(stats))
    if fv.json:
        io_utils.write_json(fv.json, stats)
        print(f"wrote {fv.json}")


# absl entry point; a bad file or setting is exit status 1.
main = absl_main(run, status=1)


if __name__ == "__main__":
    flags.mark_flags_as_required(["dataset", "root"])
    app.run(main)
