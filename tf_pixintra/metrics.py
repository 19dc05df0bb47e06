"""Confusion matrix and IoU with the rules of the official Cityscapes evaluator.

The official evaluator (cityscapesscripts, evalPixelLevelSemanticLabeling)
accumulates a confusion matrix over labelIds and scores every class that is
not "ignoreInEval". Mapped to the 19 trainIds its rules are:

- Ground-truth pixels of an ignored class (trainId 255) are left out
  entirely: they are neither true, false positive nor false negative.
- A ground-truth pixel whose prediction is not one of the 19 evaluated
  classes (an ignoreInEval labelId such as "unlabeled", i.e. trainId 255 after
  mapping) is a false negative of its ground-truth class and a false positive
  of nothing. This module counts predictions outside [0, num_classes) (255,
  negative or too large values) the same way. (The official script would
  crash on a labelId above 33; here such a value is simply a miss.)
- IoU_k = TP / (TP + FP + FN). A class with only false positives
  (TP + FN = 0, FP > 0) scores 0. A class absent from both the prediction and
  the ground truth (TP + FP + FN = 0) is NaN and left out of the mean.

The SYNTHIA -> Cityscapes protocols (16 and 13 classes, labels.EVAL_SUBSETS)
follow the SYNTHIA papers: the full 19-class prediction is scored against the
19-class ground truth, and the mean is taken over the subset's classes only.
So a road pixel predicted as terrain (a class outside both subsets) is still a
false negative of road, and a terrain ground-truth pixel predicted as road is
still a false positive of road.
"""

import numpy as np

from tf_pixintra.data.labels import EVAL_SUBSETS, IGNORE_LABEL, NUM_CLASSES


class ConfusionMatrix:
    """Accumulates ground truth x prediction pixel counts (int64).

    Rows are ground-truth classes 0..num_classes-1; columns are predicted
    classes 0..num_classes-1 plus one last column for predictions outside
    that range ("miss": counted as a false negative only).
    """

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
        """Adds one prediction / ground-truth pair (integer arrays of one shape).

        Ground-truth pixels equal to `ignore_label` are skipped; any other
        ground-truth value outside [0, num_classes) raises ValueError.
        """
        pred = np.asarray(pred)
        gt = np.asarray(gt)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from "
                             f"ground-truth shape {gt.shape}; expected equal shapes")
        n = self.num_classes
        gt = gt.reshape(-1).astype(np.int64)
        pred = pred.reshape(-1).astype(np.int64)
        keep = gt != self.ignore_label
        gt = gt[keep]
        pred = pred[keep]
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

    def reset(self):
        """Sets every count to zero."""
        self.counts[...] = 0
        return self

    def iou(self, class_ids=None):
        """{class id: IoU in [0, 1], or NaN when the class is in neither map}."""
        if class_ids is None:
            class_ids = range(self.num_classes)
        cm = self.confusion
        tp = np.diag(cm)
        fn = self.counts.sum(axis=1) - tp  # Row sum includes the miss column.
        fp = cm.sum(axis=0) - tp  # Ignored ground truth never reaches a row.
        result = {}
        for k in class_ids:
            k = int(k)
            denom = tp[k] + fp[k] + fn[k]
            result[k] = float(tp[k]) / float(denom) if denom else float("nan")
        return result

    def mean_iou(self, class_ids=None):
        """Mean IoU over `class_ids` (default all), NaN classes left out.

        `class_ids` may also be 19, 16 or 13 for labels.EVAL_SUBSETS. Returns
        NaN when every class is NaN.
        """
        return mean_of_valid(self.iou(resolve_classes(class_ids, self.num_classes)).values())


def resolve_classes(classes, num_classes=NUM_CLASSES):
    """None -> all classes; 19/16/13 -> labels.EVAL_SUBSETS; else the ids given."""
    if classes is None:
        return tuple(range(num_classes))
    if isinstance(classes, (int, np.integer)):
        if int(classes) not in EVAL_SUBSETS:
            raise ValueError(f"unknown class subset {classes}; expected one of "
                             f"{sorted(EVAL_SUBSETS)}")
        return EVAL_SUBSETS[int(classes)]
    return tuple(int(k) for k in classes)


def mean_of_valid(values):
    """Mean of the non-NaN values (None counts as NaN); NaN if there are none."""
    valid = [float(v) for v in values if v is not None and not np.isnan(v)]
    return sum(valid) / len(valid) if valid else float("nan")
