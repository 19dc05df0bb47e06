"""Fixtures that write tiny fake data sets in the official on-disk layouts.

Use the `fake_datasets` fixture: it returns the FakeDatasets class, whose
static methods write GTA5 (palette label PNGs), SYNTHIA (16-bit 3-channel
label PNGs, class id in channel 0, junk in the others) and Cityscapes
(8-bit labelId PNGs) examples under a root folder.
"""

import os

import numpy as np
import pytest
from PIL import Image


class FakeDatasets:
    """Writers of tiny data sets in the GTA5 / SYNTHIA / Cityscapes layouts."""

    @staticmethod
    def write_rgb(path, height, width, seed=0):
        """Writes a random RGB PNG; returns the uint8 [H, W, 3] array."""
        rgb = np.random.default_rng(seed).integers(
                0, 256, size=(height, width, 3), dtype=np.uint8)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(rgb, mode="RGB").save(path)
        return rgb

    @staticmethod
    def write_label_ids(path, ids, palette=False):
        """Writes 8-bit label ids: mode L, or mode P (GTA5) with a palette
        whose colours are NOT the ids (so reading colours would be wrong)."""
        ids = np.asarray(ids, dtype=np.uint8)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if palette:
            index = np.arange(256)
            colours = np.stack([(index * 37 + 11) % 256, (index * 91 + 5) % 256,
                                255 - index], axis=-1).astype(np.uint8)
            image = Image.fromarray(ids, mode="P")
            image.putpalette(colours.ravel().tolist())
        else:
            image = Image.fromarray(ids, mode="L")
        image.save(path)

    @staticmethod
    def write_synthia_label(path, ids, seed=0):
        """Writes a 16-bit 3-channel PNG: channel 0 = `ids`, others junk."""
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        ids = np.asarray(ids, dtype=np.uint16)
        rng = np.random.default_rng(seed)
        # Junk holds mapped SYNTHIA ids too, so reading the wrong channel fails.
        junk = rng.choice(np.array([1, 2, 3, 7, 8, 40000], np.uint16),
                          size=ids.shape + (2,))
        stacked = np.concatenate([ids[..., None], junk], axis=-1)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(tf.io.encode_png(tf.constant(stacked)).numpy())

    @staticmethod
    def paths(dataset, root, name, split="train"):
        """(image path, label path) of example `name` in `dataset`'s layout.

        Cityscapes names look like "aachen_000000_000019" (city = first part).
        """
        root = os.fspath(root)
        if dataset == "gta5":
            return (os.path.join(root, "images", name + ".png"),
                    os.path.join(root, "labels", name + ".png"))
        if dataset == "synthia":
            return (os.path.join(root, "RGB", name + ".png"),
                    os.path.join(root, "GT", "LABELS", name + ".png"))
        if dataset == "cityscapes":
            city = name.split("_")[0]
            return (os.path.join(root, "leftImg8bit", split, city,
                                 name + "_leftImg8bit.png"),
                    os.path.join(root, "gtFine", split, city,
                                 name + "_gtFine_labelIds.png"))
        raise ValueError(dataset)

    @classmethod
    def write_example(cls, dataset, root, name, ids, split="train",
                      image_size=None, seed=0):
        """Writes one image + label; `image_size` (H, W) defaults to ids' shape.

        Returns (image path, label path, RGB array).
        """
        ids = np.asarray(ids)
        height, width = image_size or ids.shape
        image_path, label_path = cls.paths(dataset, root, name, split)
        rgb = cls.write_rgb(image_path, height, width, seed=seed)
        if dataset == "synthia":
            cls.write_synthia_label(label_path, ids, seed=seed)
        else:
            cls.write_label_ids(label_path, ids, palette=dataset == "gta5")
        return image_path, label_path, rgb

    @classmethod
    def write_dataset(cls, dataset, root, labels, split="train"):
        """Writes {name: label ids} as a data set; returns {name: (img, lbl)}."""
        written = {}
        for seed, (name, ids) in enumerate(sorted(labels.items())):
            image_path, label_path, _ = cls.write_example(
                    dataset, root, name, ids, split=split, seed=seed)
            written[name] = (image_path, label_path)
        return written


@pytest.fixture
def fake_datasets():
    """The FakeDatasets writers."""
    return FakeDatasets
