"""Label tables: Cityscapes / GTA5 / SYNTHIA ids -> the 19 Cityscapes trainIds.

GTA5 labels hold Cityscapes labelIds. Ids without an entry map to IGNORE_LABEL.
"""

import numpy as np

from tf_pixintra import choices

NUM_CLASSES = 19
IGNORE_LABEL = 255

CLASS_NAMES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
    "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
    "truck", "bus", "train", "motorcycle", "bicycle",
)

# Cityscapes colour palette in trainId order (RGB).
PALETTE = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156),
    (190, 153, 153), (153, 153, 153), (250, 170, 30), (220, 220, 0),
    (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100),
    (0, 0, 230), (119, 11, 32),
)

# Cityscapes labelId -> trainId (also used for GTA5 labels).
CITYSCAPES_ID_TO_TRAINID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}
# trainId -> Cityscapes labelId (for writing official label-id PNGs).
TRAINID_TO_CITYSCAPES_ID = {v: k for k, v in CITYSCAPES_ID_TO_TRAINID.items()}

# SYNTHIA-RAND-CITYSCAPES class id -> trainId (no terrain, truck, train).
SYNTHIA_ID_TO_TRAINID = {
    3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 1: 10, 10: 11,
    17: 12, 8: 13, 19: 15, 12: 17, 11: 18,
}

# Every id a label file may hold (with a trainId or not): Cityscapes' ids
# 0-33 and 255 (its licence plate, id -1, as uint8); SYNTHIA's classes 0-22.
KNOWN_LABEL_IDS = {
    "cityscapes": frozenset(range(34)) | {255},
    "gta5": frozenset(range(34)) | {255},
    "synthia": frozenset(range(23)),
}

# Evaluation subsets (trainIds) for SYNTHIA -> Cityscapes.
TRAINIDS_16 = (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18)
TRAINIDS_13 = (0, 1, 2, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18)
EVAL_SUBSETS = {19: tuple(range(NUM_CLASSES)), 16: TRAINIDS_16, 13: TRAINIDS_13}


def lookup_table(id_to_trainid, size=256):
    """A dense uint8 lookup table of `size` entries; unmapped ids -> 255."""
    table = np.full((size,), IGNORE_LABEL, dtype=np.uint8)
    for label_id, train_id in id_to_trainid.items():
        table[label_id] = train_id
    return table


CITYSCAPES_LUT = lookup_table(CITYSCAPES_ID_TO_TRAINID, 256)
SYNTHIA_LUT = lookup_table(SYNTHIA_ID_TO_TRAINID, 65536)
TRAINID_TO_ID_LUT = lookup_table(TRAINID_TO_CITYSCAPES_ID, 256)
TRAINID_TO_ID_LUT[IGNORE_LABEL] = 0  # "unlabeled" in Cityscapes labelIds.


def to_train_ids(label_ids, dataset):
    """Maps an integer label-id array of `dataset` to uint8 trainIds."""
    choices.check("dataset", dataset, choices.DATASETS)
    label_ids = np.asarray(label_ids)
    lut = SYNTHIA_LUT if dataset == "synthia" else CITYSCAPES_LUT
    if label_ids.size and int(label_ids.max()) >= lut.shape[0]:
        return np.where(label_ids < lut.shape[0],
                        lut[np.minimum(label_ids, lut.shape[0] - 1)],
                        IGNORE_LABEL).astype(np.uint8)
    return lut[label_ids]


def train_ids_to_label_ids(train_ids):
    """Maps uint8 trainIds (255 = ignore) to Cityscapes labelIds."""
    return TRAINID_TO_ID_LUT[np.asarray(train_ids, dtype=np.uint8)]


def colorize(train_ids):
    """RGB uint8 image of a trainId map with the Cityscapes palette (ignore: black)."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[:NUM_CLASSES] = np.asarray(PALETTE, dtype=np.uint8)
    return lut[np.asarray(train_ids, dtype=np.uint8)]
