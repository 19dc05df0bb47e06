"""A training process whose input never yields a batch (test_no_hang.py).

Runs `stages.training.fit` on the tiny Stage I adapter with a dataset that
filters out every element forever, so the main thread blocks inside
TensorFlow's iterator, where no Python signal handler can run. Prints
"fitting" just before `fit`. Usage: blocked_fit_main.py CHECKPOINT_DIR GRACE_S
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "adapters"))

# pylint: disable=wrong-import-position
import tensorflow as tf  # noqa: E402

from adapter_fixtures import (compile_tiny, stage1_batches,  # noqa: E402
                              tiny_discriminators, tiny_generator)
from tf_pixintra.adapters.inter import InterDomainAdapter  # noqa: E402
from tf_pixintra.stages import training  # noqa: E402


def never_yields(skip):
    """The batches of stage1_batches, all filtered out: an endless search."""
    data = tf.data.Dataset.from_tensor_slices(stage1_batches(2)).batch(2)
    return data.repeat().filter(lambda _: False).skip(skip)


def main():
    checkpoint_dir, grace_s = sys.argv[1], float(sys.argv[2])
    adapter = InterDomainAdapter(tiny_generator(seed=1),
                                 *tiny_discriminators(seed=1))
    compile_tiny(adapter)
    print("fitting", flush=True)
    training.fit(adapter, never_yields, 4, checkpoint_dir, verbose=0,
                 stop_grace_s=grace_s)


if __name__ == "__main__":
    main()
