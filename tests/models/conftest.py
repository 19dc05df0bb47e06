"""Fixtures shared by the model tests (large models are built only once)."""

import numpy as np
import pytest


def weight_count(model):
    """Weights of `model`, trainable or not, without BN moving statistics."""
    return sum(int(np.prod(v.shape)) for v in model.weights
               if "moving_" not in v.path)


@pytest.fixture(scope="session")
def count_weights():
    """The `weight_count` function (fixtures avoid importing conftest)."""
    return weight_count


@pytest.fixture(scope="session")
def deeplab101():
    """Full-size DeepLab-v2 ResNet-101, 19 classes (built, never run)."""
    from tf_pixintra.models import build_deeplab_v2
    return build_deeplab_v2(19, depth=101, width=1.0, seed=0)


@pytest.fixture(scope="session")
def tiny18():
    """Depth-18 width-1/16 ResNet, frozen BN, seed 7 (do not mutate)."""
    from tf_pixintra.models import build_resnet
    return build_resnet(depth=18, width=0.0625, bn_mode="frozen", seed=7)


@pytest.fixture(scope="session")
def tiny50():
    """Depth-50 width-1/16 ResNet, frozen BN, seed 0 (do not mutate)."""
    from tf_pixintra.models import build_resnet
    return build_resnet(depth=50, width=0.0625, bn_mode="frozen", seed=0)
