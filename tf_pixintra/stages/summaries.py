"""TensorBoard logs of a training stage under `<stage>/tb` (if the
`tensorboard` package, which tf.summary.image needs, is installed), at the
stage's own steps, so a resumed run continues its curves:

- `train/<name>`: the adapter's logs every `log_every` steps (a loss is the
  mean over that interval: `IntervalMeans`);
- `eval/target_miou` and `eval_iou/<class>` of every evaluation;
- images every `image_every` steps and at the last: a few fixed target
  images | G's prediction | their ground truth if labelled.
"""

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tf_pixintra import inference
from tf_pixintra.data import datasets
from tf_pixintra.data import labels as labels_lib
from tf_pixintra.data import pipeline


def tensorboard_available():
    """Whether the `tensorboard` package (needed by tf.summary.image) imports."""
    try:
        import tensorboard  # noqa: F401  pylint: disable=unused-import,import-outside-toplevel
    except ImportError:
        return False
    return True


def load_panels(examples, size, dataset="cityscapes"):
    """[(RGB uint8 [h,w,3], trainIds [h,w] or None)] at `size` = (h, w),
    resized as the input pipeline does."""
    panels = []
    for example in examples:
        image, label = datasets.read_example(example, dataset)
        features = {"image": tf.convert_to_tensor(image)}
        if label is not None:
            features["label"] = tf.convert_to_tensor(label)
        resized = pipeline.resize(features, size)
        image = np.clip(np.rint(resized["image"].numpy()), 0, 255).astype(np.uint8)
        panels.append((image, resized["label"].numpy() if label is not None else None))
    return panels


def prediction_strip(image, prediction, label=None):
    """One summary image: RGB | prediction colours | ground-truth colours."""
    parts = [image, labels_lib.colorize(prediction)]
    if label is not None:
        parts.append(labels_lib.colorize(label))
    return np.concatenate(parts, axis=1)


class TrainingSummaries(keras.callbacks.Callback):
    """Writes scalars and prediction images of `generator` to `log_dir`;
    `examples` (datasets.Example) are shown at `size`, the model's input."""

    def __init__(self, log_dir, generator, examples, size, *, log_every=50,
                 image_every=200, total_steps=None, dataset="cityscapes"):
        super().__init__()
        self.log_dir, self.generator = log_dir, generator
        self.size = tuple(int(v) for v in size)
        self.log_every, self.image_every = int(log_every), int(image_every)
        self.total_steps = total_steps
        self.panels = load_panels(examples, self.size, dataset)
        self.start_step = 0
        self._writer = None
        self._predict = inference.make_predict_fn(generator, size=self.size)

    def set_start_step(self, step):
        self.start_step = int(step)

    @property
    def writer(self):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        return self._writer

    def on_train_batch_end(self, batch, logs=None):
        step = self.start_step + batch + 1
        if self.log_every and step % self.log_every == 0:
            with self.writer.as_default(step=step):
                for name, value in (logs or {}).items():
                    tf.summary.scalar(f"train/{name}", float(value))
        last = self.total_steps is not None and step == self.total_steps
        if self.panels and self.image_every and (step % self.image_every == 0 or last):
            self.write_images(step)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.flush()

    def write_evaluation(self, step, result):
        """Writes a target evaluation (evaluate.result_dict) at `step`,
        leaving absent classes out."""
        with self.writer.as_default(step=step):
            if result.get("miou") is not None:
                tf.summary.scalar("eval/target_miou", float(result["miou"]))
            for name, iou in result.get("iou", {}).items():
                if iou is not None:
                    tf.summary.scalar(f"eval_iou/{name}", float(iou))
        self.writer.flush()

    def write_images(self, step):
        strips = []
        for image, label in self.panels:
            prediction = inference.predict_labels(
                self.generator, image, output_size=self.size, predict_fn=self._predict)
            strips.append(prediction_strip(image, prediction, label))
        with self.writer.as_default(step=step):
            if len({s.shape[1] for s in strips}) == 1:
                tf.summary.image("target/image_prediction_label",
                                 np.stack(strips), max_outputs=len(strips))
            else:   # some images have labels, some not: one summary each
                for i, strip in enumerate(strips):
                    tf.summary.image(f"target/image_prediction_{i}", strip[None], max_outputs=1)
        self.writer.flush()


class IntervalMeans(keras.callbacks.Callback):
    """Resets the model's metrics (the loss trackers) every `every` stage
    steps, except at `total_steps` (the last logs keep their interval's
    means): Keras resets them only per epoch, and a stage is one epoch.
    Goes after the callbacks that read the logs, on every worker."""

    def __init__(self, every, total_steps=None):
        super().__init__()
        self.every, self.total_steps = int(every), total_steps
        self.start_step = 0

    def set_start_step(self, step):
        self.start_step = int(step)

    def on_train_batch_end(self, batch, logs=None):
        step = self.start_step + batch + 1
        if self.every and step % self.every == 0 and step != self.total_steps:
            for metric in self.model.metrics:
                metric.reset_state()


def summary_board(log_dir, generator, examples, size, run_cfg, total_steps):
    """The TrainingSummaries callback when tensorboard is installed, else None."""
    if not tensorboard_available():
        logging.info("tensorboard is not installed: no TensorBoard logs in %s", log_dir)
        return None
    return TrainingSummaries(
        log_dir, generator, list(examples)[:run_cfg.num_summary_images], size,
        log_every=run_cfg.log_every, image_every=run_cfg.image_every, total_steps=total_steps)
