"""Flags -> frozen config dataclasses, validated once before any work starts.

The only place the flags of `python -m tf_pixintra.train` are declared and read.
"""

import dataclasses
import functools
import math
import os

from absl import flags

from tf_pixintra import choices
from tf_pixintra import flag_help
from tf_pixintra import io_utils
from tf_pixintra import run_layout
from tf_pixintra.errors import ConfigError
from tf_pixintra.export_contract import MODEL_NAME

PIPELINE_STAGES = tuple(run_layout.STAGES)
STAGES = ("all", *PIPELINE_STAGES)
DEFAULT_PIPELINE = ("inter", "pseudo", "intra", "pseudo", "intra", "eval", "export")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the data sets are and how they are fed."""
    source_dataset: str = "gta5"          # cityscapes: the oracle
    source_root: str = ""
    source_list: str = ""
    target_root: str = ""                 # Cityscapes layout
    target_list: str = ""
    target_val_split: str = "val"
    target_val_list: str = ""
    source_size: tuple = (720, 1280)      # (H, W) after resizing
    target_size: tuple = (512, 1024)
    crop_size: tuple = ()                 # () = no crop
    scale_range: tuple = ()               # () = no random scaling
    flip: bool = False
    eval_size: tuple = (512, 1024)
    eval_scales: tuple = (1.0,)
    eval_flip: bool = False
    max_eval_images: int = 0              # 0 = all
    toyscapes: bool = False
    toyscapes_dir: str = ""
    toyscapes_seed: int = 0
    toyscapes_counts: tuple = (400, 400, 100)   # source, target train, val
    toyscapes_image_size: tuple = (128, 256)
    toyscapes_variant: str = "standard"   # shadows: the positive control

    def validate(self):
        """Sizes, scales, ToyScapes settings (the roots: `validate`)."""
        for name in ("source_size", "target_size", "eval_size"):
            _check_size(name, getattr(self, name))
        if self.crop_size:
            _check_size("crop_size", self.crop_size)
        if self.scale_range:
            _check(len(self.scale_range) == 2 and 0 < self.scale_range[0] <= self.scale_range[1],
                   f"--scale_range={self.scale_range}: expected lo,hi with 0 < lo <= hi")
        _check(self.eval_scales and all(s > 0 for s in self.eval_scales),
               f"--eval_scales={self.eval_scales}: expected positive scales")
        if self.toyscapes:
            _check(bool(self.toyscapes_dir), "--toyscapes needs --toyscapes_dir")
            _check(len(self.toyscapes_counts) == 3 and min(self.toyscapes_counts) > 0,
                   f"--toyscapes_counts={self.toyscapes_counts}: expected three positive "
                   "counts (source, target train, target val)")
            _check_size("toyscapes_image_size", self.toyscapes_image_size)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The segmentation network and the discriminators."""
    num_classes: int = 19
    depth: int = 101
    width: float = 1.0
    bn_mode: str = "frozen"
    multi_level: bool = True
    backbone_weights: str = ""
    ndf: int = 64

    def validate(self):
        _check(self.width > 0, f"--width={self.width}: expected > 0")
        _check(self.num_classes == 19, f"--num_classes={self.num_classes}: "
               "the label tables define 19 Cityscapes trainIds")
        if self.backbone_weights:
            _check(os.path.isfile(self.backbone_weights),
                   f"--backbone_weights={self.backbone_weights!r}: no such file")
            _check(self.depth in (50, 101) and self.width == 1.0,
                   "--backbone_weights needs --depth 50 or 101 and --width 1")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """SGD for G, Adam for each D, poly decay (AdaptSegNet settings)."""
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    head_lr_mult: float = 10.0
    lr_d: float = 1e-4
    adam_beta1: float = 0.9
    adam_beta2: float = 0.99

    def validate(self):
        _check_rate("lr_d", self.lr_d)
        _check(math.isfinite(self.weight_decay) and self.weight_decay >= 0,
               f"--weight_decay={self.weight_decay}: expected a finite value >= 0")
        _check(0.0 <= self.momentum < 1.0,
               f"--momentum={self.momentum}: expected a value in [0, 1)")


@dataclasses.dataclass(frozen=True)
class InterConfig:
    """Stage I (Sec 3.1, Eq. 1) and the source-only baseline."""
    variant: str = "adaptsegnet"
    steps: int = 120000
    schedule_steps: int = 250000          # poly horizon; 0 = steps
    batch_size: int = 1
    lr_g: float = 2.5e-4
    lambda_seg_aux: float = 0.1
    lambda_adv_main: float = 1e-3
    lambda_adv_aux: float = 2e-4
    flip: bool = False                    # AdaptSegNet does not mirror here
    model: str = ""                       # --inter_model: replaces Stage I

    def validate(self):
        _check_training("inter", self)
        if self.model:   # the stages it replaces: `validate`
            _check(self.model.endswith(".keras"), f"--inter_model={self.model!r}: expected a "
                   ".keras file (convert a PyTorch .pth with python -m tf_pixintra.import_torch)")
            _check(io_utils.isfile(self.model), f"--inter_model={self.model!r}: no such file")


@dataclasses.dataclass(frozen=True)
class PseudoConfig:
    """Pixel-level subdomain separation (Sec 4.1, Eq. 2-4, 7)."""
    selector: str = "class_thresholds"
    alpha: float = 0.85
    alpha_sweep: tuple = (0.7, 0.85, 1.0)
    threshold_cap: float = 0.9
    intrada_lambda: float = 0.67
    pseudo_scales: tuple = (1.0,)
    pseudo_flip: bool = False
    num_shards: int = 1
    shard_index: int = -1                 # -1 = every shard in this process
    num_preview_images: int = 8           # Fig. 2-style PNGs per pseudo stage

    def validate(self):
        _check(0.0 <= self.alpha <= 1.0, f"--alpha={self.alpha}: expected a value in [0, 1]")
        for a in self.alpha_sweep:
            _check(0.0 <= a <= 1.0, f"--alpha_sweep: {a} is outside [0, 1]")
        _check(0.0 < self.threshold_cap <= 1.0,
               f"--threshold_cap={self.threshold_cap}: expected (0, 1]")
        _check(0.0 <= self.intrada_lambda <= 1.0,
               f"--intrada_lambda={self.intrada_lambda}: expected [0, 1]")
        _check(self.num_preview_images >= 0,
               f"--num_preview_images={self.num_preview_images}: expected >= 0")
        _check(self.num_shards >= 1, f"--num_shards={self.num_shards}: expected >= 1")
        _check(-1 <= self.shard_index < self.num_shards,
               f"--shard_index={self.shard_index}: expected -1 or 0..{self.num_shards - 1}")


@dataclasses.dataclass(frozen=True)
class IntraConfig:
    """Stage II (Sec 4.2, Eq. 5-9) and round two with KLD."""
    method: str = "cts"
    init: str = "fresh"
    steps: int = 120000
    schedule_steps: int = 250000
    batch_size: int = 4
    lr_g: float = 2.4e-4
    beta_main: float = 1e-3
    beta_aux: float = 2e-4
    lambda_seg_aux: float = 0.1
    kld_lambda: float = 0.1               # used from round two on
    d_output_stride: int = 32             # Stage II D's output grid: H/s x W/s
    lr_d: float = 0.0                     # Stage II D learning rate; 0 = --lr_d

    def validate(self):
        _check_training("intra", self)
        _check(math.isfinite(self.lr_d) and self.lr_d >= 0, f"--intra_lr_d={self.lr_d}: "
               "expected a finite learning rate > 0, or 0 for --lr_d")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """What to run, where, and on which devices."""
    stage: str = "all"
    pipeline: tuple = DEFAULT_PIPELINE
    round: int = 1
    run_dir: str = "runs/default"
    seed: int = 0
    strategy: str = "one_device"
    devices: int = 0                      # mirrored: 0 = every visible device
    mixed_precision: str = "float32"
    jit_compile: bool = False
    checkpoint_every: int = 1000
    stop_grace_secs: float = 60.0         # SIGTERM: time to finish the step
    peer_wait_secs: float = 3600.0        # multi_worker: wait for a peer's files
    eval_every: int = 0                   # 0 = only at the end of a stage
    log_every: int = 50                   # TensorBoard scalars
    image_every: int = 200                # TensorBoard prediction images
    num_summary_images: int = 3
    verbose: int = 1
    export_name: str = MODEL_NAME         # saved_model/<name>/, <name>_*.tflite
    export_version: int = 1
    export_tflite: tuple = ("fp32", "fp16", "int8")
    num_representative: int = 16
    intra_diag_every: int = 50            # Stage II gradient-share diagnostic
    deterministic: bool = False           # TF op determinism + global seeds

    def validate(self):
        _check(self.devices >= 0, f"--devices={self.devices}: expected >= 0")
        _check(self.checkpoint_every > 0,
               f"--checkpoint_every={self.checkpoint_every}: expected > 0")
        for name in ("stop_grace_secs", "peer_wait_secs"):
            value = getattr(self, name)
            _check(math.isfinite(value) and value > 0, f"--{name}={value}: expected > 0")
        for name in ("eval_every", "log_every", "image_every", "num_summary_images",
                     "intra_diag_every"):
            _check(getattr(self, name) >= 0, f"--{name}={getattr(self, name)}: expected >= 0")
        _check(bool(self.run_dir), "--run_dir is empty")


@dataclasses.dataclass(frozen=True)
class Config:
    """The whole configuration of one run."""
    data: DataConfig
    model: ModelConfig
    optim: OptimConfig
    inter: InterConfig
    pseudo: PseudoConfig
    intra: IntraConfig
    run: RunConfig

    def experiment_dict(self):
        """The fields that define the experiment (a run directory's identity); engineering
        choices are left out so a run can resume on other hardware or stage by stage."""
        d = dataclasses.asdict(self)
        d["seed"] = d.pop("run")["seed"]
        for key in ("num_shards", "shard_index", "num_preview_images"):
            d["pseudo"].pop(key)
        d["data"].pop("max_eval_images")
        # Settings added later are left out at the value that means what
        # older runs did, so their run directories stay valid.
        if d["intra"]["d_output_stride"] == 32:
            d["intra"].pop("d_output_stride")
        if not d["intra"]["lr_d"]:
            d["intra"].pop("lr_d")
        if d["data"]["toyscapes_variant"] == "standard":
            d["data"].pop("toyscapes_variant")
        if not d["inter"]["model"]:
            d["inter"].pop("model")
        if d["inter"]["flip"] == d["data"]["flip"]:
            d["inter"].pop("flip")
        return _jsonable(d)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


# Field (and old flag name) -> flag. --verbose (Keras' fit output) sat next to
# absl's --verbosity (the logging level): renamed.
_RENAMED = {"verbose": "keras_verbose"}

# Flags with a fixed set of values (one definition: choices), checked once
# by `validate`; the string ones are also enum flags.
_CHOICES = {
    "stage": STAGES, "source_dataset": choices.DATASETS,
    "toyscapes_variant": choices.TOYSCAPES_VARIANTS,
    "depth": choices.DEPTHS, "bn_mode": choices.BN_MODES,
    "inter_variant": choices.INTER_VARIANTS, "selector": choices.SELECTORS,
    "intra_method": choices.INTRA_METHODS, "intra_init": choices.INTRA_INITS,
    "intra_d_output_stride": choices.D_OUTPUT_STRIDES, "round": (1, 2),
    "strategy": choices.STRATEGIES, "mixed_precision": choices.PRECISIONS,
    "keras_verbose": (0, 1, 2),
}
# List flags whose items are enumerated.
_LIST_CHOICES = {"pipeline": PIPELINE_STAGES, "export_tflite": choices.TFLITE_VARIANTS}


def _flag_name(section, field):
    if field in _RENAMED:
        return _RENAMED[field]
    prefixed = {"inter": "inter_", "intra": "intra_"}
    if section in prefixed and not field.startswith(prefixed[section]):
        return prefixed[section] + field
    return field


_SECTIONS = (("data", DataConfig), ("model", ModelConfig), ("optim", OptimConfig),
             ("inter", InterConfig), ("pseudo", PseudoConfig), ("intra", IntraConfig),
             ("run", RunConfig))


def _fields():
    """(section, field, flag name) of every config field, in flag order."""
    for section, cls in _SECTIONS:
        for field in dataclasses.fields(cls):
            yield section, field, _flag_name(section, field.name)


_DEFINE = ((bool, flags.DEFINE_bool), (int, flags.DEFINE_integer),
           (float, flags.DEFINE_float), (str, flags.DEFINE_string))


def define_flags(flag_values=flags.FLAGS):
    """Declares every training flag (call once, from the entry module)."""
    for _, field, name in _fields():
        default, help_text = field.default, flag_help.HELP[name]
        if isinstance(default, str) and name in _CHOICES:
            flags.DEFINE_enum(name, default, _CHOICES[name], help_text, flag_values=flag_values)
        elif isinstance(default, tuple):
            flags.DEFINE_list(name, [str(v) for v in default], help_text,
                              flag_values=flag_values)
            if name in _LIST_CHOICES:
                flags.register_validator(
                    name, functools.partial(_check_items, name, error=flags.ValidationError),
                    flag_values=flag_values)
        else:   # bool before int: a bool is an int
            define = next(define for kind, define in _DEFINE if isinstance(default, kind))
            define(name, default, help_text, flag_values=flag_values)
    for old, new in _RENAMED.items():
        flags.DEFINE_string(old, None, f"Renamed: use --{new}.", flag_values=flag_values)
        flags.register_validator(old, functools.partial(_renamed, old=old, new=new),
                                 flag_values=flag_values)


def _renamed(value, old, new):
    if value is not None:
        raise flags.ValidationError(
            f"--{old} was renamed --{new} (same values); update the command or flagfile")
    return True


def _check_items(name, values, error=ConfigError):
    """Every item of list flag `name` is one of its choices."""
    allowed = _LIST_CHOICES[name]
    bad = [v for v in values if v not in allowed]
    if bad:
        raise error(f"--{name}: unknown value(s) {', '.join(map(repr, bad))}; "
                    f"expected some of {', '.join(allowed)}")
    return True


def grouped_help(flag_values=flags.FLAGS):
    """The project's flags grouped by stage (python -m tf_pixintra.train --helpshort)."""
    return flag_help.grouped_help(flag_values, [name for _, _, name in _fields()])


def _convert_tuple(name, values, default):
    """Converts a list flag to a tuple of the default's element type."""
    if default:   # str items convert to themselves
        kind = type(default[0])
    else:
        kind = float if name == "scale_range" else int
    out = []
    for v in values:
        try:
            out.append(kind(v))
        except ValueError:
            raise ConfigError(f"--{name}: {v!r} is not a {kind.__name__}") from None
    return tuple(out)


def from_flags(flag_values):
    """Builds and validates a Config from parsed absl flag values."""
    kwargs = {section: {} for section, _ in _SECTIONS}
    for section, field, name in _fields():
        value = flag_values[name].value
        if isinstance(field.default, tuple):
            value = _convert_tuple(field.name, value, field.default)
        kwargs[section][field.name] = value
    config = Config(**{section: cls(**kwargs[section]) for section, cls in _SECTIONS})
    validate(config)
    return config


def _check(cond, message):
    if not cond:
        raise ConfigError(message)


def _check_size(name, size):
    _check(len(size) == 2 and all(s > 0 for s in size),
           f"--{name}={','.join(map(str, size))}: expected two positive integers H,W")


def _check_rate(name, value):
    _check(math.isfinite(value) and value > 0,
           f"--{name}={value}: expected a finite learning rate > 0")


def _check_training(name, stage_cfg):
    """A training stage's learning rate, steps and batch size."""
    _check_rate(f"{name}_lr_g", stage_cfg.lr_g)
    _check(stage_cfg.steps >= 0, f"--{name}_steps={stage_cfg.steps}: expected >= 0")
    _check(stage_cfg.batch_size >= 1,
           f"--{name}_batch_size={stage_cfg.batch_size}: expected >= 1")


def _check_choices(section, section_cfg):
    """Each enumerated field of a section holds one of its values."""
    for field in dataclasses.fields(section_cfg):
        name = _flag_name(section, field.name)
        value = getattr(section_cfg, field.name)
        if name in _CHOICES:
            choices.check(f"--{name}", value, _CHOICES[name])
        elif name in _LIST_CHOICES:
            _check_items(name, value)


def validate(config):
    """Raises ConfigError on any invalid value: each section's own `validate`, the
    enumerated values, and what spans sections. Called before work starts."""
    for section, _ in _SECTIONS:
        _check_choices(section, getattr(config, section))
        getattr(config, section).validate()
    selector, method = config.pseudo.selector, config.intra.method
    _check((selector == "intrada") == (method == "intrada"),
           f"--selector={selector!r} and --intra_method={method!r}: the IntraDA baseline "
           "needs both set to intrada (and the pixel-level methods neither)")
    r = config.run
    flag = "pipeline" if r.stage == "all" else "stage"
    for stage, round_index in run_layout.plan(r):
        _check(not config.inter.model or not run_layout.STAGES[stage].stage_one,
               f"--inter_model={config.inter.model!r} replaces Stage I, but "
               f"--{flag} runs {stage!r}; leave it out")
        needs_model = stage == "pseudo" or (stage == "intra" and config.intra.init == "inter")
        _check(not needs_model or config.inter.model
               or run_layout.model_source(r.pipeline, round_index),
               f"--pipeline={','.join(r.pipeline)}: no model makes round {round_index}'s "
               "pseudo labels; put inter or source_only before its pseudo, or set --inter_model")
    if not config.data.toyscapes:
        _check_roots(config.data, [stage for stage, _ in run_layout.plan(r)])


def _check_roots(d, stages):
    """The data roots the stages read must exist (not for ToyScapes)."""
    for name, reads in (("source_root", "stage_one"), ("target_root", "reads_target")):
        if any(getattr(run_layout.STAGES[s], reads) for s in stages):
            path = getattr(d, name)
            _check(bool(path), f"--{name} is empty (or use --toyscapes)")
            _check(io_utils.isdir(path), f"--{name}={path!r}: no such directory")
    for name in ("source_list", "target_list", "target_val_list"):
        path = getattr(d, name)
        if path:
            _check(io_utils.isfile(path), f"--{name}={path!r}: no such file")


def shard_over_workers(config, task_index, num_workers):
    """The config with the pseudo stage split over the --strategy=multi_worker workers,
    one shard each; explicit --num_shards / --shard_index that say otherwise: ConfigError."""
    p = config.pseudo
    _check(p.num_shards in (1, num_workers),
           f"--num_shards={p.num_shards} contradicts the {num_workers} workers of TF_CONFIG "
           "(--strategy=multi_worker gives one shard to each worker); leave --num_shards out")
    _check(p.shard_index in (-1, task_index),
           f"--shard_index={p.shard_index} contradicts this worker's index {task_index} in "
           "TF_CONFIG (--strategy=multi_worker gives shard k to worker k); leave "
           "--shard_index out")
    pseudo = dataclasses.replace(p, num_shards=num_workers, shard_index=task_index)
    return dataclasses.replace(config, pseudo=pseudo)


def check_batch_sizes(config, plan, num_replicas):
    """Each training stage of `plan` ([(stage, round)]) must split its global batch evenly
    over the replicas; ConfigError names the flag and both values."""
    sections = {run_layout.STAGES[stage].section for stage, _ in plan}
    for name in sorted(sections - {""}):
        batch_size = getattr(config, name).batch_size
        _check(batch_size % num_replicas == 0,
               f"--{name}_batch_size={batch_size} does not divide over {num_replicas} replicas "
               f"(--strategy={config.run.strategy}, --devices={config.run.devices}); "
               f"expected a multiple of {num_replicas} (batch sizes are global)")
