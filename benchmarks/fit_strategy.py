"""Seconds per step of `fit` on ToyScapes: default strategy vs OneDeviceStrategy.

What `python -m tf_pixintra.train --flagfile configs/toyscapes.cfg` runs for
Stage I (source-only and AdaptSegNet): the config's tiny model, batch and
sizes, fed by the real input pipeline (PNG decoding, resizing, flips) from
the ToyScapes benchmark, trained with `adapter.fit`. Each arm is a fresh
adapter trained `--steps` steps; the first `--skip` steps (tracing, warm-up)
are left out of the time. Arms alternate over `--repeats` rounds so a change
of load on a shared machine hits both strategies alike.

    python -m benchmarks.fit_strategy --json /tmp/fit_strategy.json
"""

import argparse
import dataclasses
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# pylint: disable=wrong-import-position
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import flags  # noqa: E402

from tf_pixintra import config as config_lib  # noqa: E402
from tf_pixintra import io_utils  # noqa: E402
from tf_pixintra.stages import common  # noqa: E402
from tf_pixintra.stages import inter_stage  # noqa: E402
from tf_pixintra.stages import sources  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _StepClock(keras.callbacks.Callback):
    """Wall time from the end of batch `skip` to the end of the last batch."""

    def __init__(self, skip):
        super().__init__()
        self.skip, self.start, self.count = skip, None, 0

    def on_train_batch_end(self, batch, logs=None):
        if batch + 1 == self.skip:
            self.start = time.perf_counter()
        elif batch + 1 > self.skip:
            self.count += 1
            self.end = time.perf_counter()

    def seconds_per_step(self):
        return (self.end - self.start) / self.count


def load_config(flagfile):
    flag_values = flags.FlagValues()
    config_lib.define_flags(flag_values)
    flag_values(["fit_strategy", f"--flagfile={flagfile}",
                 "--run_dir=/tmp/fit_strategy_unused"])
    return config_lib.from_flags(flag_values)


def time_fit(config, data_sources, variant, strategy, steps, skip):
    """Seconds per step of `fit` for a fresh Stage I adapter of `variant`.

    The adapter is the `inter` stage's own, with its LR schedule over `steps`.
    """
    config = dataclasses.replace(config, inter=dataclasses.replace(
        config.inter, steps=steps, schedule_steps=0))
    ctx = common.Context(config, "/tmp/fit_strategy_unused", strategy,
                         data_sources)
    adapter = inter_stage.build_adapter(ctx, variant, seed=0)
    dataset = inter_stage.stage_dataset(ctx, config.inter.batch_size, 0,
                                        variant != "source_only")(0)
    clock = _StepClock(skip)
    adapter.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0,
                callbacks=[clock])
    return clock.seconds_per_step()


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True)
    parser.add_argument("--flagfile",
                        default=os.path.join(ROOT, "configs", "toyscapes.cfg"))
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--skip", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--first", default="default",
                        choices=["default", "one_device_strategy"],
                        help="the strategy created and timed first in the "
                             "process")
    parser.add_argument("--op_first", action="store_true",
                        help="run one TF op before creating the strategies")
    args = parser.parse_args(argv)
    os.chdir(ROOT)     # the config's relative --toyscapes_dir
    config = load_config(args.flagfile)
    data_sources = sources.resolve(config.data, True)
    if args.op_first:
        tf.reduce_sum(tf.ones([2]))   # initialises TF's eager context
    makers = {"default": tf.distribute.get_strategy,
              "one_device_strategy":
                  lambda: tf.distribute.OneDeviceStrategy("/cpu:0")}
    order = [args.first] + [name for name in makers if name != args.first]
    strategies = {name: makers[name]() for name in order}
    times = {}
    for repeat in range(args.repeats):
        for variant in ("source_only", "adaptsegnet"):
            for name, strategy in strategies.items():
                seconds = time_fit(config, data_sources, variant, strategy,
                                   args.steps, args.skip)
                times.setdefault(f"{variant}/{name}", []).append(seconds)
                print(f"round {repeat}: {variant:12s} {name:20s} "
                      f"{seconds:.3f} s/step", flush=True)
    medians = {k: statistics.median(v) for k, v in times.items()}
    ratios = {v: medians[f"{v}/one_device_strategy"] / medians[f"{v}/default"]
              for v in ("source_only", "adaptsegnet")}
    print("OneDeviceStrategy / default:",
          {k: round(r, 2) for k, r in ratios.items()})
    io_utils.write_json(args.json, {
        "flagfile": os.path.relpath(args.flagfile, ROOT),
        "steps": args.steps, "skip": args.skip, "first": args.first,
        "op_first": args.op_first,
        "seconds_per_step": times,
        "median": medians, "ratio_one_device_strategy_to_default": ratios,
        "machine": {"platform": platform.platform(),
                    "cpu_count": os.cpu_count(),
                    "tensorflow": tf.__version__}})


if __name__ == "__main__":
    main()
