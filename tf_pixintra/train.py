"""Entry point: python -m tf_pixintra.train --flagfile configs/<name>.cfg [--stage ...]

Runs one stage, or (--stage=all) the whole pipeline
    inter -> pseudo -> intra -> pseudo -> intra (KLD) -> eval -> export
in one run directory, one sub-directory per stage. A finished stage is
skipped when the command is run again; an interrupted one resumes from its
last checkpoint. Ends by printing the target mIoU of every stage.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging

from tf_pixintra import config as config_lib
from tf_pixintra import io_utils
from tf_pixintra.errors import ConfigError
from tf_pixintra.errors import DataError

FLAGS = flags.FLAGS
config_lib.define_flags()

CONFIG_FILE = "config.json"


def check_run_dir(config):
    """A run directory belongs to one experiment: refuse another config's."""
    path = os.path.join(config.run.run_dir, CONFIG_FILE)
    wanted = config.experiment_dict()
    if os.path.exists(path):
        have = io_utils.read_json(path)
        if have != wanted:
            diffs = _differences(have, wanted)
            raise ConfigError(
                f"--run_dir={config.run.run_dir!r} holds a run of another "
                f"config ({path}); differing: {', '.join(diffs[:8])}. Use a new "
                "--run_dir, or the flags of that run.")
    else:
        io_utils.write_json(path, wanted)


def _differences(a, b, prefix=""):
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _differences(va, vb, prefix + key + ".")
        elif va != vb:
            out.append(f"{prefix}{key}: {va!r} -> {vb!r}")
    return out


def stage_plan(config):
    """[(stage, round)] to run, in order."""
    if config.run.stage != "all":
        return [(config.run.stage, config.run.round)]
    plan, rounds = [], {"pseudo": 0, "intra": 0}
    for stage in config.run.pipeline:
        if stage in rounds:
            rounds[stage] += 1
            plan.append((stage, rounds[stage]))
        else:
            plan.append((stage, 1))
    return plan


def run_stage(ctx, stage, round_index):
    """Runs one stage; returns (row name, metrics or None)."""
    # pylint: disable=import-outside-toplevel
    from tf_pixintra.stages import eval_stage
    from tf_pixintra.stages import export_stage
    from tf_pixintra.stages import inter_stage
    from tf_pixintra.stages import intra_stage
    from tf_pixintra.stages import pseudo_stage
    if stage in ("source_only", "inter"):
        return stage, inter_stage.run(ctx, stage)
    if stage == "pseudo":
        return pseudo_stage.stage_name(round_index), pseudo_stage.run(ctx, round_index)
    if stage == "intra":
        return intra_stage.stage_name(round_index), intra_stage.run(ctx, round_index)
    if stage == "eval":
        return "eval", eval_stage.run(ctx)
    return "export", export_stage.run(ctx)


def format_summary(rows):
    """The closing table: target mIoU per stage."""
    lines = ["", "stage        target mIoU  notes", "-" * 44]
    for name, metrics in rows:
        if metrics is None:
            lines.append(f"{name:<12} {'':>11}  waiting for other shards")
            continue
        miou = metrics.get("target_miou")
        cell = f"{miou:11.2f}" if miou is not None else f"{'-':>11}"
        note = ""
        if "prop" in metrics:
            note = f"Prop. {metrics['prop']:.3f} at alpha {metrics['alpha']}"
        elif metrics.get("stage") == "eval":
            note = f"scales {metrics['scales']} flip {metrics['flip']}"
        elif metrics.get("stage") == "export":
            note = ", ".join(sorted(metrics.get("tflite", {})))
        lines.append(f"{name:<12} {cell}  {note}".rstrip())
    return "\n".join(lines)


def run(config):
    """Runs the configured stages; returns [(stage name, metrics)]."""
    from tf_pixintra import runtime  # pylint: disable=import-outside-toplevel
    from tf_pixintra.stages import common  # pylint: disable=import-outside-toplevel
    from tf_pixintra.stages import sources  # pylint: disable=import-outside-toplevel
    runtime.set_precision(config.run.mixed_precision)
    strategy = runtime.make_strategy(config.run.strategy, config.run.devices)
    _, _, is_chief = runtime.worker_info(strategy)
    os.makedirs(config.run.run_dir, exist_ok=True)
    check_run_dir(config)
    plan = stage_plan(config)
    need_source = any(s in ("source_only", "inter") for s, _ in plan)
    ctx = common.Context(config, config.run.run_dir, strategy,
                         sources.resolve(config.data, need_source), is_chief)
    rows = []
    for stage, round_index in plan:
        logging.info("stage %s (round %d)", stage, round_index)
        name, metrics = run_stage(ctx, stage, round_index)
        rows.append((name, metrics))
        if metrics is None:
            break
    if is_chief:
        io_utils.write_json(os.path.join(config.run.run_dir, "summary.json"),
                            {name: m for name, m in rows})
    return rows


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        config = config_lib.from_flags(FLAGS)
        rows = run(config)
    except (ConfigError, DataError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the checkpoint is saved; run the same command to "
              "resume", file=sys.stderr)
        sys.stderr.flush()
        sys.stdout.flush()
        # tf.data's multi-device iterator threads can block interpreter
        # shutdown after an interrupted fit(); everything is on disk already.
        os._exit(130)  # pylint: disable=protected-access
    print(format_summary(rows))
    return 0


if __name__ == "__main__":
    app.run(main)
