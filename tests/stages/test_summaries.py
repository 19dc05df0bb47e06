"""TensorBoard scalars and prediction images of a training stage."""

import glob

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow.core.util import event_pb2

from adapter_fixtures import (compile_tiny, make_dataset_fn, stage1_batches,
                              tiny_discriminators, tiny_generator)
from tf_pixintra.adapters.inter import InterDomainAdapter
from tf_pixintra.data import labels as labels_lib
from tf_pixintra.data.datasets import Example
from tf_pixintra.stages import summaries
from tf_pixintra.stages import training

pytest.importorskip("tensorboard")


def events(log_dir):
    """{tag: [(step, value)]}: scalars as floats, images as (w, h) of each."""
    out = {}
    for path in sorted(glob.glob(f"{log_dir}/events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(path):
            event = event_pb2.Event.FromString(record.numpy())
            for value in event.summary.value:
                tensor = tf.make_ndarray(value.tensor)
                if tensor.dtype == object:      # image: [w, h, png...]
                    item = [(int(tensor[0]), int(tensor[1])), tensor[2:]]
                else:
                    item = float(tensor)
                out.setdefault(value.tag, []).append((event.step, item))
    return out


def write_examples(tmp_path, n=2, size=(24, 40)):
    """Cityscapes-like image + labelIds PNGs; label of the first is all road."""
    rng = np.random.default_rng(0)
    examples = []
    for i in range(n):
        image = tmp_path / f"c_{i}_leftImg8bit.png"
        label = tmp_path / f"c_{i}_gtFine_labelIds.png"
        Image.fromarray(rng.integers(0, 255, (*size, 3), np.uint8)).save(image)
        Image.fromarray(np.full(size, 7, np.uint8)).save(label)   # 7 = road
        examples.append(Example(str(image), str(label), f"c_{i}"))
    return examples


def new_adapter():
    adapter = InterDomainAdapter(tiny_generator(seed=3), *tiny_discriminators(3))
    compile_tiny(adapter, lr=0.01, decay_steps=6)
    return adapter


def test_strip_is_image_prediction_and_label_side_by_side():
    image = np.full((2, 3, 3), 9, np.uint8)
    pred = np.zeros((2, 3), np.uint8)
    label = np.full((2, 3), 255, np.uint8)
    strip = summaries.prediction_strip(image, pred, label)
    assert strip.shape == (2, 9, 3)
    np.testing.assert_array_equal(strip[:, :3], image)
    np.testing.assert_array_equal(strip[0, 3], labels_lib.PALETTE[0])
    np.testing.assert_array_equal(strip[:, 6:], 0)      # ignore is black
    assert summaries.prediction_strip(image, pred).shape == (2, 6, 3)


def test_resumed_fit_continues_the_step_count_and_writes_images(tmp_path):
    log_dir = str(tmp_path / "tb")
    examples = write_examples(tmp_path)
    make = make_dataset_fn(stage1_batches(4))

    class Stop(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                raise KeyboardInterrupt

    def callback(adapter):
        return summaries.TrainingSummaries(
            log_dir, adapter.generator, examples, (16, 32), log_every=2,
            image_every=4, total_steps=6)

    with pytest.raises(KeyboardInterrupt):      # stops after step 3
        first = new_adapter()
        training.fit(first, make, 6, str(tmp_path / "ckpt"), verbose=0,
                     checkpoint_every=100, callbacks=[callback(first), Stop()])
    second = new_adapter()
    training.fit(second, make, 6, str(tmp_path / "ckpt"), verbose=0,
                 checkpoint_every=100, callbacks=[callback(second)])

    logged = events(log_dir)
    assert [s for s, _ in logged["train/loss_seg"]] == [2, 4, 6]
    assert [s for s, _ in logged["train/lr_g"]] == [2, 4, 6]
    assert logged["train/lr_g"][-1][1] == pytest.approx(0.0, abs=1e-9)
    images = logged["target/image_prediction_label"]
    assert [s for s, _ in images] == [4, 6]          # every 4 and the last
    (w, h), pngs = images[-1][1]
    assert (w, h) == (3 * 32, 16) and len(pngs) == 2
    strip = tf.io.decode_png(pngs[0]).numpy()
    np.testing.assert_array_equal(strip[:, 64:], np.broadcast_to(
        labels_lib.PALETTE[0], (16, 32, 3)))        # ground truth: road
    predicted = strip[:, 32:64].reshape(-1, 3)
    palette = np.asarray(labels_lib.PALETTE, np.uint8)
    assert all((palette == p).all(axis=1).any() for p in predicted)


def test_without_tensorboard_no_callback(monkeypatch, tmp_path):
    monkeypatch.setattr(summaries, "tensorboard_available", lambda: False)
    from tf_pixintra.config import RunConfig  # pylint: disable=import-outside-toplevel
    assert summaries.summary_callbacks(str(tmp_path), None, [], (8, 8),
                                       RunConfig(), 10) == []
