"""Per-class IoU tables in markdown, laid out like the paper's Tables 1 (19 classes) and 2
(SYNTHIA: labels.TRAINIDS_13), each followed by mIoU. The 16-class SYNTHIA protocol adds
"mIoU*", the 13-class mean, as the SYNTHIA papers report it next to the 16-class one.
"""

import math

from tf_pixintra.data.labels import CLASS_NAMES, EVAL_SUBSETS, TRAINIDS_13

# The paper's column headers, trainId order.
SHORT_NAMES = (
    "road", "sidewalk", "build.", "wall", "fence", "pole", "light", "sign",
    "veget.", "terrain", "sky", "person", "rider", "car", "truck", "bus",
    "train", "motor.", "bike",
)


def _value(ious, class_id):
    """The IoU (%) of `class_id` in a dict keyed by trainId or class name."""
    for key in (class_id, CLASS_NAMES[class_id], SHORT_NAMES[class_id]):
        if key in ious:
            value = ious[key]
            if value is None or (isinstance(value, float) and math.isnan(value)):
                return None
            return float(value)
    return None


def _mean(values):
    valid = [v for v in values if v is not None]
    return sum(valid) / len(valid) if valid else None


def _cell(value):
    return "-" if value is None else f"{value:.1f}"


def per_class_table(rows, classes=19):
    """Markdown table: one row per (method name, iou dict), one decimal.

    Each iou dict (tf_pixintra.evaluate's "iou") maps trainIds or class names (full or
    short) to IoU in %; None, NaN or a missing key shows "-" and is left out of the mean.
    mIoU: the mean over the listed classes with a value; `classes` is 19, 16 or 13.
    """
    if classes not in EVAL_SUBSETS:
        raise ValueError(f"classes must be one of {sorted(EVAL_SUBSETS)}, got {classes!r}")
    class_ids = EVAL_SUBSETS[classes]
    header = ["Method"] + [SHORT_NAMES[k] for k in class_ids] + ["mIoU"]
    if classes == 16:
        header.append("mIoU*")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1)]
    for name, ious in rows:
        values = [_value(ious, k) for k in class_ids]
        cells = [str(name)] + [_cell(v) for v in values] + [_cell(_mean(values))]
        if classes == 16:
            cells.append(_cell(_mean([_value(ious, k) for k in TRAINIDS_13])))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
