"""Resolves the data config into example lists (and ToyScapes on first use)."""

import dataclasses

from tf_pixintra import io_utils
from tf_pixintra.data import checks
from tf_pixintra.data import datasets
from tf_pixintra.data import toyscapes
from tf_pixintra.run_layout import CHECK_RECORD


@dataclasses.dataclass(frozen=True)
class Sources:
    """Example lists of one run: labelled source, target train and val."""
    source_dataset: str
    source: tuple
    target_train: tuple
    target_val: tuple          # empty when the target has no val labels


def resolve(data_cfg, need_source=True):
    """Lists the examples named by `data_cfg` (generating ToyScapes if asked)."""
    source_root, target_root = data_cfg.source_root, data_cfg.target_root
    source_dataset = data_cfg.source_dataset
    if data_cfg.toyscapes:
        n_src, n_tgt, n_val = data_cfg.toyscapes_counts
        h, w = data_cfg.toyscapes_image_size
        paths = toyscapes.ensure_toyscapes(
            data_cfg.toyscapes_dir, seed=data_cfg.toyscapes_seed,
            num_source=n_src, num_target=n_tgt, num_val=n_val, height=h,
            width=w, variant=data_cfg.toyscapes_variant)
        target_root = paths["cityscapes"]
        if source_dataset == "cityscapes":   # oracle: the target's labels
            source_root = target_root
        else:
            source_root, source_dataset = paths["gta5"], "gta5"
    source = ()
    if need_source:
        source = tuple(datasets.list_examples(
            source_dataset, source_root, "train", list_file=data_cfg.source_list or None))
    target_train = tuple(datasets.list_examples(
        "cityscapes", target_root, "train",
        list_file=data_cfg.target_list or None, require_labels=False))
    target_val = ()
    val_dir = io_utils.join(target_root, "gtFine", data_cfg.target_val_split)
    if io_utils.isdir(val_dir):
        target_val = tuple(datasets.list_examples(
            "cityscapes", target_root, data_cfg.target_val_split,
            list_file=data_cfg.target_val_list or None))
        if data_cfg.max_eval_images:
            target_val = target_val[:data_cfg.max_eval_images]
    return Sources(source_dataset, source, target_train, target_val)


def check(srcs, run_dir=None, workers=None):
    """Decodes and checks every file of the run's lists (data/checks.py);
    lists that passed are remembered in <run_dir>/sources_checked.json."""
    entries = [
        checks.ListToCheck("source", srcs.source_dataset, srcs.source, True),
        checks.ListToCheck("target_train", "cityscapes", srcs.target_train, False),
        checks.ListToCheck("target_val", "cityscapes", srcs.target_val, True),
    ]
    record = io_utils.join(run_dir, CHECK_RECORD) if run_dir else None
    return checks.check_lists(entries, record, workers)
