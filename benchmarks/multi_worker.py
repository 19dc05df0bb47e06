"""One worker against two: pseudo-stage images/s and Stage I steps/s.

Runs the same small ToyScapes job (`--pipeline=inter,pseudo` of the smoke
config with 128x256 images and a ResNet-18 at width 0.25 by default; image
size, width, Stage I steps, global batch and the number of target images
are flags) under --strategy=multi_worker, on
one worker and on two loopback workers (separate processes, each with its
TF_CONFIG, every one under --timeout and killed on expiry). Each worker
times, through wrappers around `stages.training.fit` and
`stages.pseudo_stage.run` (instrumentation only, the code is the
project's):

  Stage I   steps/s of `fit` after the first --skip steps (tracing,
            warm-up), on the chief; the global batch is the same on one and
            two workers (batch sizes are global), so steps/s compare directly;
  pseudo    target images / seconds of the whole pseudo stage (model load,
            pass 1, the waits, pass 2, the chief's index and summary), from
            the first worker's entry to the last one's exit (a worker that
            leaves Stage I late counts). Each worker's seconds in pass 1
            (its first image loads and traces the model), in pass 2 and
            waiting for the other worker are in the JSON.

Arms alternate over --repeats rounds; os.getloadavg() is recorded before and
after every arm; the JSON is written atomically.

What two workers on ONE 2-core machine can and cannot show: both workers
share the same two cores (and memory bandwidth), so no speed-up from more
hardware can appear. A single worker already uses both cores (TF's thread
pools); two workers split the work but compete for the same cores and add
the multi-worker costs: a gRPC all-reduce over loopback every Stage I step,
TF start-up and model tracing twice, the file waits of the pseudo stage.
So on one 2-core box the ratios measure that overhead (expect pseudo about
1x or a bit below, Stage I below 1x for a model this small), and that each
worker really does half of the pseudo labels. `--pin` puts worker k on core
k (and the one-worker arm on core 0 alone): a stand-in for one core per
machine, which shows how the work splits but still shares caches and memory
bandwidth. Real scaling needs workers on separate machines.

    python -m benchmarks.multi_worker --json /tmp/bench/multi_worker.json
    python -m benchmarks.multi_worker --inter_steps 6 --skip 2 \
        --target_images 8 --size 64,128 --width 0.125 \
        --json /tmp/mw_check.json                         # a quick check
"""

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time

from absl import flags

from tf_pixintra import config as config_lib
from tf_pixintra import io_utils
from tf_pixintra.data import toyscapes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(ROOT, "configs", "toyscapes_smoke.cfg")
RESULT = "RESULT "


# ------------------------------------------------------------------- child

def child(args, train_flags):
    """One worker: the pipeline with the two clocks; prints its RESULT line."""
    # pylint: disable=import-outside-toplevel
    # TensorFlow only in the workers: the parent stays a light launcher.
    import keras
    from absl import logging
    from tf_pixintra import train
    from tf_pixintra.stages import peers
    from tf_pixintra.stages import pseudo_stage
    from tf_pixintra.stages import training

    times = {}

    class StepClock(keras.callbacks.Callback):
        """Wall time from the end of step `skip` to the end of the last step."""

        def on_train_batch_end(self, batch, logs=None):
            now = time.perf_counter()
            if batch + 1 == args.skip:
                times["fit_start"] = now
            elif batch + 1 > args.skip:
                times["fit_end"] = now
                times["fit_steps"] = batch + 1 - args.skip

    fit = training.fit
    pseudo_run = pseudo_stage.run

    def timed_fit(*a, callbacks=(), **kw):
        return fit(*a, callbacks=[StepClock(), *callbacks], **kw)

    def timed_pseudo(ctx, round_index):
        start, times["pseudo_entry"] = time.perf_counter(), time.time()
        times["in_pseudo"] = True
        out = pseudo_run(ctx, round_index)
        times["in_pseudo"] = False
        times["pseudo_seconds"] = time.perf_counter() - start
        times["pseudo_exit"] = time.time()
        times["pseudo_images"] = len(ctx.sources.target_train)
        return out
    training.fit, pseudo_stage.run = timed_fit, timed_pseudo

    def add_time(module, name, key):
        """Adds the seconds in module.name to times[key] (in the pseudo stage)."""
        original = getattr(module, name)

        def timed(*a, **kw):
            start = time.perf_counter()
            try:
                return original(*a, **kw)
            finally:
                if times.get("in_pseudo"):
                    times[key] = (times.get(key, 0.0) + time.perf_counter()
                                  - start)
        setattr(module, name, timed)
    add_time(pseudo_stage, "_pass1", "pass1_seconds")
    add_time(pseudo_stage, "_pass2", "pass2_seconds")
    add_time(peers, "wait_for", "wait_seconds")
    logging.use_absl_handler()   # the stages' log with times, in the worker log
    logging.set_verbosity(logging.INFO)

    flag_values = flags.FlagValues()
    config_lib.define_flags(flag_values)
    flag_values(["multi_worker", *train_flags])
    train.run(config_lib.from_flags(flag_values))
    steps = times.get("fit_steps", 0)
    print(RESULT + json.dumps({
        "task": json.loads(os.environ["TF_CONFIG"])["task"]["index"],
        "stage1_steps_per_s": (steps / (times["fit_end"] - times["fit_start"])
                               if steps else None),
        "stage1_timed_steps": steps,
        "pseudo_seconds": times["pseudo_seconds"],
        "pseudo_images": times["pseudo_images"],
        "pseudo_entry": times["pseudo_entry"],
        "pseudo_exit": times["pseudo_exit"],
        **{key: times.get(key, 0.0) for key in (
            "pass1_seconds", "pass2_seconds", "wait_seconds")}}), flush=True)


# ------------------------------------------------------------------ parent

def loopback_ports(count):
    """`count` ports free on 127.0.0.1 at the time of asking."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_arm(args, num_workers, train_flags, log_dir):
    """Runs the job on `num_workers` loopback workers; their RESULT dicts."""
    ports = loopback_ports(num_workers)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    # pylint: disable=consider-using-with   (closed and reaped in `finally`)
    try:
        for task in range(num_workers):
            env = dict(os.environ, CUDA_VISIBLE_DEVICES="",
                       TF_CPP_MIN_LOG_LEVEL="2", TF_CONFIG=json.dumps({
                           "cluster": cluster,
                           "task": {"type": "worker", "index": task}}))
            command = [sys.executable, "-m", "benchmarks.multi_worker",
                       "--child", "--skip", str(args.skip), "--", *train_flags]
            if args.pin:
                command = ["taskset", "-c", str(task % os.cpu_count()), *command]
            log = open(os.path.join(log_dir, f"{num_workers}w_task{task}.log"),
                       "w+", encoding="utf-8")
            procs.append((subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env,
                cwd=ROOT), log))
        deadline = time.monotonic() + args.timeout
        while any(p.poll() is None for p, _ in procs):
            failed = [p for p, _ in procs if p.poll() not in (None, 0)]
            if failed or time.monotonic() > deadline:
                why = (f"exit {failed[0].returncode}" if failed
                       else f"still running after {args.timeout} s")
                raise SystemExit(f"{num_workers}-worker arm failed ({why}); "
                                 f"logs in {log_dir}:\n" + _tails(procs))
            time.sleep(0.5)
        if any(p.returncode != 0 for p, _ in procs):
            raise SystemExit(f"{num_workers}-worker arm failed; logs in "
                             f"{log_dir}:\n" + _tails(procs))
        results = []
        for _, log in procs:
            log.seek(0)
            lines = [l for l in log.read().splitlines() if l.startswith(RESULT)]
            if not lines:
                raise SystemExit(f"a worker printed no result:\n{_tails(procs)}")
            results.append(json.loads(lines[-1][len(RESULT):]))
        return results
    finally:
        for p, log in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            log.close()


def _tails(procs, chars=3000):
    out = []
    for _, log in procs:
        log.seek(0)
        out.append(f"--- {log.name}\n{log.read()[-chars:]}")
    return "\n".join(out)


def summarise(results):
    """Stage I steps/s (chief) and pseudo images/s of an arm.

    The pseudo stage's seconds run from the first worker's entry to the
    last one's exit (wall clocks of one machine): what the stage costs the
    pipeline, including a worker that starts late.
    """
    chief = next(r for r in results if r["task"] == 0)
    span = (max(r["pseudo_exit"] for r in results)
            - min(r["pseudo_entry"] for r in results))
    return {"stage1_steps_per_s": chief["stage1_steps_per_s"],
            "pseudo_images_per_s": chief["pseudo_images"] / span,
            "pseudo_span_seconds": span}


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", default="")
    parser.add_argument("--work_dir", default="/tmp/multi_worker_bench")
    parser.add_argument("--workers", default="1,2",
                        help="comma-separated worker counts to compare")
    parser.add_argument("--inter_steps", type=int, default=30)
    parser.add_argument("--skip", type=int, default=5,
                        help="Stage I steps left out of the time (warm-up)")
    parser.add_argument("--batch_size", type=int, default=4,
                        help="Stage I global batch (divisible by each count)")
    parser.add_argument("--target_images", type=int, default=192)
    parser.add_argument("--size", default="128,256",
                        help="H,W of the images, the training and eval size")
    parser.add_argument("--width", type=float, default=0.25,
                        help="ResNet-18 width multiplier")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=1800,
                        help="seconds per arm; its workers are killed after")
    parser.add_argument("--pin", action="store_true",
                        help="worker k on core k only (taskset)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    rest = [a for a in rest if a != "--"]
    if args.child:
        return child(args, rest)
    if not 1 <= args.skip < args.inter_steps:
        parser.error("--skip must be in 1..--inter_steps - 1")
    counts = [int(v) for v in args.workers.split(",")]
    height, width = (int(v) for v in args.size.split(","))
    size = f"{height},{width}"
    data_dir = os.path.join(args.work_dir, f"toyscapes_{height}x{width}")
    base = ["--flagfile", SMOKE, f"--toyscapes_dir={data_dir}",
            f"--toyscapes_counts=24,{args.target_images},2",
            f"--toyscapes_image_size={size}", f"--source_size={size}",
            f"--target_size={size}", f"--eval_size={size}",
            f"--crop_size={height * 3 // 4},{width * 3 // 4}",
            f"--width={args.width}",
            "--pipeline=inter,pseudo", "--strategy=multi_worker",
            f"--inter_steps={args.inter_steps}",
            f"--inter_batch_size={args.batch_size}",
            f"--checkpoint_every={args.inter_steps}", "--log_every=0",
            "--image_every=0", "--num_preview_images=0",
            f"--peer_wait_secs={args.timeout}"]
    # The data once, before any arm (else the first arm's workers make it).
    toyscapes.ensure_toyscapes(data_dir, seed=0, num_source=24,
                               num_target=args.target_images, num_val=2,
                               height=height, width=width)
    log_dir = os.path.join(args.work_dir, "logs")
    os.makedirs(log_dir, exist_ok=True)
    arms = {n: [] for n in counts}
    for repeat in range(args.repeats):
        for n in counts:
            run_dir = os.path.join(args.work_dir, f"run_{n}w")
            shutil.rmtree(run_dir, ignore_errors=True)
            load_before = os.getloadavg()
            results = run_arm(args, n, [*base, f"--run_dir={run_dir}"], log_dir)
            arm = {"workers": results, **summarise(results),
                   "load_average_before": load_before,
                   "load_average_after": os.getloadavg()}
            arms[n].append(arm)
            print(f"round {repeat}: {n} worker(s): Stage I "
                  f"{arm['stage1_steps_per_s']:.2f} steps/s, pseudo "
                  f"{arm['pseudo_images_per_s']:.2f} images/s (load "
                  f"{load_before[0]:.2f} -> {arm['load_average_after'][0]:.2f})",
                  flush=True)
    medians = {n: {key: statistics.median(a[key] for a in arms[n])
                   for key in ("stage1_steps_per_s", "pseudo_images_per_s")}
               for n in counts}
    one = medians[counts[0]]
    for n in counts[1:]:
        ratios = {key: medians[n][key] / one[key] for key in one}
        print(f"{n} workers / {counts[0]}: Stage I "
              f"{ratios['stage1_steps_per_s']:.2f}x, pseudo "
              f"{ratios['pseudo_images_per_s']:.2f}x")
    if args.json:
        io_utils.write_json(args.json, {
            "settings": {k: v for k, v in vars(args).items()
                         if k not in ("json", "child")},
            "flags": base, "arms": {str(n): a for n, a in arms.items()},
            "median": {str(n): m for n, m in medians.items()},
            "machine": {"platform": platform.platform(),
                        "cpu_count": os.cpu_count(),
                        "python": platform.python_version()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
