"""Pictures of the pixel-level subdomains (paper Fig. 2): Pillow only.

A row per target image, under a strip of names: image | pseudo label
(Cityscapes palette, ignore = black) | hard mask M (easy = black, hard =
white, as in Fig. 2) | Z (Eq. 7) as a heat map on a fixed [0, 1] scale.
"""

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tf_pixintra import io_utils
from tf_pixintra.data.labels import colorize

PANELS = ("image", "pseudo label", "hard mask M", "Z (0..1)")
GAP = 4                 # pixels between panels
TITLE_HEIGHT = 14       # pixels of the names strip
BACKGROUND = (32, 32, 32)
TEXT = (235, 235, 235)
# Heat-map anchors (dark blue -> purple -> orange -> light yellow) at
# Z = 0, 1/3, 2/3, 1; linear in between.
_HEAT = np.array([(0, 0, 60), (130, 30, 130), (240, 110, 30), (255, 250, 180)], np.float64)


def heat_map(z):
    """float [H, W] in [0, 1] (clipped) -> uint8 RGB [H, W, 3]."""
    z = np.clip(np.nan_to_num(np.asarray(z, np.float64)), 0.0, 1.0)
    pos = z * (len(_HEAT) - 1)
    lo = np.minimum(np.floor(pos).astype(int), len(_HEAT) - 2)
    frac = (pos - lo)[..., None]
    return np.round(_HEAT[lo] * (1.0 - frac) + _HEAT[lo + 1] * frac).astype(np.uint8)


def mask_image(hard_mask):
    """M [H, W] (1 = hard) -> uint8 RGB: hard white, easy black."""
    m = (np.asarray(hard_mask) > 0).astype(np.uint8) * 255
    return np.repeat(m[..., None], 3, axis=-1)


def panels(image, pseudo_label, hard_mask, z):
    """The four RGB panels of one image, in PANELS order."""
    image = np.asarray(image, np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    shape = image.shape[:2]
    for name, array in (("pseudo_label", pseudo_label), ("hard_mask", hard_mask), ("z", z)):
        if np.shape(array)[:2] != shape:
            raise ValueError(f"{name} has shape {np.shape(array)}; the image is {shape}")
    return [image[..., :3], colorize(pseudo_label), mask_image(hard_mask), heat_map(z)]


def panel_origin(index, width):
    """(x, y) of panel `index`'s top-left pixel in a row of panels."""
    return index * (width + GAP), TITLE_HEIGHT


def row_image(images, titles):
    """Equal-size RGB arrays side by side under their titles -> PIL image."""
    height, width = images[0].shape[:2]
    canvas = Image.new("RGB", (len(images) * width + (len(images) - 1) * GAP,
                               height + TITLE_HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for i, (array, title) in enumerate(zip(images, titles)):
        x, y = panel_origin(i, width)
        canvas.paste(Image.fromarray(array), (x, y))
        draw.text((x + 2, 1), title, fill=TEXT, font=font)
    return canvas


def preview(image, pseudo_label, hard_mask, z):
    """The Fig. 2-style row of one target image (PIL image)."""
    return row_image(panels(image, pseudo_label, hard_mask, z), PANELS)


def save_png(picture, path):
    """Writes a PIL image as PNG, atomically."""
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    io_utils.write_bytes(path, buffer.getvalue())
