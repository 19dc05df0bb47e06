"""The run directory and the stage graph, free of TensorFlow (evaluate's scoring path and
--help read it).

    <run_dir>/config.json, run.json (the newest model), summary.json, comparison.png,
              sources_checked.json
              <stage>/  source_only, inter, pseudo_r<n>, intra_r<n>, eval, export;
                        metrics.json (written last: finished), model.keras and
                        checkpoints/ (training stages)
              pseudo_r<n>/  <set>-<k>-of-<N>.tfrecord shards, <set>-index.json,
                        summary.json, preview_<i>.png; while it runs
                        pass<p>-<k>-of-<N>.json and cache/
"""

import collections
import dataclasses

from tf_pixintra import io_utils
from tf_pixintra.errors import DataError

CONFIG_FILE = "config.json"
RUN_FILE = "run.json"
SUMMARY_FILE = "summary.json"
COMPARISON_FILE = "comparison.png"
CHECK_RECORD = "sources_checked.json"
METRICS_FILE = "metrics.json"
MODEL_FILE = "model.keras"
CHECKPOINT_DIR = "checkpoints"
# Inside pseudo_r<n>/: the record set Stage II reads (IntraDA's selector writes "easy" and
# "hard" instead); predictions kept between the two passes; previews by target image index.
RECORDS = "target"
CACHE_DIR = "cache"
PREVIEW_FILE = "preview_{:03d}.png"


def shard_name(name, shard, num_shards):
    """`NAME-00003-of-00008.tfrecord`: shard 3 of 8 of record set NAME."""
    return f"{name}-{shard:05d}-of-{num_shards:05d}.tfrecord"


def index_name(name):
    """`NAME-index.json`: the shards of record set NAME and their counts."""
    return f"{name}-index.json"


def pass_name(pass_number, shard, num_shards):
    """`pass1-00003-of-00008.json`: written last by a pseudo shard's pass, marks it done."""
    return f"pass{pass_number}-{shard:05d}-of-{num_shards:05d}.json"


@dataclasses.dataclass(frozen=True)
class Stage:
    """One kind of stage; tf_pixintra.stages.<module> runs it with run(ctx, round_index) if
    it has rounds, else run(ctx, name)."""
    name: str
    module: str
    rounds: bool = False      # the n-th in --pipeline is round n, in <name>_r<n>/
    trains: bool = False      # writes a model.keras
    stage_one: bool = False   # Stage I; --inter_model stands in for its model
    section: str = ""         # training: the config section of its batch size
    reads_target: bool = True  # needs --target_root (unless ToyScapes)


STAGES = {stage.name: stage for stage in (
    Stage("source_only", "inter_stage", trains=True, stage_one=True, section="inter"),
    Stage("inter", "inter_stage", trains=True, stage_one=True, section="inter"),
    Stage("pseudo", "pseudo_stage", rounds=True),
    Stage("intra", "intra_stage", rounds=True, trains=True, section="intra"),
    Stage("eval", "eval_stage"),
    Stage("export", "export_stage", reads_target=False),
)}


def stage_dir_name(stage, round_index=1):
    """The sub-directory (and summary row) of a planned stage."""
    return f"{stage}_r{round_index}" if STAGES[stage].rounds else stage


def plan(run_cfg):
    """[(stage, round)] that --stage (all: --pipeline) runs, in order."""
    if run_cfg.stage != "all":
        return [(run_cfg.stage, run_cfg.round)]
    return numbered(run_cfg.pipeline)


def numbered(pipeline):
    """[(stage, round)] of `pipeline`: its n-th pseudo (intra) is round n."""
    counts, steps = collections.Counter(), []
    for stage in pipeline:
        counts[stage] += 1
        steps.append((stage, counts[stage] if STAGES[stage].rounds else 1))
    return steps


def model_source(pipeline, round_index):
    """(stage, round) whose model makes round `round_index`'s pseudo labels: the last
    training stage before that round's pseudo stage in `pipeline` (before its end for a
    round past the pipeline's); None if there is none."""
    source = None
    for step in numbered(pipeline):
        if step == ("pseudo", round_index):
            break
        if STAGES[step[0]].trains:
            source = step
    return source


def model_for_round(config, run_dir, round_index):
    """Path of the model that makes round `round_index`'s pseudo labels; --inter_model stands
    in for Stage I's (and is all a pipeline without Stage I has)."""
    source = model_source(config.run.pipeline, round_index)
    if config.inter.model and (source is None or STAGES[source[0]].stage_one):
        return config.inter.model
    return io_utils.join(run_dir, stage_dir_name(*source), MODEL_FILE)


def completed(stage_dir):
    """The stage's metrics when it has finished, else None."""
    path = io_utils.join(stage_dir, METRICS_FILE)
    if not io_utils.exists(path):
        return None
    try:
        return io_utils.read_json(path)
    except DataError as e:
        raise DataError(f"{e}. It marks the stage finished; to recover, delete it and run the "
                        "same command: the stage runs again (a training stage from its last "
                        "checkpoint)") from None


def pending_stages(run_dir, steps):
    """Directory names of the planned `steps` that have not finished."""
    names = [stage_dir_name(stage, round_index) for stage, round_index in steps]
    return [n for n in names if not io_utils.exists(io_utils.join(run_dir, n, METRICS_FILE))]
