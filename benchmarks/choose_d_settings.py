"""Choose the ToyScapes benchmark's Stage II discriminator settings by D's
diagnostics alone (issue 16, point 4), before any mIoU of the runs is read.

On one seed of a config (default: the positive control,
configs/toyscapes_control.cfg), it trains Stage I and the round-one pseudo
labels once, then Stage II once per candidate: method (PLA, CTS) x D output
stride x D learning rate, all at the config's beta. From each run it reads
only the training diagnostics (TensorBoard `train/diag_*` scalars and
`final_logs`), never the evaluation, and applies RULE:

    python -m benchmarks.choose_d_settings                    # train + choose
    python -m benchmarks.choose_d_settings --report_only      # choose again

The printed table and choice are recorded in benchmarks/RESULTS_TOYSCAPES.md.
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RULE = """\
Rule (fixed before any Stage II mIoU was looked at):
1. D learns its task: a candidate passes when D_main's held-out AUC against
   M (hard vs easy pixels, measured before D's update of each step) is at
   least MIN_AUC over the last logging interval, for PLA and for CTS.
2. Among passing candidates, the fewest departures from the paper's D
   (output stride 32, learning rate 1e-4); ties go to the higher AUC (the
   smaller of PLA's and CTS's). If none passes, the highest such AUC.
3. Stage II length: the config's, unless the chosen D's AUC still rises by
   more than PLATEAU between the third-last and the last logging interval;
   then twice as long.
4. beta, per method (Eq. 6 and Eq. 8 give G gradients of different
   sizes): the smallest beta_main on the half-decade grid BETAS whose
   predicted adversarial share of G's gradient norm reaches MIN_SHARE, the
   share predicted from the one s0 measured at the config's beta b0 as
   t / sqrt(1 + t^2) with t = (beta / b0) * s0 / sqrt(1 - s0^2) (the
   adversarial gradient scales with beta, the rest of G's gradient does
   not). beta_aux = beta_main / 5, the paper's ratio (Eq. 9: 1e-3, 2e-4)."""
MIN_AUC = 0.75
PLATEAU = 0.02
MIN_SHARE = 0.1
BETAS = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
PAPER_D = (32, 1e-4)


def candidates(methods, strides, lrs):
    return [(m, s, lr) for m in methods for s in strides for lr in lrs]


def name_of(method, stride, lr):
    return f"{method}_s{stride}_lr{lr:g}"


def read_scalars(tb_dir, prefix="train/diag_"):
    """{tag: [(step, value)]} of the scalars whose tag starts with `prefix`."""
    out = {}
    for path in sorted(glob.glob(os.path.join(tb_dir, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag.startswith(prefix):
                    scalar = float(tf.make_ndarray(value.tensor))
                    out.setdefault(value.tag, []).append((event.step, scalar))
    return {tag: sorted(points) for tag, points in out.items()}


def diagnostics(run_dir):
    """D's training diagnostics of a Stage II run (no evaluation is read)."""
    stage = os.path.join(run_dir, "intra_r1")
    with open(os.path.join(stage, "metrics.json"), encoding="utf-8") as f:
        logs = json.load(f)["final_logs"]
    curves = read_scalars(os.path.join(stage, "tb"))
    auc = [v for _, v in curves.get("train/diag_auc_d", [])]
    return {"auc": logs.get("diag_auc_d"), "auc_aux": logs.get("diag_auc_d_aux"),
            "zcorr": logs.get("diag_zcorr_d"),
            "share": logs.get("diag_adv_grad_share"),
            "loss_d": logs.get("loss_d"),
            "auc_curve": auc,
            "rise": (auc[-1] - auc[-3]) if len(auc) >= 3 else None}


def predicted_share(s0, b0, beta):
    """Share of G's gradient norm from beta * L_adv, scaled from (b0, s0)."""
    s0 = min(max(s0, 0.0), 1 - 1e-9)
    t = (beta / b0) * s0 / np.sqrt(1 - s0 ** 2)
    return float(t / np.sqrt(1 + t ** 2))


def choose(table, methods, base_beta):
    """Applies RULE to {(method, stride, lr): diagnostics}; returns a dict."""
    settings = sorted({(s, lr) for _, s, lr in table})

    def worst_auc(setting):
        return min(table[(m, *setting)]["auc"] for m in methods)

    def departures(setting):
        return sum(a != b for a, b in zip(setting, PAPER_D))

    passing = [s for s in settings if worst_auc(s) >= MIN_AUC]
    pool = passing or settings
    best = min(pool, key=lambda s: (departures(s) if passing else 0, -worst_auc(s)))
    rises = [table[(m, *best)]["rise"] for m in methods]
    longer = any(r is not None and r > PLATEAU for r in rises)
    betas = {}
    for m in methods:
        share = table[(m, *best)]["share"]
        beta = next((b for b in BETAS
                     if predicted_share(share, base_beta, b) >= MIN_SHARE), BETAS[-1])
        betas[m] = {"beta_main": beta, "beta_aux": beta / 5, "measured_share": share,
                    "predicted_share": predicted_share(share, base_beta, beta)}
    return {"stride": best[0], "lr_d": best[1], "passed": bool(passing),
            "worst_auc": worst_auc(best), "double_length": longer, "beta": betas}


def beta_flags(choice, method):
    """The train flags of `method`'s chosen beta (none for other methods)."""
    beta = choice["beta"].get(method)
    if beta is None:
        return []
    return [f"--intra_beta_main={beta['beta_main']:g}",
            f"--intra_beta_aux={beta['beta_aux']:g}"]


def rule_text():
    return (RULE.replace("MIN_AUC", str(MIN_AUC)).replace("PLATEAU", str(PLATEAU))
            .replace("MIN_SHARE", str(MIN_SHARE))
            .replace("BETAS", "(" + ", ".join(f"{b:g}" for b in BETAS) + ")"))


def _fmt(value, spec="{:.3f}"):
    return "-" if value is None else spec.format(value)


def markdown(table, choice):
    """The rule, the candidates' diagnostics and the choice, as markdown lines."""
    lines = ["", rule_text(), "",
             "| method | D stride | D lr | AUC D_main (last 50 steps) | AUC D_aux | "
             "corr(D, Z) | AUC D_main every 50 steps | adv. share of G's grad | D loss |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (method, stride, lr), d in table.items():
        curve = " ".join(f"{v:.2f}" for v in d["auc_curve"])
        lines.append(f"| {method} | {stride} | {lr:g} | {_fmt(d['auc'])} | "
                     f"{_fmt(d['auc_aux'])} | {_fmt(d['zcorr'])} | {curve} | "
                     f"{_fmt(d['share'], '{:.2e}')} | {_fmt(d['loss_d'])} |")
    betas = "; ".join(
        f"{m}: beta_main {b['beta_main']:g}, beta_aux {b['beta_aux']:g} (share "
        f"{b['measured_share']:.2e} at the config's beta, predicted "
        f"{b['predicted_share']:.2f})" for m, b in choice["beta"].items())
    lines += ["", f"Chosen: D output stride {choice['stride']}, D learning rate "
              f"{choice['lr_d']:g} ({'passes' if choice['passed'] else 'NO candidate passes'}"
              f" rule 1: AUC {choice['worst_auc']:.3f}); Stage II length "
              f"{'doubled' if choice['double_length'] else 'as configured'}; {betas}."]
    return lines


def load(path):
    """(table, choice, shown argv) from the --json of an earlier invocation."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    table = {}
    for name, d in data["table"].items():
        method, stride, lr = name.split("_")
        table[(method, int(stride[1:]), float(lr[2:]))] = d
    # Where the runs and the JSON lived, and whether it re-read them, say
    # nothing about the experiment.
    local = ("--json", "--report_only", "--work_dir", "--inter_dir")
    shown = " ".join(a for a in data.get("argv", []) if not a.startswith(local))
    return table, data["choice"], shown


def train(args, name, flags):
    run_dir = os.path.join(args.work_dir, f"seed{args.seed}", name)
    command = [sys.executable, "-m", "tf_pixintra.train", f"--flagfile={args.config}",
               f"--run_dir={run_dir}", f"--seed={args.seed}", "--stage=all",
               "--keras_verbose=0", *args.extra, *flags]
    print("$ python " + " ".join(command[1:]).replace(ROOT + os.sep, ""), flush=True)
    if args.report_only:
        return run_dir
    os.makedirs(run_dir, exist_ok=True)
    base = os.path.join(args.work_dir, f"seed{args.seed}", "base")
    links = {"inter": args.inter_dir or None}
    if name != "base":
        links = {"inter": os.path.join(base, "inter"),
                 "pseudo_r1": os.path.join(base, "pseudo_r1")}
    for stage, target in links.items():
        link = os.path.join(run_dir, stage)
        if target and not os.path.lexists(link):
            os.symlink(os.path.abspath(target), link)
    with open(os.path.join(args.work_dir, "train.log"), "a", encoding="utf-8") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        start = time.time()
        subprocess.run(command, cwd=ROOT, stdout=log, stderr=log, check=True)
    print(f"  {time.time() - start:.0f} s", flush=True)
    return run_dir


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=os.path.join(ROOT, "configs", "toyscapes_control.cfg"))
    parser.add_argument("--work_dir", default=os.path.join(ROOT, "runs", "d_settings"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default="pla,cts")
    parser.add_argument("--strides", default="32,4")
    parser.add_argument("--lr_d", default="1e-4,1e-3")
    parser.add_argument("--base_beta", type=float, default=1e-3,
                        help="the config's --intra_beta_main (the candidates run at it)")
    parser.add_argument("--inter_dir", default="",
                        help="an existing Stage I stage directory of this config and "
                        "seed to reuse (else Stage I is trained)")
    parser.add_argument("--extra", default="",
                        help="space-separated flags added to every run")
    parser.add_argument("--report_only", action="store_true",
                        help="apply the rule to the runs of an earlier invocation")
    parser.add_argument("--json", default="", help="also write the table and choice here")
    args = parser.parse_args()
    args.extra = args.extra.split()
    methods = args.methods.split(",")
    grid = candidates(methods, [int(s) for s in args.strides.split(",")],
                      [float(x) for x in args.lr_d.split(",")])
    train(args, "base", ["--pipeline=inter,pseudo"])
    table = {}
    for method, stride, lr in grid:
        run_dir = train(args, name_of(method, stride, lr),
                        ["--pipeline=inter,pseudo,intra", f"--intra_method={method}",
                         f"--intra_d_output_stride={stride}", f"--intra_lr_d={lr:g}"])
        table[(method, stride, lr)] = diagnostics(run_dir)
    choice = choose(table, methods, args.base_beta)
    print("\n".join(markdown(table, choice)))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"table": {name_of(*k): v for k, v in table.items()},
                       "choice": choice, "argv": sys.argv[1:]}, f, indent=1)


if __name__ == "__main__":
    main()
