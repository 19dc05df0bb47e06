"""TF vs PyTorch seconds per training step, measured in one interleaved run.

For each round and each config, runs `python -m benchmarks.train_step`
(TensorFlow) and then `python -m benchmarks.torch_step` (PyTorch), each in
its own process (TF, PyTorch, TF, PyTorch, ...), with the same --steps /
--warmup, so that a change of load on the machine hits both alike. Before
each run it records os.getloadavg(). Each run's figure per kind is that
script's median over its timed rounds; the table gives, per config and kind,
the best run and the median over the runs of each side, TF / PyTorch for
both, and the range of the 1-minute load average before the runs. Run it
with the machine otherwise idle.

    python -m benchmarks.tf_vs_torch --configs tiny,r101_256,paper --rounds 3 --json /tmp/tf_vs_torch.json

Each run's JSON and log go to --work_dir (default: beside --json); the
summary JSON is rewritten (atomically) after every run, so an interrupted
measurement keeps what it has. A failed run is recorded (exit code, end of
its log) and left out of the table.

PyTorch uses its default threads (one per core) unless --torch_threads.
Its OpenMP threads slow down far more than TF's thread pool when the cores
are shared with other work (a quick check on a loaded 2-core machine: the
tiny step an order of magnitude slower on 2 threads than on 1): measure on
an idle machine and keep the load column in view.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

from tf_pixintra import io_utils

from benchmarks.step_common import CONFIGS
from benchmarks.step_common import KINDS
from benchmarks.step_common import add_rounds_flags
from benchmarks.step_common import machine

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = {"tf": "benchmarks.train_step", "torch": "benchmarks.torch_step"}
# The weight counts both scripts report; the table notes any difference.
COUNTS = ("generator_parameters", "generator_trainable_parameters",
          "discriminator_parameters")


def command(framework, config, json_path, steps=0, warmup=-1,
            torch_threads=0):
    """The command line of one run."""
    cmd = [sys.executable, "-m", SCRIPTS[framework], "--config", config,
           "--json", json_path]
    if steps:
        cmd += ["--steps", str(steps)]
    if warmup >= 0:
        cmd += ["--warmup", str(warmup)]
    if torch_threads and framework == "torch":
        cmd += ["--threads", str(torch_threads)]
    return cmd


def run_one(framework, config, round_index, work_dir, args):
    """Runs one script once; returns its record for the summary."""
    stem = os.path.join(work_dir, f"{framework}_{config}_r{round_index}")
    cmd = command(framework, config, stem + ".json", args.steps, args.warmup,
                  args.torch_threads)
    record = {"framework": framework, "config": config, "round": round_index,
              "load_before": list(os.getloadavg()), "command": cmd[1:]}
    start = time.perf_counter()
    with open(stem + ".log", "w", encoding="utf-8") as log:
        done = subprocess.run(cmd, cwd=REPO, stdout=log,
                              stderr=subprocess.STDOUT, check=False)
    record["wall_seconds"] = time.perf_counter() - start
    record["returncode"] = done.returncode
    if done.returncode != 0:
        with open(stem + ".log", encoding="utf-8") as log:
            record["log_tail"] = log.read()[-2000:]
        return record
    result = io_utils.read_json(stem + ".json")["configs"][config]
    record["seconds_per_step"] = result["seconds_per_step"]
    record.update({k: result.get(k) for k in COUNTS})
    return record


def _fmt_ratio(a, b):
    return f"{a / b:.2f}" if b > 0 else "-"


def markdown_table(runs):
    """Markdown lines: per config and kind, TF and PyTorch s/step (best run
    and median over runs), TF / PyTorch of each, and the load range.

    `runs`: records with framework ("tf" | "torch"), config, load_before
    (os.getloadavg()) and seconds_per_step {kind: s}; failed runs (no
    seconds_per_step) are left out. Configs keep their first-seen order.
    """
    lines = ["| config | kind | TF s/step best | TF s/step median | "
             "PyTorch s/step best | PyTorch s/step median | "
             "TF/PyTorch best | TF/PyTorch median | load (1 min) |",
             "|---|---|---|---|---|---|---|---|---|"]
    ok = [r for r in runs if r.get("seconds_per_step")]
    configs = list(dict.fromkeys(r["config"] for r in ok))
    notes = []
    for config in configs:
        mine = [r for r in ok if r["config"] == config]
        loads = [r["load_before"][0] for r in mine]
        load = f"{min(loads):.2f}-{max(loads):.2f}"
        for kind in KINDS:
            figures = {fw: [r["seconds_per_step"][kind] for r in mine
                            if r["framework"] == fw] for fw in SCRIPTS}
            if not all(figures.values()):
                continue
            best = {fw: min(v) for fw, v in figures.items()}
            median = {fw: statistics.median(v) for fw, v in figures.items()}
            lines.append(
                f"| {config} | {kind} | {best['tf']:.4f} | "
                f"{median['tf']:.4f} | {best['torch']:.4f} | "
                f"{median['torch']:.4f} | "
                f"{_fmt_ratio(best['tf'], best['torch'])} | "
                f"{_fmt_ratio(median['tf'], median['torch'])} | {load} |")
        for key in COUNTS:
            values = {fw: {r.get(key) for r in mine if r["framework"] == fw}
                      for fw in SCRIPTS}
            if values["tf"] and values["torch"] and values["tf"] != values["torch"]:
                notes.append(f"{config}: {key} differs (TF {sorted(values['tf'])}, "
                             f"PyTorch {sorted(values['torch'])})")
    runs_per_side = {fw: sum(r["framework"] == fw for r in ok) for fw in SCRIPTS}
    lines.append("")
    lines.append(f"Runs: {runs_per_side['tf']} TF, {runs_per_side['torch']} "
                 "PyTorch; each run's figure is its median over its timed "
                 "rounds.")
    return lines + notes


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True, help="summary JSON path")
    parser.add_argument("--configs", default="tiny",
                        help=f"comma-separated, of {', '.join(CONFIGS)}")
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs of each script per config")
    add_rounds_flags(parser, passed_on="passed on: ")
    parser.add_argument("--torch_threads", type=int, default=0,
                        help="passed on to torch_step --threads (0 = "
                             "PyTorch's default)")
    parser.add_argument("--work_dir", default="",
                        help="each run's JSON and log (default: JSON path "
                             "without .json, plus _runs)")
    args = parser.parse_args(argv)
    configs = [c for c in args.configs.split(",") if c]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown or not configs:
        parser.error(f"--configs={args.configs!r}: expected names from "
                     f"{', '.join(CONFIGS)}")
    if args.rounds < 1:
        parser.error(f"--rounds={args.rounds}: expected >= 1")
    work_dir = args.work_dir or os.path.splitext(args.json)[0] + "_runs"
    os.makedirs(work_dir, exist_ok=True)
    summary = {"configs": configs, "rounds": args.rounds, "steps": args.steps,
               "warmup": args.warmup, "torch_threads": args.torch_threads,
               "work_dir": work_dir,
               "machine": machine(), "runs": []}
    for round_index in range(args.rounds):
        for config in configs:
            for framework in SCRIPTS:
                print(f"round {round_index + 1}/{args.rounds}: {framework} "
                      f"{config} (load {os.getloadavg()[0]:.2f}) ...",
                      flush=True)
                record = run_one(framework, config, round_index, work_dir,
                                 args)
                if record["returncode"] != 0:
                    print(f"  FAILED (exit {record['returncode']}), log: "
                          f"{work_dir}", flush=True)
                summary["runs"].append(record)
                summary["table"] = markdown_table(summary["runs"])
                io_utils.write_json(args.json, summary)
    print()
    print("\n".join(summary["table"]))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
