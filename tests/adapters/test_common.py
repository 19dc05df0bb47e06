"""The adapters' shared machinery (adapters/common.py)."""

import re

import pytest
import tensorflow as tf

from adapter_fixtures import (compile_tiny, stage1_batches, stage2_batches,
                              tiny_discriminators, tiny_generator)
from tf_pixintra.adapters.inter import InterDomainAdapter
from tf_pixintra.adapters.intra import PixelIntraAdapter

CONVS_PER_D = 5


def forward_convs(adapter, batch):
    """{D name: forward Conv2D ops of that D} in one traced train step."""
    graph = tf.function(adapter.train_step).get_concrete_function(
        {k: tf.constant(v) for k, v in batch.items()}).graph
    counts = {"d_main": 0, "d_aux": 0}
    for op in graph.get_operations():
        for name in counts:
            # d_main/..., or d_main_1/... once Keras has named a call.
            if op.type == "Conv2D" and re.match(name + r"(_\d+)?/", op.name):
                counts[name] += 1
    return counts


@pytest.mark.parametrize("stage", [1, 2])
def test_each_discriminator_runs_once_per_domain(stage):
    # The D update reuses D's output on the maps G's adversarial term saw
    # (same weights, same maps): Stage I runs each D on the source and the
    # target maps, Stage II on the target maps only (it was 3 and 2 passes).
    g = tiny_generator(seed=1)
    d_main, d_aux = tiny_discriminators(1, pixel_level=stage == 2)
    if stage == 1:
        adapter = InterDomainAdapter(g, d_main, d_aux, variant="adaptsegnet")
        batch, domains = stage1_batches(2), 2
    else:
        adapter = PixelIntraAdapter(g, d_main, d_aux, method="cts")
        batch, domains = stage2_batches(2), 1
    compile_tiny(adapter)
    assert forward_convs(adapter, batch) == {
        "d_main": domains * CONVS_PER_D, "d_aux": domains * CONVS_PER_D}
