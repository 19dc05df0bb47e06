"""Confusion matrix and IoU with the rules of the official Cityscapes evaluator
(cityscapesscripts, evalPixelLevelSemanticLabeling), mapped to the 19 trainIds:

- Ground-truth pixels of an ignored class (trainId 255) are left out entirely.
- A prediction outside [0, num_classes) (an ignoreInEval labelId such as
  "unlabeled", i.e. 255 after mapping; negative or too large values) is a
  false negative of the ground-truth class and a false positive of nothing.
  (The official script would crash on a labelId above 33.)
- IoU_k = TP / (TP + FP + FN): 0 for a class with only false positives; NaN,
  left out of the mean, for a class in neither map.

The SYNTHIA -> Cityscapes protocols (16 and 13 classes, labels.EVAL_SUBSETS)
score the full 19-class prediction against the 19-class ground truth and
average over the subset only: a road pixel predicted as terrain (outside both
subsets) is still a false negative of road.
"""

import numpy as np

from tf_pixintra import choices
from tf_pixintra.data.labels import EVAL_SUBSETS, IGNORE_LABEL, NUM_CLASSES


class ConfusionMatrix:
    """Ground truth x prediction pixel counts (int64): rows are ground-truth
    classes, columns predicted classes plus a last one for predictions out of
    range ("miss": a false negative only)."""

    def __init__(self, num_classes=NUM_CLASSES, ignore_label=IGNORE_LABEL):
        self.num_classes = int(num_classes)
        self.ignore_label = ignore_label
        self.counts = np.zeros((self.num_classes, self.num_classes + 1), np.int64)

    @property
    def confusion(self):
        """int64 [num_classes, num_classes]: rows ground truth, columns prediction."""
        return self.counts[:, :self.num_classes]

    @property
    def misses(self):
        """int64 [num_classes]: ground-truth pixels with an out-of-range prediction."""
        return self.counts[:, self.num_classes]

    def update(self, pred, gt):
        """Adds one prediction / ground-truth pair (integer arrays of one shape);
        ground truth equal to `ignore_label` is skipped, any other value
        outside [0, num_classes) raises ValueError."""
        pred, gt = np.asarray(pred), np.asarray(gt)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from "
                             f"ground-truth shape {gt.shape}; expected equal shapes")
        n = self.num_classes
        gt = gt.reshape(-1).astype(np.int64)
        pred = pred.reshape(-1).astype(np.int64)
        keep = gt != self.ignore_label
        gt, pred = gt[keep], pred[keep]
        if gt.size and (gt.min() < 0 or gt.max() >= n):
            bad = gt[(gt < 0) | (gt >= n)][0]
            raise ValueError(f"ground truth holds value {int(bad)}; expected "
                             f"0..{n - 1} or {self.ignore_label} (ignore)")
        pred = np.where((pred >= 0) & (pred < n), pred, n)
        self.counts += np.bincount(gt * (n + 1) + pred,
                                   minlength=n * (n + 1)).reshape(n, n + 1)
        return self

    def merge(self, other):
        """Adds the counts of another ConfusionMatrix of the same size."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge a {other.num_classes}-class matrix "
                             f"into a {self.num_classes}-class one")
        self.counts += other.counts
        return self

    def iou(self, class_ids=None):
        """{class id: IoU in [0, 1], or NaN when the class is in neither map};
        `class_ids` as in `resolve_classes`."""
        tp = np.diag(self.confusion)
        # TP + FP + FN: the row sum (with misses) plus the column sum minus TP;
        # ignored ground truth never reaches a row.
        denom = self.counts.sum(axis=1) + self.confusion.sum(axis=0) - tp
        return {k: float(tp[k]) / float(denom[k]) if denom[k] else float("nan")
                for k in resolve_classes(class_ids, self.num_classes)}

    def mean_iou(self, class_ids=None):
        """Mean IoU over `class_ids` (default all; 19, 16 or 13 for
        labels.EVAL_SUBSETS), NaN classes left out; NaN if all are."""
        return mean_of_valid(self.iou(class_ids).values())


def resolve_classes(classes, num_classes=NUM_CLASSES):
    """None -> all classes; 19/16/13 -> labels.EVAL_SUBSETS; else the ids given."""
    if classes is None:
        return tuple(range(num_classes))
    if isinstance(classes, (int, np.integer)):
        choices.check("classes", int(classes), sorted(EVAL_SUBSETS))
        return EVAL_SUBSETS[int(classes)]
    return tuple(int(k) for k in classes)


def mean_of_valid(values):
    """Mean of the non-NaN values (None counts as NaN); NaN if there are none."""
    valid = [float(v) for v in values if v is not None and not np.isnan(v)]
    return sum(valid) / len(valid) if valid else float("nan")
