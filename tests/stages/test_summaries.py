"""TensorBoard scalars and prediction images of a training stage."""

import glob
import os
import signal
import types

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow.core.util import event_pb2

from adapter_fixtures import (Crash, compile_tiny, make_dataset_fn,
                              stage1_batches, tiny_discriminators,
                              tiny_generator)
from tf_pixintra.adapters.common import AdversarialAdapter
from tf_pixintra.adapters.inter import InterDomainAdapter
from tf_pixintra.config import DataConfig, RunConfig
from tf_pixintra.data import labels as labels_lib
from tf_pixintra.data.datasets import Example
from tf_pixintra.stages import common
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

    class Stop(tf.keras.callbacks.Callback):   # Ctrl-C during step 3
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 2:
                os.kill(os.getpid(), signal.SIGINT)

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
    assert summaries.summary_board(str(tmp_path), None, [], (8, 8),
                                   RunConfig(), 10) is None


class KnownLosses(AdversarialAdapter):
    """Reports the batch's mean `value` as its loss: every step's loss is known.

    G (one 1x1 convolution to 19 classes) gets a zero update, so the
    optimizer counts steps as in training.
    """
    adversarial = False   # no D: declare_trackers adds no D trackers

    def train_step(self, data):
        with tf.GradientTape() as tape:
            zero = 0.0 * tf.add_n([tf.reduce_sum(v) for v in
                                   self.generator.trainable_variables])
        self.generator_update(tape, zero)
        return self.report({"loss_known": tf.reduce_mean(data["value"])})


def known_losses_adapter():
    inputs = keras.Input((None, None, 3))
    generator = keras.Model(inputs, keras.layers.Conv2D(19, 1)(inputs))
    adapter = KnownLosses(generator, None, None, weight_decay=0.0)
    adapter.compile(keras.optimizers.SGD(0.1))
    adapter.declare_trackers(["loss_known"])
    return adapter


def known_losses(replicas, steps=8):
    """make_dataset(skip): step s's batch is [s^2] ([s^2 - 1, s^2 + 1] on 2)."""
    squares = np.arange(1, steps + 1, dtype=np.float32) ** 2
    values = (squares[:, None] + (np.array([[-1.0, 1.0]], np.float32)
                                  if replicas == 2 else 0.0)).reshape(-1)

    def make(skip):
        return tf.data.Dataset.from_tensor_slices({"value": values}).batch(
            replicas).skip(skip)
    return make


class Record(keras.callbacks.Callback):
    """The logs each step shows (as Keras' progress bar gets them)."""

    def __init__(self):
        super().__init__()
        self.logs = []

    def on_train_batch_end(self, batch, logs=None):
        self.logs.append(float(np.asarray(logs["loss_known"]).reshape(-1)[0]))


@pytest.mark.parametrize("replicas", [1, 2])
def test_logged_losses_are_means_of_their_interval(tmp_path, replicas):
    """Step s has loss s^2; log every 2 steps; a crash after step 5, resumed.

    Each written value is the mean of its interval's losses: 2.5 at step 2
    (1, 4), 12.5 at 4 (9, 16) -- not 7.5, the mean since the start --, 30.5
    at 6 (25, 36); the last logs are those of step 7 (49) alone. With two
    replicas the batch is [s^2 - 1, s^2 + 1]: the replicas' means average
    to s^2.
    """
    strategy = (tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
                if replicas == 2 else tf.distribute.get_strategy())
    make = known_losses(replicas)
    log_dir, ckpt = str(tmp_path / "tb"), str(tmp_path / "ckpt")

    def callbacks(adapter):
        return [summaries.TrainingSummaries(
                    log_dir, adapter.generator, [], (4, 4), log_every=2,
                    image_every=0, total_steps=7),
                summaries.IntervalMeans(2, total_steps=7)]

    with strategy.scope():
        first = known_losses_adapter()
    record = Record()       # after the reset, as Keras' progress bar is
    with pytest.raises(RuntimeError, match="crash"):
        training.fit(first, make, 7, ckpt, checkpoint_every=4, verbose=0,
                     callbacks=[*callbacks(first), record, Crash(at=5)])
    assert record.logs == [1.0, 2.5, 9.0, 12.5, 25.0]
    with strategy.scope():
        second = known_losses_adapter()
    logs, _ = training.fit(second, make, 7, ckpt, checkpoint_every=4,
                           verbose=0, callbacks=callbacks(second))
    assert logs["loss_known"] == 49.0
    assert events(log_dir)["train/loss_known"] == [(2, 2.5), (4, 12.5),
                                                   (6, 30.5)]


def test_stage_writes_losses_and_periodic_and_final_evaluations(tmp_path):
    """4 steps, log_every=2, eval_every=3: evaluations at step 3 and 4 (final)."""
    examples = write_examples(tmp_path)
    run = RunConfig(eval_every=3, log_every=2, image_every=0, verbose=0,
                    checkpoint_every=100, num_summary_images=1)
    data = DataConfig(eval_size=(16, 32), target_size=(16, 32))
    ctx = common.Context(
        config=types.SimpleNamespace(data=data, run=run),
        run_dir=str(tmp_path / "run"), strategy=tf.distribute.get_strategy(),
        sources=types.SimpleNamespace(target_val=tuple(examples),
                                      target_train=()))
    stage_dir = ctx.stage_dir("inter")
    metrics = common.train_evaluate_finish(
        ctx, "inter", known_losses_adapter, known_losses(1), 4, {"stage": "inter"})
    logged = events(f"{stage_dir}/tb")
    # The stage resets the trackers: means of (1, 4) and (9, 16).
    assert logged["train/loss_known"] == [(2, 2.5), (4, 12.5)]
    assert metrics["final_logs"]["loss_known"] == 12.5
    (periodic,) = metrics["eval_history"]
    assert logged["eval/target_miou"] == [
        (3, pytest.approx(periodic["miou"], rel=1e-6)),
        (4, pytest.approx(metrics["target_miou"], rel=1e-6))]
    # Every label is road: road's IoU is written; classes absent from
    # prediction and ground truth (IoU None) are not.
    assert [s for s, _ in logged["eval_iou/road"]] == [3, 4]
    assert logged["eval_iou/road"][1][1] == pytest.approx(
        metrics["target_iou"]["road"], rel=1e-6)
    assert {t for t in logged if t.startswith("eval_iou/")} == {
        f"eval_iou/{name}" for result in (periodic["iou"], metrics["target_iou"])
        for name, iou in result.items() if iou is not None}
