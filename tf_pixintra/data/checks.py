"""Up-front checks of a run's file lists, before any training step.

Every image and label is decoded completely with the readers training uses,
so a truncated, empty or mis-sized file is refused by name before a long run
draws it. Files are checked on parallel threads (the decoders release the
GIL).
"""

import concurrent.futures
import dataclasses
import hashlib
import json
import os

import numpy as np
from absl import logging

from tf_pixintra import io_utils
from tf_pixintra.data import datasets
from tf_pixintra.data import labels
from tf_pixintra.errors import DataError

# Per-file warnings printed before they are summed up in one line.
MAX_WARNINGS = 20
CHECK_VERSION = 1


@dataclasses.dataclass(frozen=True)
class ListToCheck:
    """One file list of a run: `examples` of `dataset` (labels if `labelled`)."""
    name: str          # "source", "target_train", "target_val"
    dataset: str
    examples: tuple
    labelled: bool


def check_labelled(example, dataset):
    """Decodes an image and its label; returns (labelled pixels, unknown ids).

    `unknown`: {label id: pixel count} of the values not in
    labels.KNOWN_LABEL_IDS[dataset]. DataError naming the label when its
    size differs from the image's.
    """
    image_shape = datasets.read_image(example.image_path).shape
    ids = datasets.read_label_ids(example.label_path, dataset)
    datasets.check_label_size(example, ids.shape, image_shape)
    counts = np.bincount(ids.ravel(), minlength=1)
    present = np.flatnonzero(counts)
    train = labels.to_train_ids(present, dataset)
    labelled = int(counts[present[train != labels.IGNORE_LABEL]].sum())
    known = labels.KNOWN_LABEL_IDS[dataset]
    unknown = {int(v): int(counts[v]) for v in present if int(v) not in known}
    return labelled, unknown


def _fingerprint(entry):
    """Digest of a list's files: paths, sizes and modification times."""
    digest = hashlib.sha256(
        json.dumps([CHECK_VERSION, entry.dataset, entry.labelled]).encode())
    for example in entry.examples:
        paths = ((example.image_path, example.label_path) if entry.labelled
                 else (example.image_path,))
        for path in paths:
            size, mtime = io_utils.size_and_mtime(path)
            digest.update(f"{path}\0{size}\0{mtime}\0".encode())
    return digest.hexdigest()


def check_list(entry, workers=None):
    """Checks every file of one list; returns its warning lines.

    DataError naming the first bad file (in list order), or when no pixel of
    a labelled list has a class.
    """
    def check(example):
        if entry.labelled:
            return check_labelled(example, entry.dataset)
        datasets.read_image(example.image_path)  # decodes it completely
        return None

    workers = workers or os.cpu_count() or 1
    if workers > 1 and len(entry.examples) > 1:
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(check, entry.examples))
    else:
        results = [check(example) for example in entry.examples]
    if not entry.labelled:
        return []
    if sum(labelled for labelled, _ in results) == 0:
        values = sorted(set().union(*(unknown for _, unknown in results)))
        found = (f"values {', '.join(map(str, values[:10]))}" if values
                 else "only ids without a class")
        raise DataError(
            f"{entry.examples[0].label_path}: no pixel of the "
            f"{len(entry.examples)} {entry.name} label files has a class "
            f"({found}); training would see only ignored pixels (loss_seg 0). "
            f"Expected {entry.dataset} label ids, e.g. 7 (road) in Cityscapes "
            "labelIds")
    lines = []
    for example, (_, unknown) in zip(entry.examples, results):
        if unknown:
            values = ", ".join(f"{v} ({n} px)" for v, n in sorted(unknown.items()))
            lines.append(f"{example.label_path}: label values {values} are no "
                         f"{entry.dataset} label id; read as ignore (255)")
    return lines


def check_lists(entries, record_path=None, workers=None):
    """Checks every list of `entries`; logs the warnings; returns them.

    With `record_path` (a JSON file), lists whose files are unchanged since
    they last passed are not decoded again (their warnings are repeated),
    and the record is updated when new lists pass.
    """
    record = {}
    if record_path and io_utils.exists(record_path):
        try:
            record = io_utils.read_json(record_path)
        except DataError:   # a damaged record only costs a new check
            pass
    changed = False
    all_lines = []
    for entry in entries:
        if not entry.examples:
            continue
        fingerprint = _fingerprint(entry)
        seen = record.get(entry.name)
        if isinstance(seen, dict) and seen.get("fingerprint") == fingerprint:
            lines = list(seen.get("warnings", []))
        else:
            lines = check_list(entry, workers)
            record[entry.name] = {"fingerprint": fingerprint, "warnings": lines}
            changed = True
        for line in lines[:MAX_WARNINGS]:
            logging.warning("%s", line)
        if len(lines) > MAX_WARNINGS:
            logging.warning("... and %d more label files with values that are no "
                            "label id", len(lines) - MAX_WARNINGS)
        all_lines += lines
    if record_path and changed:
        io_utils.write_json(record_path, record)
    return all_lines
