"""tf_pixintra: pixel-level intra-domain adaptation (PixIntraDA) in TensorFlow/Keras 3."""

__version__ = "0.1.0"
