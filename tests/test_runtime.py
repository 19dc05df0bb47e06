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


class _Strategy:   # what worker_index reads of a MultiWorkerMirroredStrategy
    def __init__(self, cluster, task_type, task_id):
        self.cluster_resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec(cluster), task_type=task_type, task_id=task_id)


@pytest.mark.parametrize("cluster, task, expected", [
    ({"worker": ["a:1", "b:1"]}, ("worker", 0), (0, 2)),
    ({"worker": ["a:1", "b:1"]}, ("worker", 1), (1, 2)),
    ({"chief": ["c:1"], "worker": ["a:1", "b:1"]}, ("chief", 0), (0, 3)),
    ({"chief": ["c:1"], "worker": ["a:1", "b:1"]}, ("worker", 1), (2, 3)),
    ({"chief": ["c:1"], "worker": ["a:1"], "evaluator": ["e:1"]},
     ("evaluator", 0), (0, 1)),
])
def test_worker_index_counts_the_chief_and_the_workers(cluster, task, expected):
    assert runtime.worker_index(_Strategy(cluster, *task)) == expected


def test_worker_index_of_a_single_process():
    assert runtime.worker_index(runtime.make_strategy("one_device")) == (0, 1)


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
