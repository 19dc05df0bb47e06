"""Reproduction report on ToyScapes: the paper's arms, over several seeds.

For each seed it runs (python -m tf_pixintra.train, one run directory per
arm, completed stages shared through symlinks so nothing is trained twice
and PLA and PLA + CTS read the same pseudo labels):
  source-only, INTER (Stage I), IntraDA (image-level, Table 4), PLA, PLA + CTS,
  + T=1 (round two, no KLD), + KLD (round two with KLD), an ablation without
  the discriminators (Eq. 5 on PLA's easy pixels only), and the easy-pixel
  proportion sweep of Table 5 (alpha -> Prop. -> mIoU for IntraDA, PLA,
  PLA + CTS; IntraDA's lambda is set to the Prop. of that alpha, as the paper
  does; Prop. = 1 is plain self-training on every pseudo label).
Then it writes benchmarks/RESULTS_TOYSCAPES.md (or --out): mean +- std of
target-val mIoU per arm, per-class tables, whether the paper's ordering
INTER < IntraDA < PLA < PLA + CTS holds, the commands, machine and wall time.

    python -m benchmarks.reproduce_toyscapes --seeds 0,1,2            # the report
    python -m benchmarks.reproduce_toyscapes --quick --work_dir /tmp/q  # the paper's arms, briefly
    python -m benchmarks.reproduce_toyscapes --seeds 0,1,2 --report_only  # rewrite the report

No setting is tuned here: every arm uses configs/toyscapes.cfg (or the smoke
config with --quick) and differs only in the flags that define the arm.
"""

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# pylint: disable=wrong-import-position
from benchmarks import choose_d_settings  # noqa: E402
from benchmarks import hard_pixels  # noqa: E402
from tf_pixintra.data.labels import CLASS_NAMES  # noqa: E402
from tf_pixintra.io_utils import write_text  # noqa: E402
from tf_pixintra.tables import per_class_table  # noqa: E402

INTRADA_BETA = ["--intra_beta_main=0.001", "--intra_beta_aux=0.0002"]
# The per-method beta chosen with the configs' D (their comment; the rule
# and the run are in RESULTS_TOYSCAPES.md, "Discriminator settings"), used
# without --d_settings: the configs' own beta is CTS's, 10x PLA's.
CHOSEN_BETA = {"pla": ["--intra_beta_main=1", "--intra_beta_aux=0.2"]}
NO_D = "easy pixels without D"
RERUN = "PLA again"
# arm: (pipeline, extra flags, stage directories borrowed from another arm)
ARMS = {
    "source-only": ("source_only", [], {}),
    "INTER": ("inter", [], {}),
    # IntraDA at its paper's weights (the configs' beta is CTS's).
    "IntraDA": ("inter,pseudo,intra", ["--selector=intrada",
                                       "--intra_method=intrada", *INTRADA_BETA],
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
    # Ablation, not in the paper's tables: PLA's pseudo labels and Eq. 5 on
    # the easy pixels, no discriminator. Same seed, so the same initial model
    # and batches as PLA: the difference is what the adversarial term adds.
    NO_D: ("inter,pseudo,intra", ["--intra_method=none"],
           {"inter": "INTER", "pseudo_r1": "PLA"}),
    # PLA's Stage II again, same seed and flags, in its own run directory:
    # the run-to-run noise of Stage II (TF's CPU kernels are not
    # deterministic without --deterministic).
    RERUN: ("inter,pseudo,intra", ["--intra_method=pla"],
            {"inter": "INTER", "pseudo_r1": "PLA"}),
}
# The positive control (configs/toyscapes_control.cfg): the arms that say
# whether aligning hard pixels to easy ones helps where it should.
CONTROL_ARMS = ("INTER", "PLA", "PLA + CTS", NO_D)
# Diagnostics of the arm's last training stage (adapters/diagnostics.py).
DIAG_COLUMNS = (("AUC D_main", "diag_auc_d"), ("AUC D_aux", "diag_auc_d_aux"),
                ("corr(D, Z)", "diag_zcorr_d"), ("adv. share of G's grad",
                                                 "diag_adv_grad_share"))
# Prop. is also measured at the configs' own alpha (0.85), the main arms'.
MAIN_ALPHA = 0.85
EVAL_SIZE = (64, 128)   # the ToyScapes configs' --eval_size
ORDERING = ("INTER", "IntraDA", "PLA", "PLA + CTS")
SWEEP_METHODS = ("IntraDA", "PLA", "PLA + CTS")


def method_flags(d_settings):
    """{method: beta flags} added to the arms of that --intra_method: the
    --d_settings choice if given, else CHOSEN_BETA."""
    if d_settings is None:
        return CHOSEN_BETA
    return {m: choose_d_settings.beta_flags(d_settings[1], m) for m in d_settings[1]["beta"]}


def slug(name):
    return "".join(c if c.isalnum() else "_" for c in name).strip("_").lower()


class Runner:
    """Runs train.py for one (seed, arm) and collects its metrics."""

    def __init__(self, config, work_dir, extra, log, report_only=False,
                 method_flags=None):
        self.config, self.work_dir, self.extra, self.log = config, work_dir, extra, log
        self.report_only = report_only
        # {method: flags} added to every arm of that --intra_method (the
        # per-method beta of benchmarks.choose_d_settings).
        self.method_flags = method_flags or {}
        self.commands = []

    def run_dir(self, seed, arm):
        return os.path.join(self.work_dir, f"seed{seed}", slug(arm))

    def run(self, seed, arm, pipeline, flags, borrow):
        run_dir = self.run_dir(seed, arm)
        for method, more in self.method_flags.items():
            if f"--intra_method={method}" in flags:
                flags = [*flags, *more]
        command = [sys.executable, "-m", "tf_pixintra.train",
                   f"--flagfile={self.config}", f"--run_dir={run_dir}",
                   f"--seed={seed}", "--stage=all", f"--pipeline={pipeline}",
                   "--keras_verbose=0", *self.extra, *flags]
        # As a reader would type it from the checkout.
        self.commands.append("python " + " ".join(command[1:]).replace(ROOT + os.sep, ""))
        if self.report_only:
            return self.collect(run_dir, seed, arm)
        os.makedirs(run_dir, exist_ok=True)
        for stage, donor in borrow.items():
            link = os.path.join(run_dir, stage)
            if not os.path.lexists(link):
                os.symlink(os.path.abspath(os.path.join(self.run_dir(seed, donor), stage)), link)
        start = time.time()
        with open(self.log, "a", encoding="utf-8") as log:
            log.write("$ " + " ".join(command) + "\n")
            log.flush()
            subprocess.run(command, cwd=ROOT, stdout=log, stderr=log, check=True)
        return self.collect(run_dir, seed, arm, f" ({time.time() - start:.0f} s)")

    @staticmethod
    def collect(run_dir, seed, arm, note=""):
        """The arm's last target mIoU, per-class IoU and summary from run_dir."""
        path = os.path.join(run_dir, "summary.json")
        if not os.path.exists(path):
            raise SystemExit(f"{path}: missing; arm {arm!r} of seed {seed} has not "
                             "been run (drop --report_only to run it)")
        with open(path, encoding="utf-8") as f:
            summary = json.load(f)
        scored = [m for m in summary.values() if m and "target_miou" in m]
        if not scored:
            raise SystemExit(f"{path}: no stage with a target_miou (arm {arm!r})")
        last = scored[-1]
        print(f"seed {seed} {arm:<24} mIoU {last['target_miou']:6.2f}{note}", flush=True)
        diag = {k: v for k, v in last.get("final_logs", {}).items()
                if k.startswith("diag_")}
        return {"miou": last["target_miou"], "iou": last["target_iou"],
                "diag": diag, "summary": summary, "run_dir": os.path.abspath(run_dir)}


_RUN_DIR = re.compile(r"--run_dir=(\S+)")
_EPOCH = re.compile(r"^[IWEF]0000 00:00:(\d+\.\d+)")
_ABSL = re.compile(r"^[IWEF](\d{4}) (\d\d:\d\d:\d\d\.\d+)")


def logged_train_seconds(lines, year):
    """Seconds each run directory spent in train.py, summed over invocations.

    `lines` is train.log: each invocation starts with "$ <command>" and its
    TF / absl log lines carry timestamps (epoch seconds, or MMDD HH:MM:SS in
    local time of `year`). An invocation lasts from its first to its last
    timestamp, so interpreter start-up before TF's first line is not counted.
    """
    totals, run_dir, first, last = {}, None, None, None

    def close():
        if run_dir is not None and first is not None:
            totals[run_dir] = totals.get(run_dir, 0.0) + (last - first)

    for line in lines:
        if line.startswith("$ "):
            close()
            match = _RUN_DIR.search(line)
            run_dir = os.path.abspath(match.group(1)) if match else None
            first = last = None
            continue
        stamp = None
        match = _EPOCH.match(line)
        if match:
            stamp = float(match.group(1))
        else:
            match = _ABSL.match(line)
            if match:
                moment = datetime.datetime.strptime(
                    f"{year}{match.group(1)} {match.group(2)}", "%Y%m%d %H:%M:%S.%f")
                stamp = time.mktime(moment.timetuple()) + moment.microsecond / 1e6
        if stamp is not None:
            first = stamp if first is None else min(first, stamp)
            last = stamp if last is None else max(last, stamp)
    close()
    return totals


def sweep_arms(props, methods=SWEEP_METHODS):
    """Table 5 arms: (name, pipeline, flags, borrow) for each alpha."""
    arms = []
    for alpha, prop in props.items():
        for method in methods:
            name = f"{method} @ alpha {alpha}"
            flags = [f"--alpha={alpha}"]
            if method == "IntraDA":
                flags += ["--selector=intrada", "--intra_method=intrada",
                          f"--intrada_lambda={prop:.4f}", *INTRADA_BETA]
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


def _minutes(results, train_seconds):
    """Train time of an arm over its seeds (min) from train.log, or None."""
    known = [train_seconds[r["run_dir"]] for r in results if r.get("run_dir") in train_seconds]
    return sum(known) / 60 if known else None


def _ordering_lines(rows, pairs, means):
    """One line per pair: whether the means agree, on how many seeds, and the
    paired difference (b - a, mean +- std over seeds) to set against noise."""
    lines = []
    for a, b in pairs:
        if a not in means or b not in means:
            continue
        verdict = "agrees" if means[a] < means[b] else "DOES NOT agree"
        diffs = [rb["miou"] - ra["miou"] for ra, rb in zip(rows[a], rows[b])]
        wins = sum(d > 0 for d in diffs)
        m, s = mean_std(diffs)
        lines.append(f"- {a} ({means[a]:.2f}) < {b} ({means[b]:.2f}): {verdict} on the "
                     f"mean; holds on {wins} of {len(diffs)} seed(s); paired "
                     f"difference {m:+.2f} +- {s:.2f}")
    return lines


def _shown_argv(argv):
    """The command line for the report, the --note text replaced by a pointer."""
    shown, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--note":
            shown.append('--note "(Note below)"')
            skip = True
        elif arg.startswith("--note="):
            shown.append('--note "(Note below)"')
        else:
            shown.append(arg)
    return " ".join(shown)


def arm_table(rows, train_seconds):
    """mIoU per arm (mean +- std, per seed), train time and D diagnostics."""
    lines = ["| arm | mIoU | per seed | train time (min) | "
             + " | ".join(name for name, _ in DIAG_COLUMNS) + " |",
             "|---|---|---|---|" + "---|" * len(DIAG_COLUMNS)]
    for arm, results in rows.items():
        m, s = mean_std([r["miou"] for r in results])
        per_seed = ", ".join(f"{r['miou']:.2f}" for r in results)
        minutes = _minutes(results, train_seconds)
        cells = ["-" if minutes is None else f"{minutes:.1f}"]
        for _, key in DIAG_COLUMNS:
            values = [r.get("diag", {}).get(key) for r in results]
            values = [v for v in values if v is not None]
            spec = "{:.2e}" if key.endswith("share") else "{:.3f}"
            cells.append(spec.format(np.mean(values)) if values else "-")
        lines.append(f"| {arm} | {m:.2f} +- {s:.2f} | {per_seed} | "
                     + " | ".join(cells) + " |")
    return lines


def noise_lines(rows):
    """How far the same Stage II run twice lands, against the seed spread."""
    if RERUN not in rows or "PLA" not in rows:
        return []
    diffs = [abs(a["miou"] - b["miou"]) for a, b in zip(rows["PLA"], rows[RERUN])]
    _, spread = mean_std([r["miou"] for r in rows["PLA"]])
    return ["", "## Run-to-run noise", "",
            f"PLA's Stage II run twice with the same seed, flags, INTER model and "
            f"pseudo labels (arm '{RERUN}'): |difference| per seed "
            + ", ".join(f"{d:.2f}" for d in diffs)
            + f" (mean {np.mean(diffs):.2f}), against PLA's std over seeds of "
            f"{spread:.2f}. Without --deterministic, TF's CPU kernels sum in an "
            "order that varies from run to run; the differences grow over training."]


def control_section(rows, train_seconds, args):
    """The positive control's table and whether PLA / CTS beat no D there."""
    means = {arm: mean_std([r["miou"] for r in results])[0]
             for arm, results in rows.items()}
    lines = ["", "## Positive control", "",
             f"Config `{os.path.relpath(args.control_config, ROOT)}`: the same "
             "scenes, labels and seeds, but every target image carries soft, "
             "bluish cast shadows over about a third of its non-sky pixels: an "
             "appearance change a model could learn to undo, meant to be what "
             "separates hard pixels from easy ones, so that aligning them (Eq. 6, "
             "Eq. 8) has something to gain. Whether the shadowed pixels are the "
             "hard ones is measured under \"What the adversarial terms do to "
             "hard pixels\".", ""]
    lines += arm_table(rows, train_seconds)
    lines += [""] + _ordering_lines(rows, (("INTER", "PLA"), (NO_D, "PLA"),
                                           (NO_D, "PLA + CTS"), ("PLA", "PLA + CTS")),
                                    means)
    return lines


HARD_PIXEL_ARMS = ("INTER", NO_D, "PLA", "PLA + CTS")


def hard_pixel_analysis(runner, seeds, data_root, reference_root=""):
    """benchmarks.hard_pixels on each seed's arms, pooled over the seeds.

    INTER's model and the split come from the PLA arm's run directory (its
    `inter/` and `pseudo_r1/`). Each seed's result is cached as JSON in the
    runner's work_dir, so --report_only reads it back.
    """
    per_seed = []
    for seed in seeds:
        cache = os.path.join(runner.work_dir, f"hard_pixels_seed{seed}.json")
        if os.path.exists(cache):
            with open(cache, encoding="utf-8") as f:
                per_seed.append(json.load(f))
            continue
        runs = [(arm, runner.run_dir(seed, "PLA" if arm == "INTER" else arm))
                for arm in HARD_PIXEL_ARMS]
        result = hard_pixels.analyse(data_root, runs, EVAL_SIZE,
                                     reference_root=reference_root)
        write_text(cache, json.dumps(result, indent=1))
        per_seed.append(result)
    return hard_pixels.combine(per_seed)


def hard_pixel_lines(title, pooled, seeds):
    return ["", f"### {title}", "",
            f"Target-val pixels split by the INTER model (Eq. 2 with each run's t_k "
            f"and alpha), pooled over seeds {list(seeds)}; accuracy and mean "
            "confidence (max softmax) of each model on each group "
            "(`benchmarks/hard_pixels.py`).", ""] + hard_pixels.markdown(pooled)


def report(rows, sweep_rows, props, seeds, commands, wall, args, train_seconds=None,
           main_alpha=None, control_rows=None, d_settings=None, hard=None):
    """RESULTS_TOYSCAPES.md: tables of the arms, ordering verdicts, commands."""
    train_seconds = train_seconds or {}
    logged = sum(train_seconds.values()) / 60
    invocation = ("This invocation only rewrote the report (--report_only)."
                  if args.report_only
                  else f"Wall time of this invocation: {wall / 60:.1f} min.")
    lines = ["# ToyScapes reproduction report", "",
             f"Generated by `python -m benchmarks.reproduce_toyscapes "
             f"{_shown_argv(sys.argv[1:])}` on {time.strftime('%Y-%m-%d')}.", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores "
             f"({platform.processor() or 'cpu'}), Python {platform.python_version()}; "
             f"{len(seeds)} seed(s) {list(seeds)}.",
             f"{invocation} Time spent in "
             f"train.py, summed over every invocation logged in "
             f"`{os.path.relpath(runner_log(args), ROOT)}`: {logged:.1f} min "
             "(stages completed by an earlier invocation are reused, not retrained).",
             f"Config: `{os.path.relpath(args.config, ROOT)}` for every arm; arms "
             "differ only in the flags listed under Commands.", "",
             *([f"Note: {args.note}", ""] if args.note else []),
             "## Target-val mIoU per arm (mean +- std over seeds)", "",
             "Train time is the arm's own stages summed over seeds; stages borrowed "
             "from another arm (INTER's model, PLA's pseudo labels) count there. "
             "The diagnostics (means over seeds) are those of the arm's last "
             "training stage over its last logging interval (50 steps): each D's "
             "held-out ROC AUC against what it should detect (the target domain in "
             "Stage I, hard images for IntraDA, hard pixels M for PLA and CTS), "
             "for CTS the correlation of D_main's output with Z (Eq. 7), and the "
             "share of G's gradient norm that comes from the adversarial term "
             "(adapters/diagnostics.py).", ""]
    lines += arm_table(rows, train_seconds)
    means = {arm: mean_std([r["miou"] for r in results])[0]
             for arm, results in rows.items()}
    lines += ["", "## Does ToyScapes agree with the paper's ordering?", ""]
    lines += _ordering_lines(rows, zip(ORDERING[:-1], ORDERING[1:]), means)
    lines += _ordering_lines(rows, (("PLA + CTS", "+ T=1"), ("+ T=1", "+ KLD"),
                                    ("source-only", "INTER"), ("INTER", "PLA"),
                                    (NO_D, "PLA"), (NO_D, "PLA + CTS")), means)
    lines += noise_lines(rows)
    lines += ["", "## Per-class IoU (mean over seeds)", "",
              per_class_table([(arm, mean_iou_dict(r)) for arm, r in rows.items()
                               if arm != RERUN], 19)]
    if control_rows:
        lines += control_section(control_rows, train_seconds, args)
    if hard:
        lines += ["", "## What the adversarial terms do to hard pixels"]
        for title, pooled in hard:
            lines += hard_pixel_lines(title, pooled, seeds)
    if d_settings:
        lines += ["", "## Discriminator settings (issue 16): chosen by diagnostics", "",
                  f"`python -m benchmarks.choose_d_settings {d_settings[2]}` on seed "
                  "0 of the positive control, before any Stage II mIoU was read; "
                  "the configs carry the choice."]
        lines += choose_d_settings.markdown(*d_settings[:2])
    if sweep_rows:
        lines += table5(rows, sweep_rows, props, main_alpha)
    lines += ["", "## Commands", "", "```"] + commands + ["```", ""]
    return "\n".join(lines)


def table5(rows, sweep_rows, props, main_alpha):
    """Table 5 in markdown: method x alpha (Prop.) -> mean +- std mIoU.

    The main arms run at `main_alpha`, so their column comes from `rows`; the
    other alphas from `sweep_rows`; the last column is self-training on every
    pseudo label.
    """
    lines = ["", "## Table 5: proportion of easy pixels (alpha -> Prop. -> mIoU)", "",
             "Prop. is measured on the INTER model's target-train predictions "
             f"(mean over seeds). IntraDA uses lambda = Prop. The alpha {main_alpha} "
             "column is the main arms above.", "",
             "| method | " + " | ".join(f"alpha {a} (Prop. {p:.2f})"
                                    for a, p in sorted(props.items())) + " | Prop. = 1 |",
             "|---|" + "---|" * (len(props) + 1)]
    m1, s1 = mean_std([r["miou"] for r in sweep_rows["self-training, Prop. = 1"]])
    for method in SWEEP_METHODS:
        cells, found = [], False
        for alpha in sorted(props):
            results = (rows.get(method) if alpha == main_alpha
                       else sweep_rows.get(f"{method} @ alpha {alpha}"))
            if results:
                m, s = mean_std([r["miou"] for r in results])
                cells.append(f"{m:.2f} +- {s:.2f}")
                found |= alpha != main_alpha
            else:
                cells.append("-")
        if found:
            lines.append(f"| {method} | " + " | ".join(cells) + f" | {m1:.2f} +- {s1:.2f} |")
    return lines


def runner_log(args):
    return os.path.join(args.work_dir, "train.log")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--work_dir", default=os.path.join(ROOT, "runs", "reproduce"))
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "RESULTS_TOYSCAPES.md"))
    parser.add_argument("--quick", action="store_true",
                        help="every arm briefly, the sweep for PLA only (smoke "
                        "config): for the test suite")
    parser.add_argument("--no_sweep", action="store_true")
    parser.add_argument("--arms", default=None,
                        help="comma-separated subset of the arms (in order); default "
                        f"all, and with --quick all but {NO_D!r}, whose training "
                        "path the quick sweep's self-training arm already runs")
    parser.add_argument("--alphas", default="0.7,1.0",
                        help=f"extra alphas of the Table 5 sweep ({MAIN_ALPHA} is "
                        "the main arms')")
    parser.add_argument("--report_only", action="store_true",
                        help="write the report from the run directories of an "
                        "earlier invocation (same flags) without training")
    parser.add_argument("--control_arms", default=",".join(CONTROL_ARMS),
                        help="arms to run on the positive control "
                        "(--control_config); empty = none (always none with --quick)")
    parser.add_argument("--control_config",
                        default=os.path.join(ROOT, "configs", "toyscapes_control.cfg"))
    parser.add_argument("--d_settings", default="",
                        help="the --json of benchmarks.choose_d_settings: its rule, "
                        "table and choice go into the report")
    parser.add_argument("--hard_pixels", action="store_true",
                        help="also score the INTER, no-D, PLA and PLA + CTS models of "
                        "each seed on the target-val pixels INTER finds easy / hard "
                        "(and, on the positive control, shadowed / not)")
    parser.add_argument("--note", default="",
                        help="a sentence for the report, e.g. how the machine was shared")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    alphas = [float(a) for a in args.alphas.split(",")]
    extra = ["--alpha_sweep=" + ",".join(str(a) for a in [MAIN_ALPHA, *alphas])]
    args.config = os.path.join(ROOT, "configs", "toyscapes.cfg")
    if args.quick:
        args.config = os.path.join(ROOT, "configs", "toyscapes_smoke.cfg")
        alphas = [1.0]
        extra = [f"--alpha_sweep={MAIN_ALPHA},1.0", "--inter_steps=2", "--intra_steps=2",
                 "--export_tflite=fp32",
                 f"--toyscapes_dir={os.path.join(args.work_dir, 'toyscapes')}"]
    if not args.report_only:
        os.makedirs(args.work_dir, exist_ok=True)
    d_settings = choose_d_settings.load(args.d_settings) if args.d_settings else None
    betas = method_flags(d_settings)
    runner = Runner(args.config, args.work_dir, extra, runner_log(args),
                    report_only=args.report_only, method_flags=betas)
    start = time.time()
    if args.arms is None:
        args.arms = ",".join(a for a in ARMS if not (args.quick and a == NO_D))
    unknown = [a for a in args.arms.split(",") if a not in ARMS]
    if unknown:
        parser.error(f"--arms={args.arms}: unknown arm(s) {unknown}; known: {list(ARMS)}")
    arms = {a: ARMS[a] for a in args.arms.split(",")}
    for arm, (_, _, borrow) in arms.items():
        missing = set(borrow.values()) - set(arms)
        if missing:
            parser.error(f"arm {arm!r} reuses stages of {sorted(missing)}: "
                         "add them to --arms")
    control = [a for a in args.control_arms.split(",") if a] if not args.quick else []
    unknown = [a for a in control if a not in ARMS]
    if unknown:
        parser.error(f"--control_arms: unknown arm(s) {unknown}; known: {list(ARMS)}")
    for arm in control:
        missing = set(ARMS[arm][2].values()) - set(control)
        if missing:
            parser.error(f"control arm {arm!r} reuses stages of {sorted(missing)}: "
                         "add them to --control_arms")
    control_runner = Runner(args.control_config, os.path.join(args.work_dir, "control"),
                            extra, runner.log, report_only=args.report_only,
                            method_flags=betas)
    control_rows = {arm: [] for arm in control}
    rows = {arm: [] for arm in arms}
    sweep_rows, props_per_seed, main_alpha = {}, [], None
    for seed in seeds:
        for arm in control:
            pipeline, flags, borrow = ARMS[arm]
            control_rows[arm].append(control_runner.run(seed, arm, pipeline, flags, borrow))
        for arm, (pipeline, flags, borrow) in arms.items():
            rows[arm].append(runner.run(seed, arm, pipeline, flags, borrow))
        if "PLA + CTS" in rows and not args.no_sweep:
            pseudo = rows["PLA + CTS"][-1]["summary"]["pseudo_r1"]
            main_alpha = pseudo["alpha"]  # the alpha the main arms ran at
            props = {float(a): v for a, v in pseudo["alpha_sweep"].items()
                     if float(a) in alphas or float(a) == main_alpha}
            props_per_seed.append(props)
            sweep_props = {a: p for a, p in props.items() if a != main_alpha}
            methods = ("PLA",) if args.quick else SWEEP_METHODS
            for name, pipeline, flags, borrow in sweep_arms(sweep_props, methods):
                sweep_rows.setdefault(name, []).append(
                    runner.run(seed, name, pipeline, flags, borrow))
    props = ({a: float(np.mean([p[a] for p in props_per_seed]))
              for a in props_per_seed[0]} if props_per_seed else {})
    train_seconds = {}
    if os.path.exists(runner.log):
        with open(runner.log, encoding="utf-8", errors="replace") as f:
            year = time.localtime(os.path.getmtime(runner.log)).tm_year
            train_seconds = logged_train_seconds(f, year)
    hard = []
    if args.hard_pixels:
        data = os.path.join(ROOT, ".cache", "toyscapes")
        hard.append(("Standard ToyScapes", hard_pixel_analysis(
            runner, seeds, os.path.join(data, "cityscapes"))))
        if control:
            hard.append(("Positive control", hard_pixel_analysis(
                control_runner, seeds, os.path.join(data + "_shadows", "cityscapes"),
                os.path.join(data, "cityscapes"))))
    text = report(rows, sweep_rows, props, seeds,
                  runner.commands + control_runner.commands, time.time() - start,
                  args, train_seconds, main_alpha, control_rows, d_settings, hard)
    write_text(args.out, text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
