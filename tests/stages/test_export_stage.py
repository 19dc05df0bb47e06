"""The export stage calibrates int8 on the same images as the export CLI."""

import types

import numpy as np
from PIL import Image

from tf_pixintra import export
from tf_pixintra.data.datasets import Example
from tf_pixintra.stages import export_stage


def test_spread_rounds_to_nearest_and_keeps_all_when_few():
    # linspace(0, 399, 16) = 0, 26.6, 53.2, ...: nearest, not floor (26 -> 27).
    picks = export.spread(list(range(400)), 16)
    assert picks[:3] == [0, 27, 53] and picks[-1] == 399 and len(picks) == 16
    assert export.spread([1, 2], 5) == [1, 2]
    assert export.spread([1, 2, 3], 0) == [1, 2, 3]


def test_stage_reads_the_images_the_cli_would_pick(tmp_path):
    examples = []
    for i in range(30):
        path = tmp_path / f"img_{i:02d}.png"
        Image.fromarray(np.full((2, 3, 3), i, np.uint8)).save(path)
        examples.append(Example(image_path=str(path), label_path=None, name=path.stem))
    ctx = types.SimpleNamespace(sources=types.SimpleNamespace(target_train=examples))
    images = export_stage.representative(ctx, 4)
    # Pixel value = index: linspace(0, 29, 4) = 0, 9.67, 19.33, 29 -> 0, 10, 19, 29.
    assert [int(im[0, 0, 0]) for im in images] == [0, 10, 19, 29]
    assert [int(im[0, 0, 0]) for im in images] == [
        int(e.image_path[-6:-4]) for e in export.spread(examples, 4)]
    assert export_stage.representative(ctx, 0) == []
