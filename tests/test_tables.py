"""Tests of tf_pixintra.tables: the paper's per-class table layout."""

import pytest

from tf_pixintra.data.labels import CLASS_NAMES
from tf_pixintra.tables import per_class_table


def test_19_class_table_by_hand():
    ious = {name: float(i) for i, name in enumerate(CLASS_NAMES)}
    ious["train"] = None  # Absent: shown as "-" and left out of the mean.
    table = per_class_table([("INTER", ious), ("ids", {0: 91.24, 1: 47.56})], 19)
    lines = table.splitlines()
    assert lines[0] == ("| Method | road | sidewalk | build. | wall | fence | pole | "
                        "light | sign | veget. | terrain | sky | person | rider | car | "
                        "truck | bus | train | motor. | bike | mIoU |")
    assert lines[1] == "|---|" + "---:|" * 20
    # Mean of 0..18 without 16: (171 - 16) / 18.
    assert lines[2] == ("| INTER | 0.0 | 1.0 | 2.0 | 3.0 | 4.0 | 5.0 | 6.0 | 7.0 | 8.0 | "
                        "9.0 | 10.0 | 11.0 | 12.0 | 13.0 | 14.0 | 15.0 | - | 17.0 | "
                        "18.0 | 8.6 |")
    assert lines[3] == "| ids | 91.2 | 47.6 |" + " - |" * 17 + " 69.4 |"
    assert len(lines) == 4


def test_13_and_16_class_tables():
    ious = {name: 10.0 for name in CLASS_NAMES}
    ious["wall"] = 40.0
    t13 = per_class_table([("m", ious)], 13).splitlines()
    assert t13[0] == ("| Method | road | sidewalk | build. | light | sign | veget. | sky | "
                      "person | rider | car | bus | motor. | bike | mIoU |")
    assert t13[2] == "| m |" + " 10.0 |" * 13 + " 10.0 |"
    t16 = per_class_table([("m", ious)], 16).splitlines()
    assert t16[0].split(" | ")[4] == "wall"
    assert t16[0].endswith("| mIoU | mIoU* |")
    # mIoU over 16: (15 * 10 + 40) / 16 = 11.875; mIoU* over 13: 10.
    assert t16[2].endswith("| 11.9 | 10.0 |")


def test_bad_class_count():
    with pytest.raises(ValueError, match="classes"):
        per_class_table([], 18)
