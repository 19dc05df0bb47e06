"""tf_pixintra.previews: the Fig. 2 panel layout on a hand-made example."""

import numpy as np
import pytest

from tf_pixintra import previews
from tf_pixintra.data.labels import PALETTE


def test_heat_map_anchors_and_midpoints():
    z = np.array([[0.0, 1.0 / 3.0, 0.5, 1.0, -2.0, 7.0, np.nan]])
    rgb = previews.heat_map(z)
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 7, 3)
    assert rgb[0, 0].tolist() == [0, 0, 60]          # Z = 0
    assert rgb[0, 1].tolist() == [130, 30, 130]      # second anchor
    assert rgb[0, 2].tolist() == [185, 70, 80]       # halfway 2nd -> 3rd
    assert rgb[0, 3].tolist() == [255, 250, 180]     # Z = 1
    assert rgb[0, 4].tolist() == [0, 0, 60]          # clipped below
    assert rgb[0, 5].tolist() == [255, 250, 180]     # clipped above
    assert rgb[0, 6].tolist() == [0, 0, 60]          # NaN -> 0


def test_preview_panel_order_and_pixels(tmp_path):
    h, w = 6, 10
    image = np.zeros((h, w, 3), np.uint8)
    image[..., 1] = 77
    label = np.full((h, w), 255, np.uint8)           # ignore -> black
    label[:, :4] = 0                                  # road
    label[:, 4:6] = 18                                # bicycle
    hard = np.zeros((h, w), np.uint8)
    hard[3:] = 1                                      # bottom half hard
    z = np.zeros((h, w), np.float32)
    z[3:] = 1.0
    path = tmp_path / "p.png"
    previews.save_png(previews.preview(image, label, hard, z), str(path))
    from PIL import Image  # pylint: disable=import-outside-toplevel
    picture = np.asarray(Image.open(path).convert("RGB"))
    gap, top = previews.GAP, previews.TITLE_HEIGHT
    assert picture.shape == (h + top, 4 * w + 3 * gap, 3)
    panel = [picture[top:, i * (w + gap):i * (w + gap) + w] for i in range(4)]
    assert (panel[0] == [0, 77, 0]).all()                         # image
    assert (panel[1][:, :4] == PALETTE[0]).all()                  # label
    assert (panel[1][:, 4:6] == PALETTE[18]).all()
    assert (panel[1][:, 6:] == 0).all()
    assert (panel[2][:3] == 0).all() and (panel[2][3:] == 255).all()  # M
    assert (panel[3][:3] == [0, 0, 60]).all()                     # Z = 0
    assert (panel[3][3:] == [255, 250, 180]).all()                # Z = 1
    # Gaps and the title strip are background; titles drawn in the strip.
    assert (picture[top:, w:w + gap] == previews.BACKGROUND).all()
    strip = picture[:top]
    assert (strip != previews.BACKGROUND).any(axis=-1).sum() > 20
    assert not list(tmp_path.glob(".*.tmp"))                       # atomic


def test_preview_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="hard_mask has shape"):
        previews.preview(np.zeros((4, 4, 3), np.uint8),
                         np.zeros((4, 4), np.uint8),
                         np.zeros((4, 5), np.uint8), np.zeros((4, 4)))
