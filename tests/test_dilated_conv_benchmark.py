"""benchmarks/dilated_conv.py: which convs it times and what it records."""

import json

import keras

from benchmarks import dilated_conv
from benchmarks.step_common import CONFIGS
from tf_pixintra import models


def test_it_times_every_dilated_conv_of_g_once_per_shape(tmp_path):
    cfg = CONFIGS["tiny"]
    g = models.build_deeplab_v2(19, depth=cfg["depth"], width=cfg["width"],
                                bn_mode=cfg["bn_mode"], seed=0)
    dilated = [layer for layer in g.layers
               if isinstance(layer, keras.layers.Conv2D)
               and max(layer.dilation_rate) > 1]
    out = tmp_path / "dc.json"
    dilated_conv.main(["--config", "tiny", "--json", str(out), "--steps", "1",
                       "--warmup", "0"])
    rows = json.loads(out.read_text())["rows"]
    assert sum(r["layers"] for r in rows) == len(dilated)
    # Two heads (main, aux) of four ASPP dilations; each shape is one row.
    aspp = [r for r in rows if r["aspp"]]
    assert sorted(r["dilation"] for r in aspp) == [6, 6, 12, 12, 18, 18, 24, 24]
    assert len({(r["channels_in"], r["filters"], r["dilation"])
                for r in rows}) == len(rows)
    assert all(r["seconds"]["keras"] > 0 and r["seconds"]["native"] > 0
               for r in rows)
