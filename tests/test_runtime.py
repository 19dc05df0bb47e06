"""Strategies and worker roles of tf_pixintra.runtime."""

import pytest
import tensorflow as tf

from tf_pixintra import runtime
from tf_pixintra.errors import ConfigError


def test_one_device_is_the_default_strategy():
    strategy = runtime.make_strategy("one_device")
    assert strategy is tf.distribute.get_strategy()
    assert strategy.num_replicas_in_sync == 1
    assert runtime.worker_info(strategy) == (None, 0, True)


def test_unknown_strategy_is_refused():
    with pytest.raises(ConfigError, match="--strategy='tpu'"):
        runtime.make_strategy("tpu")


def test_multi_worker_needs_a_valid_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="needs TF_CONFIG"):
        runtime.make_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{cluster")
    with pytest.raises(ConfigError, match="not valid JSON: '{cluster'"):
        runtime.make_strategy("multi_worker")
