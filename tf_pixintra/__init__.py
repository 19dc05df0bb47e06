"""tf_pixintra: pixel-level intra-domain adaptation (PixIntraDA) in TensorFlow/Keras 3."""

import os

# TensorFlow's oneDNN CPU kernels are on by default only on some Intel CPUs; they make
# training faster elsewhere too (benchmarks/BENCHMARKS.md, "TF vs PyTorch"). TF reads the
# variable when it loads: this works when tf_pixintra is imported first (as in
# `python -m tf_pixintra.train`); a value already set (=0: off) is kept.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
