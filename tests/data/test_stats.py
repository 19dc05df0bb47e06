"""Tests for tf_pixintra.data.stats: counts, table, and the CLI."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tf_pixintra.data import stats
from tf_pixintra.errors import DataError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))

# labelIds -> trainIds by hand: 7->0, 8->1, 11->2, 33->18, 26->13, 24->11,
# 23->10; 0, 1, 6, 34, 255 -> ignore.
CS_A = np.array([[7, 8, 11, 0],
                 [33, 26, 255, 34],
                 [24, 1, 23, 6]], dtype=np.uint8)
CS_B = np.array([[7, 7],
                 [7, 0]], dtype=np.uint8)
CS_EXPECTED = {
    "num_images": 2,
    # trainId:   0  1  2  3  4  5  6  7  8  9 10 11 12 13 14 15 16 17 18
    "class_pixels": [4, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 1, 0, 0, 0, 0, 1],
    "ignored_pixels": 6,
}


def test_compute_stats_cityscapes(tmp_path, fake_datasets):
    fake_datasets.write_dataset("cityscapes", tmp_path, {
            "aachen_000000_000019": CS_A, "bremen_000000_000019": CS_B})
    assert stats.compute_stats("cityscapes", tmp_path, "train") == CS_EXPECTED
    list_file = tmp_path / "list.txt"
    list_file.write_text("bremen/bremen_000000_000019_leftImg8bit.png\n")
    only_b = stats.compute_stats("cityscapes", tmp_path, "train",
                                 list_file=list_file)
    assert only_b == {"num_images": 1, "class_pixels": [3] + [0] * 18,
                      "ignored_pixels": 1}


def test_compute_stats_synthia_16bit(tmp_path, fake_datasets):
    # SYNTHIA ids by hand: 3->0, 4->1, 2->2, 11->18, 21->3, 1->10, 15->6;
    # 0, 13, 22, 1000, 65535 -> ignore.
    ids = np.array([[3, 4, 2, 0],
                    [11, 21, 1000, 13],
                    [1, 15, 65535, 22]], dtype=np.uint16)
    fake_datasets.write_dataset("synthia", tmp_path, {"0000001": ids})
    result = stats.compute_stats("synthia", tmp_path, "all")
    expected = [0] * 19
    for train_id in (0, 1, 2, 18, 3, 10, 6):
        expected[train_id] = 1
    assert result == {"num_images": 1, "class_pixels": expected,
                      "ignored_pixels": 5}


def test_compute_stats_bad_input(tmp_path):
    with pytest.raises(DataError, match="does not exist") as info:
        stats.compute_stats("gta5", tmp_path / "nowhere", "train")
    assert str(tmp_path / "nowhere") in str(info.value)


def test_format_table():
    table = stats.format_table(CS_EXPECTED)
    lines = table.splitlines()
    assert lines[0] == "images: 2"
    road = next(line for line in lines if line.startswith("road"))
    assert road.split()[-2:] == ["4", "25.000"]  # 4 of 16 pixels
    ignored = next(line for line in lines if line.startswith("(ignored)"))
    assert ignored.split()[-2:] == ["6", "37.500"]
    assert lines[-1].split()[-2:] == ["16", "100.000"]


def _run_cli(*args):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep
               + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
            [sys.executable, "-m", "tf_pixintra.data.stats", *args],
            capture_output=True, text=True, env=env, timeout=120, check=False)


def test_cli_writes_json_and_fails_cleanly(tmp_path, fake_datasets):
    root = tmp_path / "gta5"
    fake_datasets.write_dataset("gta5", root, {
            "00001": CS_A, "00002": CS_B, "00003": CS_B})
    list_file = tmp_path / "list.txt"
    list_file.write_text("00001.png\n00002.png\n")
    out = tmp_path / "out" / "stats.json"
    done = _run_cli("--dataset=gta5", f"--root={root}", "--split=train",
                    f"--list_file={list_file}", f"--json={out}")
    assert done.returncode == 0, done.stderr
    with open(out, encoding="utf-8") as f:
        assert json.load(f) == CS_EXPECTED
    assert os.listdir(out.parent) == ["stats.json"]  # no temporary left over
    assert "sidewalk" in done.stdout and "images: 2" in done.stdout

    bad_root = tmp_path / "missing_root"
    done = _run_cli("--dataset=gta5", f"--root={bad_root}",
                    f"--json={tmp_path / 'bad.json'}")
    assert done.returncode != 0
    assert str(bad_root) in done.stderr and "does not exist" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "bad.json").exists()
