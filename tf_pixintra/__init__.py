"""tf_pixintra: pixel-level intra-domain adaptation (PixIntraDA) in TensorFlow/Keras 3."""

import os

# TensorFlow's oneDNN CPU kernels (convolutions and their gradients) are on
# by default only on some Intel CPUs; everywhere else TF_ENABLE_ONEDNN_OPTS
# turns them on. They make the training steps 14-25% faster with ResNet-101
# at 256x512 and 2-16% at the tiny size on an AMD EPYC
# (benchmarks/BENCHMARKS.md, "TF vs PyTorch"). TensorFlow reads the variable
# when it loads, so this takes effect only when tf_pixintra is imported first
# (as in `python -m tf_pixintra.train`); a value already set is kept
# (TF_ENABLE_ONEDNN_OPTS=0 turns them off).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
