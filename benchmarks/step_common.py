"""What the TensorFlow and PyTorch step benchmarks share (no framework import).

`benchmarks.train_step` (TensorFlow) and `benchmarks.torch_step` (PyTorch)
time the same three training steps at the same configurations on the same
inputs, with the same timing loop: this module holds the configurations,
the numpy batch, the interleaved timing loop and the JSON helpers. It
imports neither framework, so each script loads only its own.
"""

import argparse
import os
import platform
import statistics
import time

import numpy as np

NUM_CLASSES = 19
# bn_mode "frozen": BN normalises with its stored statistics and its
# gamma/beta are not trained; "train": ordinary BN. ndf: D's first width.
CONFIGS = {
    "tiny": {"depth": 18, "width": 0.25, "size": [128, 256], "batch": 1,
             "bn_mode": "frozen", "ndf": 64, "steps": 10, "warmup": 2},
    # configs/toyscapes.cfg's training step.
    "toyscapes": {"depth": 18, "width": 0.25, "size": [64, 128], "batch": 4,
                  "bn_mode": "train", "ndf": 32, "steps": 20, "warmup": 3},
    # The paper's network at a quarter of its pixels.
    "r101_256": {"depth": 101, "width": 1.0, "size": [256, 512], "batch": 1,
                 "bn_mode": "frozen", "ndf": 64, "steps": 5, "warmup": 1},
    # The paper's step: the 1024x512 Cityscapes input.
    "paper": {"depth": 101, "width": 1.0, "size": [512, 1024], "batch": 1,
              "bn_mode": "frozen", "ndf": 64, "steps": 3, "warmup": 1},
}
KINDS = ("supervised", "stage1", "stage2")
# Poly-decay horizon of every optimizer (the learning rates are 0 anyway).
SCHEDULE_STEPS = 250000


def make_arrays(kind, cfg, seed=0):
    """One batch for `kind` as numpy arrays, NHWC (Caffe-range images).

    supervised / stage1: `source_image` float32 [B,H,W,3], `source_label`
    uint8 [B,H,W] (valid trainIds, none ignored), `target_image`.
    stage2: `image`, `pseudo_label` (255 on the ~1/3 hard pixels),
    `hard_mask` (uint8, 1 = hard, 0 = easy; no padding), `z` (float32, in
    [0.1, 0.9] on hard pixels, 0 on easy ones).
    """
    rng = np.random.default_rng(seed)
    shape = (cfg["batch"], *cfg["size"])

    def image():
        return rng.normal(0, 50, shape + (3,)).astype(np.float32)

    labels = rng.integers(0, NUM_CLASSES, shape).astype(np.uint8)
    if kind in ("supervised", "stage1"):
        return {"source_image": image(), "source_label": labels,
                "target_image": image()}
    if kind != "stage2":
        raise ValueError(f"kind={kind!r}: expected one of {KINDS}")
    hard = rng.random(shape) < 0.33
    pseudo = np.where(hard, 255, rng.integers(0, NUM_CLASSES, shape))
    z = np.where(hard, rng.uniform(0.1, 0.9, shape), 0.0)
    return {"image": image(), "pseudo_label": pseudo.astype(np.uint8),
            "hard_mask": hard.astype(np.uint8), "z": z.astype(np.float32)}


def time_interleaved(runners, steps, warmup):
    """{name: [seconds per step]} over `steps` rounds after `warmup` rounds.

    One call of each runner per round, in turn, so that a change of load on
    a shared machine hits all of them alike.
    """
    times = {name: [] for name in runners}
    for round_index in range(warmup + steps):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            elapsed = time.perf_counter() - start
            if round_index >= warmup:
                times[name].append(elapsed)
    return times


def step_parser(doc):
    """The flags a step benchmark shares: --json, --config, --steps, --warmup."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True, help="output JSON path")
    parser.add_argument("--config", choices=[*CONFIGS, "both"],
                        default="tiny", help="both = tiny and paper")
    add_rounds_flags(parser)
    return parser


def config_names(args):
    """The configs --config names ("both" = tiny and paper)."""
    return ["tiny", "paper"] if args.config == "both" else [args.config]


def add_rounds_flags(parser, passed_on=""):
    """--steps and --warmup (`passed_on`: words prefixed to their help)."""
    parser.add_argument("--steps", type=int, default=0,
                        help=passed_on + "timed rounds (0 = per-config default)")
    parser.add_argument("--warmup", type=int, default=-1,
                        help=passed_on + "warm-up rounds (-1 = per-config default)")


def rounds(cfg, args):
    """(timed rounds, warm-up rounds) from the flags, else `cfg`'s."""
    return (args.steps or cfg["steps"],
            cfg["warmup"] if args.warmup < 0 else args.warmup)


def timing_record(cfg, steps, warmup, times):
    """The timing part of a config's JSON record, from time_interleaved's
    {kind: [seconds]}: medians and their ratios to the supervised step."""
    medians = {kind: statistics.median(times[kind]) for kind in KINDS}
    return {
        "spec": spec(cfg),
        "steps": steps, "warmup": warmup,
        "seconds_per_step": medians,
        "all_seconds": times,
        "ratio_to_supervised": {k: medians[k] / medians["supervised"]
                                for k in ("stage1", "stage2")},
    }


def spec(cfg):
    """The network and input settings of a config, for its JSON record."""
    return {k: cfg.get(k, 32) for k in ("depth", "width", "size", "batch",
                                        "bn_mode", "ndf", "d_output_stride")}


def machine():
    """The machine part of a JSON record (the caller adds its framework)."""
    return {"platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count()}


def print_seconds_table(results):
    """Seconds per step and the ratios to supervised, one row per config."""
    header = (f"{'config':8s} {'supervised s':>13s} {'stage1 s':>9s} "
              f"{'stage2 s':>9s} {'I/sup':>6s} {'II/sup':>7s}")
    print(header)
    print("-" * len(header))
    for name, rec in results.items():
        s, r = rec["seconds_per_step"], rec["ratio_to_supervised"]
        print(f"{name:8s} {s['supervised']:13.4f} {s['stage1']:9.4f} "
              f"{s['stage2']:9.4f} {r['stage1']:6.2f} {r['stage2']:7.2f}")
