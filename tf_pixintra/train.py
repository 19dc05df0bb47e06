"""Entry point: python -m tf_pixintra.train --flagfile configs/<name>.cfg [--stage ...]

Runs one stage or (--stage=all) --pipeline in one run directory; a rerun skips finished
stages and resumes an interrupted one from its checkpoint. Prints each stage's target mIoU.
"""

import importlib
import sys

from absl import app
from absl import flags
from absl import logging

from tf_pixintra import config as config_lib
from tf_pixintra import io_utils
from tf_pixintra import run_layout
from tf_pixintra import run_lock
from tf_pixintra import visualize
from tf_pixintra.errors import (ConfigError, DataError, PeerLost, PeerTimeout,
                                TrainingDiverged, cli_main)
from tf_pixintra.stages import peers
from tf_pixintra.stages import sources

FLAGS = flags.FLAGS
config_lib.define_flags()

COMPARISON_IMAGES = 4      # target val rows of comparison.png


def check_run_dir(config, write=True):
    """Refuses a run directory of another experiment; with `write`, records this one's."""
    path = io_utils.join(config.run.run_dir, run_layout.CONFIG_FILE)
    wanted = config.experiment_dict()
    if io_utils.exists(path):
        try:
            have = io_utils.read_json(path)
        except DataError as e:
            raise DataError(f"{e}. It records the experiment of this run directory; to "
                            "recover, delete it and run the same command (it is written "
                            "again from the flags)") from None
        if have != wanted:
            diffs = ", ".join(_differences(have, wanted)[:8])
            raise ConfigError(f"--run_dir={config.run.run_dir!r} holds a run of another config "
                              f"({path}); differing: {diffs}. Use a new --run_dir, or the "
                              "flags of that run.")
    elif write:
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


def run_stage(ctx, stage, round_index):
    """Runs one stage (run_layout.STAGES); returns (row name, metrics or None). Imported
    here: the stage modules load TensorFlow, which --help and flag errors skip."""
    spec = run_layout.STAGES[stage]
    module = importlib.import_module(f"tf_pixintra.stages.{spec.module}")
    return (run_layout.stage_dir_name(stage, round_index),
            module.run(ctx, round_index if spec.rounds else stage))


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
        elif metrics.get("stage") == "comparison":
            note = f"stages side by side: {metrics['file']}"
        lines.append(f"{name:<12} {cell}  {note}".rstrip())
    return "\n".join(lines)


def run(config):
    """Runs the configured stages; returns [(stage name, metrics)]."""
    # Lazy, as in `run_stage`: TensorFlow loads when a run starts.
    from tf_pixintra import runtime  # pylint: disable=import-outside-toplevel
    if config.run.deterministic:
        runtime.set_deterministic(config.run.seed)
    runtime.set_precision(config.run.mixed_precision)
    strategy = runtime.make_strategy(config.run.strategy, config.run.devices)
    _, _, is_chief = runtime.worker_info(strategy)
    worker = runtime.worker_index(strategy)
    io_utils.makedirs(config.run.run_dir)
    if not is_chief:   # the chief holds the lock for all workers
        return _run(config, strategy, is_chief, worker)
    sharded = config.pseudo.shard_index >= 0   # shard workers run side by side
    with run_lock.hold(config.run.run_dir, shared=sharded) as exclusive:
        if exclusive:
            run_lock.remove_stray_temporaries(config.run.run_dir)
        return _run(config, strategy, is_chief, worker)


def _run(config, strategy, is_chief, worker=(0, 1)):
    """`run` once the run directory is this process's. `worker`: (index, count) of this
    process among the multi-worker workers, each of which then does one pseudo shard."""
    # Lazy, as in `run_stage`: TensorFlow loads when a run starts.
    from tf_pixintra.stages import common  # pylint: disable=import-outside-toplevel
    task_index, num_workers = worker
    if num_workers > 1:
        config = config_lib.shard_over_workers(config, task_index, num_workers)
    check_run_dir(config, write=False)
    plan = run_layout.plan(config.run)
    config_lib.check_batch_sizes(config, plan, strategy.num_replicas_in_sync)
    srcs = sources.resolve(config.data, any(run_layout.STAGES[s].stage_one for s, _ in plan))
    if run_layout.pending_stages(config.run.run_dir, plan):
        sources.check(srcs, config.run.run_dir if is_chief else None)
    check_run_dir(config)   # written once the sources have passed
    ctx = common.Context(config, config.run.run_dir, strategy, srcs, is_chief,
                         task_index, num_workers)
    rows = []   # (row name = stage directory, metrics)
    for stage, round_index in plan:
        if rows and not is_chief:
            # The stage may read what the chief alone wrote (the last model.keras, say).
            peers.chief_result(ctx, io_utils.join(config.run.run_dir, rows[-1][0]))
        logging.info("stage %s (round %d)", stage, round_index)
        rows.append(run_stage(ctx, stage, round_index))
        if rows[-1][1] is None:
            break
    summary = io_utils.join(config.run.run_dir, run_layout.SUMMARY_FILE)
    if is_chief and _json_or_none(summary) != dict(rows):
        io_utils.write_json(summary, dict(rows))
    if (config.run.stage == "all" and is_chief and rows
            and rows[-1][1] is not None and srcs.target_val):
        rows.append(("comparison", comparison_picture(config.run.run_dir)))
    return rows


def comparison_picture(run_dir):
    """Writes <run_dir>/comparison.png (tf_pixintra.visualize); its row."""
    if not visualize.trained_stages(run_dir):
        return {"stage": "comparison", "file": "(no trained stage)"}
    out = io_utils.join(run_dir, run_layout.COMPARISON_FILE)
    visualize.write_comparison(run_dir, out, COMPARISON_IMAGES)
    return {"stage": "comparison", "file": out}


def _json_or_none(path):
    """A JSON file's content; None if missing or damaged (it is rewritten)."""
    try:
        return io_utils.read_json(path)
    except (FileNotFoundError, DataError):
        return None


def _train(flag_values):
    print(format_summary(run(config_lib.from_flags(flag_values))))


def main(argv):
    try:
        return cli_main(argv, _train, FLAGS, status=2, errors=(
            ConfigError, DataError, FileNotFoundError, TrainingDiverged, PeerTimeout, PeerLost))
    except KeyboardInterrupt:
        print("interrupted: the checkpoint is saved; run the same command to "
              "resume", file=sys.stderr)
        return 130


def parse_flags(argv):
    """absl's parser, but a bad flag value is one line and exit status 2,
    and --helpshort lists the project's flags grouped by stage."""
    if "--helpshort" in argv[1:]:
        print(config_lib.grouped_help(FLAGS))
        sys.exit(0)
    try:
        return FLAGS(argv)
    except flags.Error as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
