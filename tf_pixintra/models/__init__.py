"""Networks of tf_pixintra: dilated ResNet, DeepLab-v2 G, FC discriminator D.

Importing this package registers the custom layers for `.keras` loading.
"""

from tf_pixintra.models.deeplab_v2 import (backbone_variables,
                                           build_deeplab_v2, head_variables,
                                           main_output, split_outputs)
from tf_pixintra.models.discriminator import build_discriminator
from tf_pixintra.models.layers import ResizeLike
from tf_pixintra.models.preprocessing import caffe_preprocess
from tf_pixintra.models.resnet import build_resnet
from tf_pixintra.models.weights import load_keras_resnet_weights

__all__ = ["ResizeLike", "backbone_variables", "build_deeplab_v2",
           "build_discriminator", "build_resnet", "caffe_preprocess",
           "head_variables", "load_keras_resnet_weights", "main_output",
           "split_outputs"]
