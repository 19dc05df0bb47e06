"""Reproduction report on ToyScapes: the paper's arms, over several seeds.

For each seed it runs (python -m tf_pixintra.train, one run directory per
arm, completed stages shared through symlinks so nothing is trained twice
and PLA and PLA + CTS read the same pseudo labels):
  source-only, INTER (Stage I), IntraDA (image-level, Table 4), PLA, PLA + CTS,
  + T=1 (round two, no KLD), + KLD (round two with KLD), and the easy-pixel
  proportion sweep of Table 5 (alpha -> Prop. -> mIoU for IntraDA, PLA,
  PLA + CTS; IntraDA's lambda is set to the Prop. of that alpha, as the paper
  does; Prop. = 1 is plain self-training on every pseudo label).
Then it writes benchmarks/RESULTS_TOYSCAPES.md (or --out): mean +- std of
target-val mIoU per arm, per-class tables, whether the paper's ordering
INTER < IntraDA < PLA < PLA + CTS holds, the commands, machine and wall time.

    python benchmarks/reproduce_toyscapes.py --seeds 0,1,2            # the report
    python benchmarks/reproduce_toyscapes.py --quick --work_dir /tmp/q  # every arm, briefly

No setting is tuned here: every arm uses configs/toyscapes.cfg (or the smoke
config with --quick) and differs only in the flags that define the arm.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# pylint: disable=wrong-import-position
from tf_pixintra.data.labels import CLASS_NAMES  # noqa: E402
from tf_pixintra.io_utils import write_text  # noqa: E402
from tf_pixintra.tables import per_class_table  # noqa: E402

# arm: (pipeline, extra flags, stage directories borrowed from another arm)
ARMS = {
    "source-only": ("source_only", [], {}),
    "INTER": ("inter", [], {}),
    "IntraDA": ("inter,pseudo,intra", ["--selector=intrada",
                                       "--intra_method=intrada"],
                {"inter": "INTER"}),
    "PLA": ("inter,pseudo,intra", ["--intra_method=pla"], {"inter": "INTER"}),
    # The same pseudo labels as PLA (same model, alpha and selector).
    "PLA + CTS": ("inter,pseudo,intra", ["--intra_method=cts"],
                  {"inter": "INTER", "pseudo_r1": "PLA"}),
    "+ T=1": ("inter,pseudo,intra,pseudo,intra",
              ["--intra_method=cts", "--intra_kld_lambda=0"],
              {"inter": "INTER", "pseudo_r1": "PLA + CTS",
               "intra_r1": "PLA + CTS"}),
    "+ KLD": ("inter,pseudo,intra,pseudo,intra", ["--intra_method=cts"],
              {"inter": "INTER", "pseudo_r1": "PLA + CTS",
               "intra_r1": "PLA + CTS"}),
}
ORDERING = ("INTER", "IntraDA", "PLA", "PLA + CTS")
SWEEP_METHODS = ("IntraDA", "PLA", "PLA + CTS")


def slug(name):
    return "".join(c if c.isalnum() else "_" for c in name).strip("_").lower()


class Runner:
    """Runs train.py for one (seed, arm) and collects its metrics."""

    def __init__(self, config, work_dir, extra, log):
        self.config, self.work_dir, self.extra, self.log = config, work_dir, extra, log
        self.commands = []

    def run_dir(self, seed, arm):
        return os.path.join(self.work_dir, f"seed{seed}", slug(arm))

    def run(self, seed, arm, pipeline, flags, borrow):
        run_dir = self.run_dir(seed, arm)
        os.makedirs(run_dir, exist_ok=True)
        for stage, donor in borrow.items():
            link = os.path.join(run_dir, stage)
            if not os.path.lexists(link):
                os.symlink(os.path.abspath(os.path.join(self.run_dir(seed, donor), stage)), link)
        command = [sys.executable, "-m", "tf_pixintra.train",
                   f"--flagfile={self.config}", f"--run_dir={run_dir}",
                   f"--seed={seed}", "--stage=all", f"--pipeline={pipeline}",
                   "--verbose=0", *self.extra, *flags]
        self.commands.append(" ".join(command[1:]))
        start = time.time()
        with open(self.log, "a", encoding="utf-8") as log:
            log.write("$ " + " ".join(command) + "\n")
            log.flush()
            subprocess.run(command, cwd=ROOT, stdout=log, stderr=log, check=True)
        summary = json.load(open(os.path.join(run_dir, "summary.json"), encoding="utf-8"))
        last = [m for m in summary.values() if m and "target_miou" in m][-1]
        print(f"seed {seed} {arm:<24} mIoU {last['target_miou']:6.2f} "
              f"({time.time() - start:.0f} s)", flush=True)
        return {"miou": last["target_miou"], "iou": last["target_iou"],
                "summary": summary}


def sweep_arms(props, methods=SWEEP_METHODS):
    """Table 5 arms: (name, pipeline, flags, borrow) for each alpha."""
    arms = []
    for alpha, prop in props.items():
        for method in methods:
            name = f"{method} @ alpha {alpha}"
            flags = [f"--alpha={alpha}"]
            if method == "IntraDA":
                flags += ["--selector=intrada", "--intra_method=intrada",
                          f"--intrada_lambda={prop:.4f}"]
            else:
                flags.append("--intra_method=" + ("pla" if method == "PLA" else "cts"))
            borrow = {"inter": "INTER"}
            if method == "PLA + CTS" and "PLA" in methods:
                borrow["pseudo_r1"] = f"PLA @ alpha {alpha}"  # same labels
            arms.append((name, "inter,pseudo,intra", flags, borrow))
    arms.append(("self-training, Prop. = 1", "inter,pseudo,intra",
                 ["--alpha=0", "--intra_method=none"], {"inter": "INTER"}))
    return arms


def mean_std(values):
    values = np.asarray(values, float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def mean_iou_dict(results):
    out = {}
    for name in CLASS_NAMES:
        vals = [r["iou"].get(name) for r in results]
        vals = [v for v in vals if v is not None]
        out[name] = float(np.mean(vals)) if vals else None
    return out


def report(rows, sweep_rows, props, seeds, commands, wall, args):
    lines = ["# ToyScapes reproduction report", "",
             f"Generated by `python benchmarks/reproduce_toyscapes.py "
             f"{' '.join(sys.argv[1:])}` on {time.strftime('%Y-%m-%d')}.", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores "
             f"({platform.processor() or 'cpu'}), Python {platform.python_version()}; "
             f"wall time {wall / 60:.1f} min for {len(seeds)} seed(s) {list(seeds)}.",
             f"Config: `{os.path.relpath(args.config, ROOT)}` for every arm; arms "
             "differ only in the flags listed under Commands.", "",
             "## Target-val mIoU per arm (mean +- std over seeds)", "",
             "| arm | mIoU | per seed |", "|---|---|---|"]
    means = {}
    for arm, results in rows.items():
        m, s = mean_std([r["miou"] for r in results])
        means[arm] = m
        per_seed = ", ".join(f"{r['miou']:.2f}" for r in results)
        lines.append(f"| {arm} | {m:.2f} +- {s:.2f} | {per_seed} |")
    lines += ["", "## Does ToyScapes agree with the paper's ordering?", ""]
    for a, b in zip(ORDERING[:-1], ORDERING[1:]):
        if a in means and b in means:
            verdict = "agrees" if means[a] < means[b] else "DOES NOT agree"
            lines.append(f"- {a} ({means[a]:.2f}) < {b} ({means[b]:.2f}): {verdict} "
                         "(means over seeds)")
    for a, b in (("PLA + CTS", "+ T=1"), ("+ T=1", "+ KLD"), ("source-only", "INTER")):
        if a in means and b in means:
            verdict = "agrees" if means[a] < means[b] else "DOES NOT agree"
            lines.append(f"- {a} ({means[a]:.2f}) < {b} ({means[b]:.2f}): {verdict}")
    lines += ["", "## Per-class IoU (mean over seeds)", "",
              per_class_table([(arm, mean_iou_dict(r)) for arm, r in rows.items()], 19)]
    if sweep_rows:
        lines += ["", "## Table 5: proportion of easy pixels (alpha -> Prop. -> mIoU)", "",
                  "Prop. is measured on the INTER model's target-train predictions "
                  "(mean over seeds). IntraDA uses lambda = Prop.", "",
                  "| method | " + " | ".join(f"alpha {a} (Prop. {p:.2f})"
                                         for a, p in props.items()) + " | Prop. = 1 |",
                  "|---|" + "---|" * (len(props) + 1)]
        for method in [m for m in SWEEP_METHODS
                       if f"{m} @ alpha {next(iter(props))}" in sweep_rows]:
            cells = []
            for alpha in props:
                m, s = mean_std([r["miou"] for r in sweep_rows[f"{method} @ alpha {alpha}"]])
                cells.append(f"{m:.2f} +- {s:.2f}")
            m1, s1 = mean_std([r["miou"] for r in sweep_rows["self-training, Prop. = 1"]])
            lines.append(f"| {method} | " + " | ".join(cells) + f" | {m1:.2f} +- {s1:.2f} |")
    lines += ["", "## Commands", "", "```"] + commands + ["```", ""]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--work_dir", default=os.path.join(ROOT, "runs", "reproduce"))
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "RESULTS_TOYSCAPES.md"))
    parser.add_argument("--quick", action="store_true",
                        help="every arm briefly, the sweep for PLA only (smoke "
                        "config): for the test suite")
    parser.add_argument("--no_sweep", action="store_true")
    parser.add_argument("--arms", default=",".join(ARMS),
                        help="comma-separated subset of the arms (in order)")
    parser.add_argument("--alphas", default="0.7,1.0",
                        help="extra alphas of the Table 5 sweep (0.85 is the main arm)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    alphas = [float(a) for a in args.alphas.split(",")]
    extra = ["--alpha_sweep=" + ",".join(str(a) for a in [0.85, *alphas])]
    args.config = os.path.join(ROOT, "configs", "toyscapes.cfg")
    if args.quick:
        args.config = os.path.join(ROOT, "configs", "toyscapes_smoke.cfg")
        args.alphas = "1.0"
        alphas = [1.0]
        extra = ["--alpha_sweep=0.85,1.0", "--inter_steps=2", "--intra_steps=2", "--export_tflite=fp32",
                 f"--toyscapes_dir={os.path.join(args.work_dir, 'toyscapes')}"]
    os.makedirs(args.work_dir, exist_ok=True)
    runner = Runner(args.config, args.work_dir, extra,
                    os.path.join(args.work_dir, "train.log"))
    start = time.time()
    arms = {a: ARMS[a] for a in args.arms.split(",")}
    for arm, (_, _, borrow) in arms.items():
        missing = set(borrow.values()) - set(arms)
        if missing:
            parser.error(f"arm {arm!r} reuses stages of {sorted(missing)}: "
                         "add them to --arms")
    rows = {arm: [] for arm in arms}
    sweep_rows, props_per_seed = {}, []
    for seed in seeds:
        for arm, (pipeline, flags, borrow) in arms.items():
            rows[arm].append(runner.run(seed, arm, pipeline, flags, borrow))
        if "PLA + CTS" in rows and not args.no_sweep:
            sweep = rows["PLA + CTS"][-1]["summary"]["pseudo_r1"]["alpha_sweep"]
            props = {float(a): v for a, v in sweep.items() if float(a) in alphas}
            props_per_seed.append(props)
            methods = ("PLA",) if args.quick else SWEEP_METHODS
            for name, pipeline, flags, borrow in sweep_arms(props, methods):
                sweep_rows.setdefault(name, []).append(
                    runner.run(seed, name, pipeline, flags, borrow))
    props = ({a: float(np.mean([p[a] for p in props_per_seed]))
              for a in props_per_seed[0]} if props_per_seed else {})
    text = report(rows, sweep_rows, props, seeds, runner.commands,
                  time.time() - start, args)
    write_text(args.out, text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
