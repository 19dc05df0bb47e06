"""Tiny generators, discriminators and in-memory batches for adapter tests."""

import numpy as np
import tensorflow as tf

from tf_pixintra import models
from tf_pixintra.adapters import optimizers as opt_lib
from tf_pixintra.config import OptimConfig

H, W = 32, 48


def tiny_generator(seed=0, bn_mode="frozen"):
    return models.build_deeplab_v2(19, depth=18, width=0.125, bn_mode=bn_mode,
                                   seed=seed)


def tiny_discriminators(seed=0, pixel_level=False):
    return (models.build_discriminator(19, ndf=4, pixel_level=pixel_level,
                                       seed=seed + 1, name="d_main"),
            models.build_discriminator(19, ndf=4, pixel_level=pixel_level,
                                       seed=seed + 2, name="d_aux"))


def compile_tiny(adapter, lr=0.01, decay_steps=100, precision="float32"):
    optim = OptimConfig()
    adapter.compile(
        opt_lib.generator_optimizer(lr, decay_steps, optim, precision),
        opt_lib.discriminator_optimizer(optim.lr_d, decay_steps, optim, precision, "adam_dm"),
        opt_lib.discriminator_optimizer(optim.lr_d, decay_steps, optim, precision, "adam_da"))


def stage1_batches(n=8, seed=0):
    """n examples: source image + label (no ignore pixels) + target image."""
    rng = np.random.default_rng(seed)
    return {
        # Unit-scale images: with Caffe-range values (std ~50) the random-init
        # tiny G starts at a cross-entropy of ~400 and diverges at lr 0.01.
        "source_image": rng.normal(0, 1, (n, H, W, 3)).astype(np.float32),
        "source_label": rng.integers(0, 19, (n, H, W)).astype(np.uint8),
        "target_image": rng.normal(0.2, 1.2, (n, H, W, 3)).astype(np.float32),
    }


def stage2_batches(n=8, seed=0):
    """n target examples with pseudo labels, hard mask M and Z (Eq. 7)."""
    rng = np.random.default_rng(seed)
    hard = (rng.random((n, H, W)) < 0.4).astype(np.uint8)
    label = rng.integers(0, 19, (n, H, W)).astype(np.uint8)
    label[hard == 1] = 255
    z = np.where(hard == 1, rng.uniform(0.1, 0.9, (n, H, W)), 0.0)
    return {"image": rng.normal(0, 1, (n, H, W, 3)).astype(np.float32),
            "pseudo_label": label, "hard_mask": hard, "z": z.astype(np.float32)}


def make_dataset_fn(arrays, batch_size=2):
    """make_dataset(skip) over fixed arrays, repeated, deterministic."""
    def make_dataset(skip):
        ds = tf.data.Dataset.from_tensor_slices(arrays).batch(
            batch_size, drop_remainder=True).repeat()
        return ds.skip(skip)
    return make_dataset


def weights_of(*parts):
    return [w.copy() for p in parts for w in p.get_weights()]


class Crash(tf.keras.callbacks.Callback):
    """Raises after `at` batches of this fit call (a crash, no exit handler)."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_train_batch_end(self, batch, logs=None):
        if batch + 1 == self.at:
            raise RuntimeError("simulated crash")
