"""Listing and decoding of GTA5, SYNTHIA and Cityscapes in their official layouts.

The layouts are in `_LAYOUTS`. GTA5 labels are 8-bit palette PNGs of
Cityscapes labelIds, SYNTHIA (RAND-CITYSCAPES) ones 16-bit multi-channel PNGs
with the class id in the first channel. GTA5 and SYNTHIA have no split
folders: split "train" or "all" means every image, and a list file (one
image name per line, relative to the image folder, as the reference code
bases ship them) selects a subset under any split name.

Readers return uint8 RGB [H, W, 3] and uint8 trainIds [H, W] (255 = ignore);
bad files raise DataError naming the file. TensorFlow is imported on first
decode, so that listing and the 8-bit label reader skip its start-up cost.
"""

import dataclasses
import io
import os
import struct

import numpy as np
from PIL import Image

from tf_pixintra import choices
from tf_pixintra import io_utils
from tf_pixintra.data import labels as labels_lib
from tf_pixintra.errors import DataError

# Splits that mean "every image" for the data sets without split folders.
ALL_SPLITS = ("train", "all")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclasses.dataclass(frozen=True)
class Example:
    """One image and its label file (None when it has none).

    `name`: the image file name without its suffix (".png", "_leftImg8bit.png").
    """
    image_path: str
    label_path: str | None
    name: str


@dataclasses.dataclass(frozen=True)
class _Layout:
    """Where one data set keeps its images and labels (relative to the root)."""
    title: str
    image_dir: str  # "{split}" is filled in
    label_dir: str
    description: str
    image_suffix: tuple = (".png",)  # any of these endings
    label_suffix: str = ".png"
    city_folders: bool = False  # images sit one folder deeper (Cityscapes cities)
    has_splits: bool = False


_LAYOUTS = {
    "gta5": _Layout(
        "GTA5", "images", "labels",
        "GTA5 layout: images/*.png and labels/*.png with the same file names"),
    "synthia": _Layout(
        "SYNTHIA", "RGB", os.path.join("GT", "LABELS"),
        "SYNTHIA-RAND-CITYSCAPES layout: RGB/*.png and GT/LABELS/*.png with "
        "the same file names"),
    "cityscapes": _Layout(
        "Cityscapes", os.path.join("leftImg8bit", "{split}"),
        os.path.join("gtFine", "{split}"),
        "Cityscapes layout: leftImg8bit/{split}/{city}/*_leftImg8bit.png and "
        "gtFine/{split}/{city}/*_gtFine_labelIds.png",
        image_suffix=("_leftImg8bit.png",), label_suffix="_gtFine_labelIds.png",
        city_folders=True, has_splits=True),
    # Not a training data set: the export's fidelity check also reads
    # images/ + labels/ whose labels hold trainIds already.
    "trainids": _Layout(
        "trainId", "images", "labels",
        "trainId layout: images/*.png|jpg|jpeg|bmp and labels/*.png (8-bit "
        "trainId PNGs) with the same file stems, or a Cityscapes root",
        image_suffix=(".png", ".jpg", ".jpeg", ".bmp")),
}


def _layout(dataset):
    choices.check("dataset", dataset, tuple(_LAYOUTS))
    return _LAYOUTS[dataset]


def _relative_image_names(layout, image_dir):
    """Relative paths of every image under `image_dir`, sorted."""
    # Hidden files and folders (temporaries, "._" resource forks) are skipped.
    folders = [""]
    if layout.city_folders:
        folders = [d for d in io_utils.listdir(image_dir) if not d.startswith(".")
                   and io_utils.isdir(io_utils.join(image_dir, d))]
    names = []
    for folder in folders:
        path = io_utils.join(image_dir, folder)
        names.extend(os.path.join(folder, f) for f in io_utils.listdir(path)
                     if f.endswith(layout.image_suffix) and not f.startswith(".")
                     and io_utils.isfile(io_utils.join(path, f)))
    return sorted(names)


def _listed_image_names(layout, image_dir, list_file):
    """Relative image paths named in `list_file` (blank lines skipped), checked, sorted."""
    if not io_utils.isfile(list_file):
        raise DataError(f"{list_file}: list file does not exist; expected a "
                        "text file with one image name per line")
    names = set()
    for line_number, line in enumerate(io_utils.read_text(list_file).splitlines(), 1):
        entry = line.strip()
        if not entry:
            continue
        where = f"{list_file}: line {line_number}: {entry!r}"
        if os.path.isabs(entry):
            raise DataError(f"{where}: expected a path relative to "
                            f"{image_dir}, got an absolute path")
        if os.path.normpath(entry).split(os.sep)[0] == os.pardir:
            raise DataError(f"{where}: leaves the image folder {image_dir}; "
                            "expected a path inside it (no leading '..')")
        if not entry.endswith(layout.image_suffix):
            suffixes = " or ".join(map(repr, layout.image_suffix))
            raise DataError(f"{where}: expected an image name ending in "
                            f"{suffixes} ({layout.description})")
        path = io_utils.join(image_dir, entry)
        if not io_utils.isfile(path):
            raise DataError(f"{where}: image {path} does not exist; "
                            f"expected names relative to {image_dir}")
        names.add(os.path.normpath(entry))
    return sorted(names)


def list_examples(dataset, root, split, list_file=None, require_labels=True):
    """Lists the examples of `dataset` under `root`, sorted by image path.

    Args:
      dataset: a key of `_LAYOUTS` ("gta5", "synthia", "cityscapes", "trainids").
      root: the data set root (the folder holding images/, RGB/ or leftImg8bit/).
      split: Cityscapes split folder; see the module docstring for the others.
      list_file: optional list of the images to use ("00001.png" for GTA5,
        "aachen/aachen_000000_000019_leftImg8bit.png" for Cityscapes).
      require_labels: when False a missing label gives `label_path=None`.

    Returns a list of Example. DataError for a missing root or folder, no
    images, an image without its label or a bad list-file entry; ConfigError
    for an unknown data set.
    """
    layout = _layout(dataset)
    root = os.fspath(root)
    if not io_utils.isdir(root):
        problem = "is not a directory" if io_utils.exists(root) else "does not exist"
        raise DataError(f"{root}: data set root {problem}; expected a directory "
                        f"in the {layout.description}")
    if not layout.has_splits and split not in ALL_SPLITS and list_file is None:
        raise DataError(f"{root}: {layout.title} has no split folders; expected "
                        f"split {' or '.join(map(repr, ALL_SPLITS))} (every "
                        f"image) or a list_file, got split {split!r}")
    image_dir = io_utils.join(root, layout.image_dir.format(split=split))
    label_dir = io_utils.join(root, layout.label_dir.format(split=split))
    if not io_utils.isdir(image_dir):
        parent = io_utils.parent(image_dir)
        if layout.has_splits and io_utils.isdir(parent):
            found = sorted(d for d in io_utils.listdir(parent)
                           if io_utils.isdir(io_utils.join(parent, d)))
            raise DataError(f"{image_dir}: no split {split!r} in {parent} "
                            f"(found: {', '.join(found) or 'nothing'}); "
                            f"expected the {layout.description}")
        raise DataError(f"{root}: missing folder {image_dir}; expected the "
                        f"{layout.description}")
    if require_labels and not io_utils.isdir(label_dir):
        raise DataError(f"{root}: missing label folder {label_dir}; expected "
                        f"the {layout.description}")
    if list_file is not None:
        names = _listed_image_names(layout, image_dir, os.fspath(list_file))
        source = f"list file {list_file}"
    else:
        names = _relative_image_names(layout, image_dir)
        source = image_dir
    if not names:
        raise DataError(f"{source}: no images found; expected image files "
                        f"in the {layout.description}")
    examples, missing = [], []
    for relative in names:
        name = os.path.basename(relative)
        stem = name[:-len(next(s for s in layout.image_suffix if name.endswith(s)))]
        image_path = io_utils.join(image_dir, relative)
        label_path = io_utils.join(label_dir, os.path.dirname(relative),
                                   stem + layout.label_suffix)
        if not io_utils.isfile(label_path):
            missing.append((image_path, label_path))
            label_path = None
        examples.append(Example(image_path=image_path, label_path=label_path,
                                name=stem))
    if require_labels and missing:
        image_path, label_path = missing[0]
        raise DataError(f"{label_path}: label file missing for image "
                        f"{image_path} ({len(missing)} of {len(names)} images "
                        f"lack a label); expected the {layout.description}")
    return examples


def _read_bytes(path, what):
    """The bytes of file `path`; DataError naming it when it cannot be read."""
    try:
        return io_utils.read_bytes(path)
    except FileNotFoundError as e:
        raise DataError(f"{path}: {what} file does not exist") from e
    except OSError as e:
        raise DataError(f"{path}: cannot read {what} ({e.strerror})") from e


def decode_image(contents):
    """Encoded PNG/JPEG/BMP/GIF bytes -> uint8 RGB [H, W, 3] (TF ops).

    The project's one image decoder (the training streams and `read_image`),
    so every path sees the same pixels. Grey, palette and RGBA images become
    RGB (alpha dropped); 16-bit images keep their high byte (value // 256).
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    image = tf.io.decode_image(contents, channels=3, dtype=tf.uint8,
                               expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def read_image(path):
    """uint8 RGB [H, W, 3] of an image file; DataError if missing, empty or truncated."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    path = os.fspath(path)
    data = _read_bytes(path, "image")
    if not data:
        raise DataError(f"{path}: cannot decode image (empty file, 0 bytes); "
                        "expected a complete, readable image file")
    try:
        return decode_image(data).numpy()
    except tf.errors.OpError as e:
        # The first line of TF's message without its "{{function_node ...}}" prefix.
        message = getattr(e, "message", str(e)).strip().splitlines()[0]
        if message.startswith("{{function_node"):
            message = message.split("}}", 1)[-1].strip()
        raise DataError(f"{path}: cannot decode image ("
                        f"{message.replace(' [Op:DecodeImage]', '')}, "
                        f"{len(data)} bytes); expected a complete, readable "
                        "image file") from None


def png_header(data, where, expected):
    """(height, width, bit depth) from the IHDR chunk of PNG bytes `data`.

    DataError starting with `where` (a file or record name) when the bytes
    are no PNG; `expected` says what should have been there.
    """
    if len(data) < 26 or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise DataError(f"{where}: not a PNG (first bytes {bytes(data[:8])!r}, "
                        f"no IHDR chunk after them); expected {expected}")
    width, height = struct.unpack(">II", data[16:24])
    return height, width, data[24]


def read_label_ids(path, dataset):
    """Raw label ids [H, W]: uint8 (GTA5, Cityscapes, trainids) or uint16 (SYNTHIA)."""
    path = os.fspath(path)
    _layout(dataset)
    if dataset != "synthia":
        data = _read_bytes(path, "label")
        try:
            image = Image.open(io.BytesIO(data))
            image.load()  # decodes fully: catches truncation
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise DataError(f"{path}: cannot decode label ({e}); expected a "
                            "complete, readable image file") from e
        if image.mode not in ("L", "P"):
            raise DataError(f"{path}: label PNG has mode {image.mode}; expected "
                            "an 8-bit single-channel label-id PNG (mode L, or P "
                            "whose palette indices are the ids)")
        # For mode P the array holds the palette indices, which are the ids.
        return np.asarray(image, dtype=np.uint8)
    data = _read_bytes(path, "label")
    _, _, bit_depth = png_header(data, path, "a 16-bit SYNTHIA label PNG")
    if bit_depth != 16:
        raise DataError(f"{path}: SYNTHIA label has bit depth {bit_depth}; "
                        "expected a 16-bit PNG with the class id in the first "
                        f"channel, found {bit_depth}-bit")
    # Pillow cannot read 16-bit multi-channel PNGs reliably.
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    try:
        return tf.io.decode_png(data, channels=0, dtype=tf.uint16).numpy()[:, :, 0]
    except tf.errors.OpError as e:
        message = getattr(e, "message", str(e)).strip()
        raise DataError(f"{path}: cannot decode 16-bit SYNTHIA label "
                        f"({message}); expected a complete PNG file") from e


def read_label(path, dataset):
    """Reads a label file of `dataset` as uint8 trainIds [H, W] (255: ignore)."""
    ids = read_label_ids(path, dataset)
    return ids if dataset == "trainids" else labels_lib.to_train_ids(ids, dataset)


def check_label_size(example, label_shape, image_shape):
    """DataError naming the label of `example` if its [H, W] is not the image's."""
    (height, width), (label_h, label_w) = image_shape[:2], label_shape[:2]
    if (label_h, label_w) != (height, width):
        raise DataError(
            f"{example.label_path}: label size {label_w}x{label_h} (WxH) "
            f"differs from the size {width}x{height} of image "
            f"{example.image_path}; expected equal sizes")


def read_example(example, dataset):
    """(uint8 RGB [H, W, 3], uint8 trainIds [H, W] or None); DataError if sizes differ."""
    image = read_image(example.image_path)
    if example.label_path is None:
        return image, None
    label = read_label(example.label_path, dataset)
    check_label_size(example, label.shape, image.shape)
    return image, label
