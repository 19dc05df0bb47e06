"""tf.data input pipelines: decode -> resize -> scale/crop/flip -> Caffe BGR.

Maps run with `deterministic=True` and all randomness is stateless (epoch e's
file order is seeded by (seed, e), the n-th element's augmentation by
(seed, n)), so the same arguments give the same batches bit for bit, whatever
the thread count or global TF seed. `batch_size` is global (the trainer
distributes the dataset); training streams drop the last partial batch.

Padded pixels (a crop larger than the scaled image) get hard mask and pseudo
label 255 (`losses.PAD_MASK`), which keeps them out of Eq. 5, 6 and 8
(`losses.hard_mask_and_valid`); a pad of 0 would make them easy pixels. Z is
resampled with nearest neighbour: Eq. 7 defines Z = 0 exactly where M = 0 and
the CTS losses (Eq. 8) use Z and M together, which bilinear blending across
the easy/hard border would break.
"""

import numbers
import os

import numpy as np
import tensorflow as tf

from tf_pixintra import choices
from tf_pixintra.data import datasets
from tf_pixintra.data import labels
from tf_pixintra.data import tfrecords
from tf_pixintra.errors import ConfigError
from tf_pixintra.models.preprocessing import caffe_preprocess

NUM_PARALLEL_CALLS = tf.data.AUTOTUNE
DETERMINISTIC = True

# Per-pixel key -> (resize method, pad value). The image is padded after the
# Caffe preprocessing (0: the mean colour).
PIXEL_KINDS = {
    "image": ("bilinear", 0.0),
    "label": ("nearest", labels.IGNORE_LABEL),
    "pseudo_label": ("nearest", labels.IGNORE_LABEL),
    "hard_mask": ("nearest", 255),  # losses.PAD_MASK: no pixel
    "z": ("nearest", 0.0),
}

# Stream tags folded into the user's seed so the shuffles and the
# augmentations draw from different random streams.
_SHUFFLE_STREAM = 1
_AUGMENT_STREAM = 2
_WINDOW_STREAM = 3

# Functions given to tf.data are plain TF code (explicit tf.cond/while_loop):
# skipping AutoGraph's source conversion makes building a pipeline faster.
_no_autograph = tf.autograph.experimental.do_not_convert


def load_label(path, label_format):
    """Label file `path` (string tensor) -> uint8 trainIds [H, W] (255: ignore).

    Read by the project's one label reader, `datasets.read_label` (pillow
    returns the palette indices of GTA5's labels, which TensorFlow's PNG
    decoder expands to colours), inside tf.numpy_function. A bad file fails
    with InvalidArgumentError carrying the reader's message.
    """
    choices.check("label_format", label_format, choices.DATASETS)
    label = tf.numpy_function(
            # `p`: bytes in a graph, a 0-d array when called eagerly.
            lambda p: datasets.read_label(os.fsdecode(np.asarray(p).item()), label_format),
            [path], tf.uint8, stateful=False)
    label.set_shape([None, None])
    return label


def _kind(key, value):
    if key in PIXEL_KINDS:
        return PIXEL_KINDS[key]
    if value.shape.rank is not None and value.shape.rank >= 2:
        raise ValueError(f"per-pixel feature {key!r} has no resampling rule; "
                         f"expected one of {sorted(PIXEL_KINDS)}")
    return None  # Scalars (names, sizes) pass through.


def _resize_map(key, value, size):
    """One map resized with its kind's method; a no-op if already `size`."""
    if key == "image":
        value = tf.cast(value, tf.float32)
    x = value if value.shape.rank == 3 else value[..., tf.newaxis]
    same = tf.reduce_all(tf.equal(tf.shape(x)[:2], size))
    x = tf.cond(same, lambda: x,
                lambda: tf.image.resize(x, size, method=PIXEL_KINDS[key][0]))
    if isinstance(size, (tuple, list)):
        x.set_shape(list(size) + [x.shape[-1]])
    return x if value.shape.rank == 3 else x[..., 0]


def resize(features, size):
    """Per-pixel maps resized to `size` = (H, W) (None: as is); the image as float32."""
    if size is None:
        return dict(features)
    return {key: _resize_map(key, value, size) if _kind(key, value) else value
            for key, value in features.items()}


def augment(features, crop_size=None, scale_range=None, flip=False, seed=(0, 0)):
    """Random scale, crop and horizontal flip, identical for every map.

    Args:
      features: "image" float32 [H, W, 3] (Caffe-preprocessed) and other
        PIXEL_KINDS maps [H, W]; other keys pass through.
      crop_size: (h, w) or None; smaller maps are padded at the bottom/right.
      scale_range: (lo, hi) or None: resize by a factor drawn from U[lo, hi].
      flip: flip left-right with probability 1/2.
      seed: stateless seed, int [2].

    Returns a new dict with the same keys.
    """
    features = dict(features)
    pixel_keys = [k for k, v in features.items() if _kind(k, v)]
    if not pixel_keys:
        return features
    seeds = tf.random.experimental.stateless_split(
            tf.cast(tf.convert_to_tensor(seed), tf.int64), num=4)
    shape = tf.shape(features[pixel_keys[0]])[:2]
    if scale_range is not None:
        scale = tf.random.stateless_uniform([], seeds[0], *scale_range)
        shape = tf.maximum(
                tf.cast(tf.round(tf.cast(shape, tf.float32) * scale), tf.int32), 1)
        for key in pixel_keys:
            features[key] = _resize_map(key, features[key], shape)
    if crop_size is not None:
        ch, cw = crop_size
        pad_h = tf.maximum(ch - shape[0], 0)
        pad_w = tf.maximum(cw - shape[1], 0)
        top = tf.random.stateless_uniform([], seeds[1], 0, shape[0] + pad_h - ch + 1,
                                          dtype=tf.int32)
        left = tf.random.stateless_uniform([], seeds[2], 0, shape[1] + pad_w - cw + 1,
                                           dtype=tf.int32)
        for key in pixel_keys:
            value = features[key]
            extra = [[0, 0]] * (value.shape.rank - 2)
            value = tf.pad(value, [[0, pad_h], [0, pad_w]] + extra,
                           constant_values=tf.cast(PIXEL_KINDS[key][1], value.dtype))
            value = value[top:top + ch, left:left + cw]
            value.set_shape([ch, cw] + value.shape.as_list()[2:])
            features[key] = value
    if flip:
        do_flip = tf.random.stateless_uniform([], seeds[3]) < 0.5
        for key in pixel_keys:
            features[key] = tf.cond(do_flip, lambda v=features[key]: tf.reverse(v, [1]),
                                    lambda v=features[key]: v)
    return features


def _check_pair(name, value):
    """(int, int) or None; ConfigError unless two positive integers."""
    if value is None:
        return None
    if (len(value) != 2 or
            not all(isinstance(v, numbers.Integral) and v > 0 for v in value)):
        raise ConfigError(f"{name} {value!r}; expected (height, width), positive ints")
    return int(value[0]), int(value[1])


def _check_args(size, crop_size, scale_range, batch_size):
    """Validated (size, crop_size) as int pairs or None."""
    size, crop_size = _check_pair("size", size), _check_pair("crop_size", crop_size)
    if scale_range is not None and (
            len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1]):
        raise ConfigError(f"scale_range {scale_range!r}; expected (lo, hi) "
                          "with 0 < lo <= hi")
    if not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ConfigError(f"batch_size {batch_size!r}; expected a positive int")
    return size, crop_size


def _epoch_order(num_items, seed, shuffle, epoch):
    """Item indices of one epoch: a stateless permutation seeded by (seed, epoch)."""
    order = tf.range(num_items, dtype=tf.int64)
    if shuffle:
        base = tf.constant([seed, _SHUFFLE_STREAM], tf.int64)
        order = tf.random.experimental.stateless_shuffle(
                order, seed=tf.random.experimental.stateless_fold_in(base, epoch))
    return tf.data.Dataset.from_tensor_slices(order)


def _epochs(repeat):
    return tf.data.Dataset.counter() if repeat else tf.data.Dataset.range(1)


def _stream(items, load, size, crop_size, scale_range, flip, batch_size, seed):
    """Batches of `load(item)` resized, Caffe-preprocessed and `augment`ed,
    the n-th element seeded by (seed, n)."""
    base = tf.constant([seed, _AUGMENT_STREAM], tf.int64)

    @_no_autograph
    def element(position, item):
        features = resize(load(item), size)  # Before the BGR/mean pass: less work.
        features["image"] = caffe_preprocess(features["image"])
        return augment(features, crop_size, scale_range, flip,
                       tf.random.experimental.stateless_fold_in(base, position))

    options = tf.data.Options()
    options.deterministic = DETERMINISTIC
    # Every worker reads the file list and keeps its share of the elements;
    # works for any number of files or shards.
    options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
    return (items.enumerate()
            .map(element, num_parallel_calls=NUM_PARALLEL_CALLS,
                 deterministic=DETERMINISTIC)
            .batch(batch_size, drop_remainder=True)
            .prefetch(tf.data.AUTOTUNE).with_options(options))


def _file_stream(paths, load, size, crop_size, scale_range, flip, batch_size, seed,
                 shuffle, repeat):
    """Shared body of source_dataset and target_dataset; `paths`: {key: files}."""
    columns = {}
    for key, files in paths.items():
        files = [os.fspath(f) for f in files]
        if not files:
            raise ConfigError(f"{key}_paths is empty; expected at least one file")
        columns[key] = tf.constant(files, tf.string)
    size, crop_size = _check_args(size, crop_size, scale_range, batch_size)
    num_items = int(columns["image"].shape[0])
    items = _epochs(repeat).flat_map(
            _no_autograph(lambda e: _epoch_order(num_items, seed, shuffle, e)))

    def row(i):
        return load({key: column[i] for key, column in columns.items()})

    return _stream(items, row, size, crop_size, scale_range, flip, batch_size, seed)


def _load_image(path):
    return datasets.decode_image(tf.io.read_file(path))


def source_dataset(image_paths, label_paths, label_format, size, crop_size=None,
                   scale_range=None, flip=False, batch_size=1, seed=0,
                   shuffle=True, repeat=True):
    """Labelled training stream: {"image": float32 [B,h,w,3], "label": uint8 [B,h,w]}.

    Images and labels are resized to `size` (H, W) (None: they must be of
    one size), `augment`ed, and the images Caffe-preprocessed (BGR - mean).
    label_format: see `load_label`.
    """
    if len(image_paths) != len(label_paths):
        raise ConfigError(f"{len(image_paths)} images but {len(label_paths)} labels")

    def load(paths):
        image = _load_image(paths["image"])
        label = load_label(paths["label"], label_format)
        if size is None:
            check = tf.debugging.Assert(
                    tf.reduce_all(tf.equal(tf.shape(image)[:2], tf.shape(label))),
                    ["image and label sizes differ (give `size` to resize both):",
                     paths["image"], tf.shape(image)[:2], paths["label"],
                     tf.shape(label)])
            with tf.control_dependencies([check]):
                image = tf.identity(image)
        return {"image": image, "label": label}

    return _file_stream({"image": image_paths, "label": label_paths}, load, size,
                        crop_size, scale_range, flip, batch_size, seed, shuffle, repeat)


def target_dataset(image_paths, size, crop_size=None, scale_range=None, flip=False,
                   batch_size=1, seed=0, shuffle=True, repeat=True):
    """Unlabelled training stream: {"image": float32 [B,h,w,3]}."""
    return _file_stream({"image": image_paths},
                        lambda p: {"image": _load_image(p["image"])}, size, crop_size,
                        scale_range, flip, batch_size, seed, shuffle, repeat)


def _window_shuffle(dataset, window, seed):
    """Stateless shuffle inside consecutive windows of `window` elements."""
    base = tf.constant([seed, _WINDOW_STREAM], tf.int64)

    @_no_autograph
    def permute(w, batch):
        order = tf.random.experimental.stateless_shuffle(
                tf.range(tf.shape(batch)[0]),
                seed=tf.random.experimental.stateless_fold_in(base, w))
        return tf.gather(batch, order)

    return dataset.batch(window).enumerate().map(permute).unbatch()


def pseudo_label_dataset(index_path, size=None, crop_size=None, scale_range=None,
                         flip=False, batch_size=1, seed=0, shuffle=True, repeat=True,
                         shuffle_buffer=64, cycle_length=8, validate=True):
    """Stage II stream from the TFRecords of the pseudo stage.

    Yields {"image": float32 [B,h,w,3], "pseudo_label": uint8 [B,h,w],
    "hard_mask": uint8 [B,h,w], "z": float32 [B,h,w]}. `validate`: check every
    record first (`tfrecords.validate_records`). With shuffle, each epoch reads
    the shards in a stateless random order, `cycle_length` interleaved, and
    permutes windows of `shuffle_buffer` records; without, in write order.
    """
    size, crop_size = _check_args(size, crop_size, scale_range, batch_size)
    index = (tfrecords.validate_records if validate else tfrecords.read_index)(
            index_path)
    if index["total"] < 1:
        raise ConfigError(f"{index_path}: the index lists no records")
    paths = tf.constant(index["paths"], tf.string)
    num_shards = len(index["paths"])
    cycle = num_shards if not shuffle else max(1, min(cycle_length, num_shards))

    @_no_autograph
    def one_epoch(e):
        shards = _epoch_order(num_shards, seed, shuffle, e).map(
                _no_autograph(lambda i: paths[i]))
        return shards.interleave(
                tf.data.TFRecordDataset, cycle_length=cycle, block_length=1,
                num_parallel_calls=NUM_PARALLEL_CALLS, deterministic=DETERMINISTIC)

    records = _epochs(repeat).flat_map(one_epoch)
    if shuffle and shuffle_buffer > 1:
        records = _window_shuffle(records, shuffle_buffer, seed)

    def load(serialized):
        out = tfrecords.decode_example(serialized)
        return {key: out[key] for key in ("image", "pseudo_label", "hard_mask", "z")}

    return _stream(records, load, size, crop_size, scale_range, flip, batch_size, seed)
