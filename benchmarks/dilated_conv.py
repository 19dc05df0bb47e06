"""Dilated convs of G: Keras' SpaceToBatch form against one oneDNN Conv2D.

For every distinct dilated 3x3 conv of `build_deeplab_v2` at a
configuration of benchmarks/step_common.py (input channels, filters,
dilation; all at output stride 8), times a forward and backward pass
(gradients of the input and the kernel) of:
- `keras`: what keras.layers.Conv2D runs, tf.nn.convolution, which turns a
  dilated conv into SpaceToBatchND -> conv -> BatchToSpaceND;
- `native`: tf.nn.conv2d(..., dilations=d), one Conv2D op (and one op per
  gradient) with oneDNN (`tf_pixintra.models.layers.DilatedConv2D`).
The two run alternately, one call each per round; the figure is the median
over the rounds after the warm-up rounds. "per G pass" multiplies by how
many layers of G have that shape. Needs oneDNN (the package turns it on):
TF's own CPU kernels have no dilated filter gradient.

    python -m benchmarks.dilated_conv --config r101_256 --json OUT
"""

import collections
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# pylint: disable=wrong-import-position
import tf_pixintra  # noqa: E402,F401  (oneDNN on before TF loads)
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from tf_pixintra import compat  # noqa: E402
from tf_pixintra import io_utils  # noqa: E402
from tf_pixintra import models  # noqa: E402
from tf_pixintra.models.deeplab_v2 import HEAD_PREFIX  # noqa: E402

from benchmarks.step_common import CONFIGS  # noqa: E402
from benchmarks.step_common import NUM_CLASSES  # noqa: E402
from benchmarks.step_common import machine  # noqa: E402
from benchmarks.step_common import step_parser  # noqa: E402

OUTPUT_STRIDE = 8


def dilated_shapes(cfg):
    """{(channels in, filters, dilation, in ASPP): count} of G's dilated convs."""
    g = models.build_deeplab_v2(NUM_CLASSES, depth=cfg["depth"],
                                width=cfg["width"], bn_mode=cfg["bn_mode"],
                                seed=0)
    shapes = collections.Counter()
    for layer in g.layers:
        if (isinstance(layer, keras.layers.Conv2D)
                and max(layer.dilation_rate) > 1):
            shapes[(int(layer.kernel.shape[2]), layer.filters,
                    layer.dilation_rate[0],
                    layer.name.startswith(HEAD_PREFIX))] += 1
    return shapes


def forward_backward(x, kernel, dilation, native):
    """A tf.function: the conv's output, then d/dx and d/dkernel of sum(y^2)."""
    @tf.function
    def run():
        with tf.GradientTape() as tape:
            if native:
                y = tf.nn.conv2d(x, kernel, strides=1, padding="SAME",
                                 dilations=dilation)
            else:
                y = tf.nn.convolution(x, kernel, padding="SAME",
                                      dilations=dilation)
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, [x, kernel])
    return run


def time_shape(cfg, shape, rounds, warmup):
    """Median seconds of the keras and native forms of one conv shape."""
    c_in, filters, dilation, _ = shape
    h, w = (v // OUTPUT_STRIDE for v in cfg["size"])
    x = tf.Variable(tf.random.normal([cfg["batch"], h, w, c_in], seed=1))
    kernel = tf.Variable(tf.random.normal([3, 3, c_in, filters], seed=2) * 0.01)
    runs = {name: forward_backward(x, kernel, dilation, name == "native")
            for name in ("keras", "native")}
    times = {name: [] for name in runs}
    for index in range(warmup + rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            for grad in run():
                grad.numpy()
            if index >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv=None):
    parser = step_parser(__doc__)
    args = parser.parse_args(argv)
    if not compat.onednn_enabled():
        parser.error("oneDNN is off (TF_ENABLE_ONEDNN_OPTS=0?): TF's own CPU "
                     "kernels cannot run the native form's filter gradient")
    if args.config == "both":
        parser.error("--config both: give one config per run")
    name = args.config
    cfg = CONFIGS[name]
    rounds, warmup = (args.steps or 10), (1 if args.warmup < 0 else args.warmup)
    rows = []
    print(f"[{name}] {rounds} rounds after {warmup} warm-up, ms per forward + "
          "backward pass", flush=True)
    print("| conv (in -> out, dilation) | where | layers | keras | native | "
          "native / keras | keras per G pass | native per G pass |")
    print("|---|---|---|---|---|---|---|---|")
    for shape, count in sorted(dilated_shapes(cfg).items()):
        seconds = time_shape(cfg, shape, rounds, warmup)
        c_in, filters, dilation, aspp = shape
        rows.append({"channels_in": c_in, "filters": filters,
                     "dilation": dilation, "aspp": aspp, "layers": count,
                     "seconds": seconds})
        keras_ms, native_ms = (1e3 * seconds[k] for k in ("keras", "native"))
        print(f"| {c_in} -> {filters}, d{dilation} | "
              f"{'ASPP' if aspp else 'backbone'} | {count} | {keras_ms:.2f} | "
              f"{native_ms:.2f} | {native_ms / keras_ms:.2f} | "
              f"{count * keras_ms:.1f} | {count * native_ms:.1f} |", flush=True)
    for where, aspp in (("backbone", False), ("ASPP", True)):
        total = {k: sum(r["layers"] * r["seconds"][k] for r in rows
                        if r["aspp"] == aspp) for k in ("keras", "native")}
        print(f"{where}: keras {1e3 * total['keras']:.1f} ms, native "
              f"{1e3 * total['native']:.1f} ms per G forward + backward")
    record = {"config": name, "size": cfg["size"], "rounds": rounds,
              "warmup": warmup, "machine": {**machine(),
                                            "load_at_end": os.getloadavg()},
              "rows": rows}
    io_utils.write_json(args.json, record)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
