"""Seconds per training step: supervised vs Stage I vs Stage II.

Three steps, each the adapter's own Keras-compiled train step
(`adapter.make_train_function()`, what `fit` runs), fed from memory (one
fixed batch, repeated: no input-pipeline cost):
- supervised: G alone on source cross-entropy (main + 0.1 x aux), SGD,
  no discriminator (InterDomainAdapter, variant "source_only");
- stage1: InterDomainAdapter "adaptsegnet" (G on source and target, two
  output-space discriminators, Eq. 1);
- stage2: PixelIntraAdapter "cts" (G on target, two pixel-level
  discriminators, Eq. 5 + Eq. 8).
Four configurations (benchmarks/step_common.py): `tiny` (ResNet-18, width
0.25, 128x256, batch 1, D ndf 64), `toyscapes` (configs/toyscapes.cfg's
step: ResNet-18, width 0.25, 64x128, batch 4, trained BN, D ndf 32),
`r101_256` (ResNet-101, width 1.0, 256x512, batch 1, frozen BN, D ndf 64)
and `paper` (the same at 512x1024, i.e. the 1024x512 Cityscapes input).
benchmarks/torch_step.py times the same steps in PyTorch on the same inputs
(step_common.make_arrays); benchmarks/tf_vs_torch.py compares the two.
`--compare_strategies` times each step under TF's default strategy and
under tf.distribute.OneDeviceStrategy, interleaved, to measure what that
strategy costs. Source and target images have the same size here.

The three steps are timed in interleaved rounds (one step of each per
round) so that a change of load on a shared machine hits all three alike;
the figure is the median over the rounds after the warm-up rounds (the first
includes tracing). Learning rates are 0: the random-init weights then stay
put (a random-init ResNet-101 without BN statistics diverges in a few steps)
while every optimizer does exactly the same arithmetic as with a real rate.

--profile DIR writes a TF profiler trace of a few Stage I steps (view it with
TensorBoard's profile plugin) and times parts of the Stage I step as separate
graphs (G forward, G forward + backward, the D update's forward + backward,
the optimizer updates), interleaved with the whole step, for a rough
breakdown.

    python -m benchmarks.train_step --json /tmp/train_step.json --config tiny
    python -m benchmarks.train_step --json OUT --config toyscapes --compare_strategies
    python -m benchmarks.train_step --json OUT --config paper --steps 3 --warmup 1

--deterministic turns on TF op determinism (what `train --deterministic`
does) for the whole process; run once with and once without it to measure
its cost. --intra_d_output_stride S gives the Stage II step's
discriminators output stride S (train --intra_d_output_stride).
--intra_diag_every N makes the Stage II step measure the
adversarial share of G's gradient every N steps (0 = never, the default
here; the trainer's default is 50) to measure what that diagnostic costs.
"""

import json
import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# pylint: disable=wrong-import-position
# First: the package sets TensorFlow's CPU options (oneDNN) before TF loads,
# as `python -m tf_pixintra.train` does.
import tf_pixintra  # noqa: E402,F401
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tf_pixintra import io_utils  # noqa: E402
from tf_pixintra import losses  # noqa: E402
from tf_pixintra import models  # noqa: E402
from tf_pixintra import runtime  # noqa: E402
from tf_pixintra.adapters import optimizers as opt_lib  # noqa: E402
from tf_pixintra.adapters.common import upsample  # noqa: E402
from tf_pixintra.models import split_outputs  # noqa: E402
from tf_pixintra.adapters.inter import InterDomainAdapter  # noqa: E402
from tf_pixintra.adapters.intra import PixelIntraAdapter  # noqa: E402
from tf_pixintra.config import OptimConfig  # noqa: E402

from benchmarks.step_common import CONFIGS  # noqa: E402
from benchmarks.step_common import KINDS  # noqa: E402
from benchmarks.step_common import NUM_CLASSES  # noqa: E402
from benchmarks.step_common import SCHEDULE_STEPS  # noqa: E402
from benchmarks.step_common import config_names  # noqa: E402
from benchmarks.step_common import make_arrays  # noqa: E402
from benchmarks.step_common import print_seconds_table  # noqa: E402
from benchmarks.step_common import rounds  # noqa: E402
from benchmarks.step_common import machine  # noqa: E402
from benchmarks.step_common import spec  # noqa: E402
from benchmarks.step_common import step_parser  # noqa: E402
from benchmarks.step_common import time_interleaved  # noqa: E402
from benchmarks.step_common import timing_record  # noqa: E402

GOALS = {"stage1": 2.3, "stage2": 1.3}   # max ratio to the supervised step


def build_adapter(kind, cfg, seed=0, diag_every=0):
    """The compiled adapter of `kind` at configuration `cfg`."""
    g = models.build_deeplab_v2(NUM_CLASSES, depth=cfg["depth"],
                                width=cfg["width"], bn_mode=cfg["bn_mode"],
                                seed=seed)
    if kind == "supervised":
        adapter = InterDomainAdapter(g, variant="source_only")
    else:
        pixel = kind == "stage2"
        stride = cfg.get("d_output_stride", 32) if pixel else 32
        d_main = models.build_discriminator(NUM_CLASSES, ndf=cfg["ndf"],
                                            pixel_level=pixel, seed=seed + 1,
                                            name="d_main", output_stride=stride)
        d_aux = models.build_discriminator(NUM_CLASSES, ndf=cfg["ndf"],
                                           pixel_level=pixel, seed=seed + 2,
                                           name="d_aux", output_stride=stride)
        if kind == "stage1":
            adapter = InterDomainAdapter(g, d_main, d_aux,
                                         variant="adaptsegnet")
        else:
            adapter = PixelIntraAdapter(g, d_main, d_aux, method="cts",
                                        diag_every=diag_every)
    optim = OptimConfig(lr_d=0.0)
    adapter.compile(
        opt_lib.generator_optimizer(0.0, SCHEDULE_STEPS, optim, "float32"),
        opt_lib.discriminator_optimizer(optim.lr_d, SCHEDULE_STEPS, optim, "float32", "adam_dm"),
        opt_lib.discriminator_optimizer(optim.lr_d, SCHEDULE_STEPS, optim, "float32", "adam_da"))
    return adapter


def make_batch(kind, cfg, seed=0):
    """One in-memory batch for `kind`: step_common.make_arrays as tensors."""
    return {k: tf.constant(v) for k, v in make_arrays(kind, cfg, seed).items()}


def step_runner(adapter, batch, strategy=None):
    """A function running one compiled train step and waiting for it.

    Under a tf.distribute `strategy` the batches come from its distributed
    dataset, as in `fit`.
    """
    adapter.make_train_function()   # returns None when it builds one
    train_function = adapter.train_function
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    if strategy is not None:
        dataset = strategy.experimental_distribute_dataset(dataset)
    iterator = iter(dataset)

    def run():
        logs = train_function(iterator)
        return float(logs["loss_seg"])  # blocks until the step is done
    return run


def _block(tensors):
    """Waits for every tensor (a cheap read of one element each)."""
    for t in tf.nest.flatten(tensors):
        t.numpy().ravel()[:1]  # pylint: disable=expression-not-assigned


def stage1_breakdown(adapter, batch, steps, warmup):
    """Times parts of the Stage I step as separate tf.functions (seconds).

    The parts and the whole compiled step are timed in interleaved rounds.
    A rough decomposition: each part is compiled on its own (its outputs
    are materialised, nothing overlaps with other work), so the parts do
    not add up exactly to the step. One Stage I step runs G forward twice
    (source, target), G backward twice (source CE; target through the
    adversarial term and D), both Ds forward + backward on the source and
    target maps (their update) plus forward + input-backward on the target
    maps (inside G's loss), and the three optimizers once.
    """
    g, d_main, d_aux = adapter.generator, adapter.d_main, adapter.d_aux
    xs, ys = batch["source_image"], batch["source_label"]
    size = tf.shape(xs)[1:3]
    g_vars = g.trainable_variables
    d_vars = d_main.trainable_variables + d_aux.trainable_variables

    @tf.function
    def g_forward():
        main, aux = split_outputs(g(xs, training=True))
        return upsample(main, size), upsample(aux, size)

    @tf.function
    def g_forward_backward():
        with tf.GradientTape() as tape:
            main, aux = g_forward()
            loss = (losses.segmentation_cross_entropy(main, ys)
                    + 0.1 * losses.segmentation_cross_entropy(aux, ys))
        return tape.gradient(loss, g_vars)

    main_s, aux_s = g_forward()
    maps = [tf.nn.softmax(m) for m in (main_s, aux_s)]

    @tf.function
    def d_forward_backward():
        # Source and target maps alike here: same shapes, same work.
        with tf.GradientTape() as tape:
            loss = (losses.inter_discriminator_loss(
                d_main(maps[0], training=True), d_main(maps[0], training=True))
                    + losses.inter_discriminator_loss(
                        d_aux(maps[1], training=True),
                        d_aux(maps[1], training=True)))
        return tape.gradient(loss, d_vars)

    g_zeros = [tf.zeros_like(v) for v in g_vars]
    dm_zeros = [tf.zeros_like(v) for v in d_main.trainable_variables]
    da_zeros = [tf.zeros_like(v) for v in d_aux.trainable_variables]

    @tf.function
    def optimizers_apply():
        adapter.g_optimizer.apply(g_zeros, g_vars)
        adapter.d_main_optimizer.apply(dm_zeros, d_main.trainable_variables)
        adapter.d_aux_optimizer.apply(da_zeros, d_aux.trainable_variables)
        return tf.convert_to_tensor(adapter.g_optimizer.iterations)

    runners = {
        "g_forward_one_domain": lambda: _block(g_forward()),
        "g_forward_backward_source_ce": lambda: _block(g_forward_backward()),
        "d_update_forward_backward_both_ds_2_maps_each":
            lambda: _block(d_forward_backward()),
        "optimizers_apply_sgd_and_two_adams":
            lambda: _block(optimizers_apply()),
        "whole_stage1_step": step_runner(adapter, batch),
    }
    times = time_interleaved(runners, steps, warmup)
    return {name: statistics.median(t) for name, t in times.items()}


def profile_stage1(adapter, batch, logdir, steps=3):
    """Writes a profiler trace of `steps` Stage I train steps to `logdir`."""
    run = step_runner(adapter, batch)
    run()   # traced outside the profile
    tf.profiler.experimental.start(logdir)
    try:
        for step in range(steps):
            with tf.profiler.experimental.Trace("stage1_train", step_num=step,
                                                _r=1):
                run()
    finally:
        tf.profiler.experimental.stop()


def compare_strategies(name, cfg, steps, warmup):
    """Each step under TF's default strategy (what --strategy=one_device runs)
    and under tf.distribute.OneDeviceStrategy("/cpu:0") fed by its
    distributed dataset (as `fit` runs it), all six interleaved."""
    print(f"[{name}] building the adapters under both strategies ...",
          flush=True)
    one_device = tf.distribute.OneDeviceStrategy("/cpu:0")
    runners = {}
    for kind in KINDS:
        runners[(kind, "default")] = step_runner(build_adapter(kind, cfg),
                                                 make_batch(kind, cfg))
        with one_device.scope():
            adapter = build_adapter(kind, cfg)
        runners[(kind, "one_device_strategy")] = step_runner(
            adapter, make_batch(kind, cfg), one_device)
    print(f"[{name}] timing {warmup} warm-up + {steps} rounds ...", flush=True)
    times = time_interleaved(runners, steps, warmup)
    medians = {f"{kind}/{strategy}": statistics.median(t)
               for (kind, strategy), t in times.items()}
    return {
        "spec": spec(cfg),
        "steps": steps, "warmup": warmup,
        "seconds_per_step": medians,
        "ratio_one_device_strategy_to_default": {
            kind: medians[f"{kind}/one_device_strategy"]
            / medians[f"{kind}/default"] for kind in KINDS},
    }


def count_weights(weights):
    """Number of scalars in a list of Keras variables."""
    return int(sum(np.prod(v.shape) for v in weights))


def benchmark_config(name, cfg, steps, warmup, profile_dir=None, diag_every=0):
    """Times the three steps at one configuration; returns its JSON record."""
    print(f"[{name}] building the three adapters ...", flush=True)
    adapters = {kind: build_adapter(kind, cfg, diag_every=diag_every)
                for kind in KINDS}
    batches = {kind: make_batch(kind, cfg) for kind in KINDS}
    runners = {kind: step_runner(adapters[kind], batches[kind])
               for kind in KINDS}
    print(f"[{name}] timing {warmup} warm-up + {steps} rounds ...", flush=True)
    times = time_interleaved(runners, steps, warmup)
    record = {
        **timing_record(cfg, steps, warmup, times),
        "goal_max_ratio": GOALS,
        # Every weight of G (BN statistics included) / what its optimizer
        # trains / every weight of one D (d_main and d_aux are alike).
        "generator_parameters": count_weights(
            adapters["supervised"].generator.weights),
        "generator_trainable_parameters": count_weights(
            adapters["supervised"].generator.trainable_weights),
        "discriminator_parameters": count_weights(
            adapters["stage1"].d_main.weights),
    }
    if profile_dir:
        print(f"[{name}] profiling Stage I into {profile_dir} ...", flush=True)
        profile_stage1(adapters["stage1"], batches["stage1"], profile_dir)
        record["profile_dir"] = profile_dir
        record["stage1_breakdown"] = stage1_breakdown(
            adapters["stage1"], batches["stage1"], steps, warmup)
    return record


def print_table(results):
    print_seconds_table(results)
    print(f"goals: Stage I / supervised <= {GOALS['stage1']}, "
          f"Stage II / supervised <= {GOALS['stage2']}")
    for name, rec in results.items():
        if "stage1_breakdown" in rec:
            print(f"\nStage I breakdown ({name}): parts compiled and timed "
                  "on their own, interleaved with the whole step; rough, "
                  "they do not add up exactly.")
            print("  A step = 2 G fwd + 2 G bwd + the D update + D fwd and "
                  "input-bwd on the target maps + the optimizers.")
            for part, seconds in rec["stage1_breakdown"].items():
                print(f"  {part:48s} {seconds:8.4f} s")


def main(argv=None):
    parser = step_parser(__doc__)
    parser.add_argument("--compare_strategies", action="store_true",
                        help="instead: each step under TF's default strategy "
                             "vs tf.distribute.OneDeviceStrategy, interleaved")
    parser.add_argument("--deterministic", action="store_true",
                        help="TF op determinism and fixed global seeds, as "
                             "train --deterministic (compare with a run "
                             "without it)")
    parser.add_argument("--intra_diag_every", type=int, default=0,
                        help="Stage II step: measure the adversarial share of "
                             "G's gradient every N steps (0 = never)")
    parser.add_argument("--intra_d_output_stride", type=int, default=32,
                        help="Stage II step: the pixel-level Ds' output stride "
                             "(train --intra_d_output_stride; 32 = the paper's D)")
    parser.add_argument("--profile", default="",
                        help="directory for a profiler trace of Stage I steps "
                             "(first config only) and a Stage I breakdown")
    args = parser.parse_args(argv)
    if args.deterministic:
        runtime.set_deterministic(0)
    names = config_names(args)
    results = {}
    for i, name in enumerate(names):
        cfg = {**CONFIGS[name], "d_output_stride": args.intra_d_output_stride}
        steps, warmup = rounds(cfg, args)
        if args.compare_strategies:
            results[name] = compare_strategies(name, cfg, steps, warmup)
            print(json.dumps(results[name]["seconds_per_step"], indent=1))
            print("OneDeviceStrategy / default:",
                  results[name]["ratio_one_device_strategy_to_default"])
            continue
        results[name] = benchmark_config(
            name, cfg, steps, warmup,
            profile_dir=args.profile if (args.profile and i == 0) else None,
            diag_every=args.intra_diag_every)
        results[name]["deterministic"] = args.deterministic
        results[name]["intra_diag_every"] = args.intra_diag_every
    if not args.compare_strategies:
        print()
        print_table(results)
    io_utils.write_json(args.json, {
        "configs": results,
        "machine": {**machine(),
                    "tensorflow": tf.__version__,
                    "gpus": len(tf.config.list_physical_devices("GPU"))},
    })
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
