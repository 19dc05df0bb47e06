"""Flags -> frozen, validated config dataclasses. The only place flags are read.

`define_flags()` declares every flag of `python -m tf_pixintra.train`;
`from_flags(flags.FLAGS)` turns them into a `Config` and validates it once,
before any work starts. Everything downstream takes the dataclasses.
"""

import dataclasses
import math
import os

from absl import flags

from tf_pixintra import choices
from tf_pixintra import flag_help
from tf_pixintra import io_utils
from tf_pixintra.errors import ConfigError
from tf_pixintra.export_contract import MODEL_NAME

STAGES = ("all", "source_only", "inter", "pseudo", "intra", "eval", "export")
PIPELINE_STAGES = ("source_only", "inter", "pseudo", "intra", "eval", "export")
DEFAULT_PIPELINE = ("inter", "pseudo", "intra", "pseudo", "intra", "eval",
                    "export")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the data sets are and how they are fed."""
    source_dataset: str = "gta5"          # gta5 | synthia | cityscapes (oracle)
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
    toyscapes_variant: str = "standard"   # standard | shadows (positive control)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The segmentation network and the discriminators."""
    num_classes: int = 19
    depth: int = 101
    width: float = 1.0
    bn_mode: str = "frozen"               # frozen | train
    multi_level: bool = True
    backbone_weights: str = ""
    ndf: int = 64


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


@dataclasses.dataclass(frozen=True)
class InterConfig:
    """Stage I (Sec 3.1, Eq. 1) and the source-only baseline."""
    variant: str = "adaptsegnet"          # adaptsegnet | advent
    steps: int = 120000
    schedule_steps: int = 250000          # poly horizon; 0 = steps
    batch_size: int = 1
    lr_g: float = 2.5e-4
    lambda_seg_aux: float = 0.1
    lambda_adv_main: float = 1e-3
    lambda_adv_aux: float = 2e-4
    flip: bool = False                    # AdaptSegNet does not mirror here
    model: str = ""                       # --inter_model: replaces Stage I


@dataclasses.dataclass(frozen=True)
class PseudoConfig:
    """Pixel-level subdomain separation (Sec 4.1, Eq. 2-4, 7)."""
    selector: str = "class_thresholds"    # class_thresholds | ias | intrada
    alpha: float = 0.85
    alpha_sweep: tuple = (0.7, 0.85, 1.0)
    threshold_cap: float = 0.9
    intrada_lambda: float = 0.67
    pseudo_scales: tuple = (1.0,)
    pseudo_flip: bool = False
    num_shards: int = 1
    shard_index: int = -1                 # -1 = every shard in this process
    num_preview_images: int = 8           # Fig. 2-style PNGs per pseudo stage


@dataclasses.dataclass(frozen=True)
class IntraConfig:
    """Stage II (Sec 4.2, Eq. 5-9) and round two with KLD."""
    method: str = "cts"                   # pla | cts | intrada | none
    init: str = "fresh"                   # fresh | inter
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


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """What to run, where, and on which devices."""
    stage: str = "all"
    pipeline: tuple = DEFAULT_PIPELINE
    round: int = 1
    run_dir: str = "runs/default"
    seed: int = 0
    strategy: str = "one_device"          # one_device | mirrored | multi_worker
    devices: int = 0                      # mirrored: 0 = every visible device
    mixed_precision: str = "float32"      # float32 | mixed_float16 | mixed_bfloat16
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
        """The fields that define the experiment (a run directory's identity).

        Engineering choices (stage, devices, checkpoint cadence, ...) are left
        out so a run can be resumed on other hardware or one stage at a time.
        """
        d = dataclasses.asdict(self)
        run = d.pop("run")
        d["seed"] = run["seed"]
        for key in ("num_shards", "shard_index", "num_preview_images"):
            d["pseudo"].pop(key)
        d["data"].pop("max_eval_images")
        if d["intra"]["d_output_stride"] == 32:
            # The paper's D: run directories made before the setting stay valid.
            d["intra"].pop("d_output_stride")
        if not d["intra"]["lr_d"]:
            d["intra"].pop("lr_d")   # --lr_d, as before the setting existed
        if d["data"]["toyscapes_variant"] == "standard":
            # Run directories made before the variants existed stay valid.
            d["data"].pop("toyscapes_variant")
        # Run directories made before --inter_model and --inter_flip existed
        # stay valid when these say what those runs did: Stage I trained
        # (no imported model) and mirrored as --flip said.
        if not d["inter"]["model"]:
            d["inter"].pop("model")
        if d["inter"]["flip"] == d["data"]["flip"]:
            d["inter"].pop("flip")
        return _jsonable(d)

    def to_dict(self):
        return _jsonable(dataclasses.asdict(self))


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


# Fields whose flag has another name. --verbose (Keras' fit output) sat next
# to absl's --verbosity (the logging level): renamed.
_RENAMED = {"verbose": "keras_verbose"}
_OLD_NAMES = {"verbose": "keras_verbose"}   # old flag -> new flag

# Enumerated flags and their allowed values (one definition: choices).
_ENUMS = {
    "stage": STAGES, "source_dataset": choices.DATASETS,
    "toyscapes_variant": choices.TOYSCAPES_VARIANTS,
    "bn_mode": choices.BN_MODES, "inter_variant": choices.INTER_VARIANTS,
    "selector": choices.SELECTORS, "intra_method": choices.INTRA_METHODS,
    "intra_init": choices.INTRA_INITS, "strategy": choices.STRATEGIES,
    "mixed_precision": choices.PRECISIONS,
}
# List flags whose items are enumerated.
_LIST_ENUMS = {"pipeline": PIPELINE_STAGES,
               "export_tflite": choices.TFLITE_VARIANTS}


def _flag_name(section, field):
    if field in _RENAMED:
        return _RENAMED[field]
    prefixed = {"inter": "inter_", "intra": "intra_"}
    if section in prefixed and not field.startswith(prefixed[section]):
        return prefixed[section] + field
    return field


_SECTIONS = (("data", DataConfig), ("model", ModelConfig),
             ("optim", OptimConfig), ("inter", InterConfig),
             ("pseudo", PseudoConfig), ("intra", IntraConfig),
             ("run", RunConfig))

_HELP = {
    "stage": "Stage to run: " + ", ".join(STAGES) + ". 'all' runs --pipeline.",
    "pipeline": "Stages of --stage=all, in order. 'pseudo' and 'intra' count "
                "rounds: the n-th pseudo/intra is round n (round >= 2 adds KLD).",
    "round": "Round of a single --stage=pseudo or --stage=intra (1 or 2).",
    "strategy": "one_device | mirrored | multi_worker (TF_CONFIG names the "
                "workers). Batch sizes are GLOBAL: each of R replicas gets "
                "batch_size / R examples.",
    "devices": "mirrored: number of devices; on a CPU-only machine the CPU is "
               "split into this many logical devices. 0 = all visible.",
    "jit_compile": "Compile train steps with XLA. Off by default: XLA fails "
                   "under MirroredStrategy on CPU.",
    "mixed_precision": "float32 | mixed_float16 | mixed_bfloat16. Logits and "
                       "discriminator outputs stay float32; float16 wraps every "
                       "optimizer in a LossScaleOptimizer.",
    "alpha": "Eq. 2 scaling of the class thresholds, in [0, 1].",
    "selector": "Pseudo-label selector: class_thresholds (Eq. 2-3), ias "
                "(IAST instance-adaptive thresholds) or intrada (image-level "
                "entropy ranking, the IntraDA baseline).",
    "intra_method": "Stage II adversarial term: pla (Eq. 6), cts (Eq. 8), "
                    "intrada (image-level baseline) or none (Eq. 5 only).",
    "intra_init": "Stage II initialisation: fresh (ImageNet weights from "
                  "--backbone_weights, or random) or inter (the Stage I model).",
    "bn_mode": "frozen: BatchNorm in inference mode, affine frozen (Caffe "
               "DeepLab, use with pretrained weights); train: ordinary BN.",
    "backbone_weights": "Backbone initialisation: a keras.applications "
                        "ResNet50/101 weights file (.h5 or .weights.h5), or a "
                        "PyTorch DeepLab-v2 init (.pth, e.g. DeepLab_resnet_"
                        "pretrained_init-f81d91e8.pth; needs torch): backbone "
                        "only, the heads are freshly initialised.",
    "flip": "Stage II: random horizontal flip (with the random scale and "
            "crop). Stage I has its own --inter_flip.",
    "inter_flip": "Stage I: random horizontal flip of source and target "
                  "images (off: AdaptSegNet's training does not mirror).",
    "inter_model": "A .keras generator (e.g. made by tf_pixintra.import_torch "
                   "from a released PyTorch model) that replaces Stage I: "
                   "round one's pseudo labels (and --intra_init=inter) use "
                   "it. Leave 'inter' and 'source_only' out of --pipeline.",
    "stop_grace_secs": "After SIGTERM/Ctrl-C, training stops at the end of "
                       "the current step and saves a checkpoint; a step not "
                       "done within this many seconds ends the process (the "
                       "newest periodic checkpoint is then the resume point).",
    "peer_wait_secs": "multi_worker: how long a worker waits for another "
                      "worker's files (pass-1 statistics and pass-2 shards "
                      "of the pseudo stage; the chief's pseudo summary, "
                      "eval and export) before it stops with an error "
                      "naming the missing files (a crashed peer); raise it "
                      "when the chief's eval or export takes longer.",
    "log_every": "Write the training losses and learning rates to TensorBoard "
                 "(<stage>/tb, needs the tensorboard package) every N steps; "
                 "0 = never.",
    "image_every": "Write target images with G's prediction (and the ground "
                   "truth when labelled) to TensorBoard every N steps and at "
                   "the last step; 0 = never.",
    "num_summary_images": "How many target images (val when labelled, else "
                          "train) the TensorBoard image summaries show.",
    "source_dataset": "Layout of the labelled source: gta5, synthia, or "
                      "cityscapes (with --toyscapes: the target's own train "
                      "labels, i.e. the oracle upper bound).",
    "toyscapes": "Use the built-in ToyScapes benchmark (generated on first use "
                 "in --toyscapes_dir) instead of --source_root/--target_root.",
    "toyscapes_variant": "ToyScapes variant: standard, or shadows (positive "
                         "control: soft cast shadows over parts of every "
                         "target image, same scenes and labels; generated "
                         "in <toyscapes_dir>_shadows).",
    "intra_d_output_stride": "Stage II discriminators' output stride s: "
                             "their logit grid is H/s x W/s before the "
                             "upsampling to pixels. 32 = the paper's D "
                             "(512x1024 -> 16x32); 16, 8, 4, 2 keep that many "
                             "stride-2 convs (log2 s) and make the rest "
                             "stride 1, e.g. 4 gives 16x32 at 64x128.",
    "intra_lr_d": "Stage II discriminators' Adam learning rate; 0 (the "
                  "default) = --lr_d, which Stage I's discriminators use.",
    "intra_diag_every": "Stage II: every N steps measure the share of G's "
                        "gradient norm that comes from the adversarial term "
                        "(logged as diag_adv_grad_share; costs one extra "
                        "backward pass of G on those steps); 0 = never. The "
                        "discriminators' AUC is logged every step regardless.",
    "deterministic": "Deterministic training: TF op determinism "
                     "(tf.config.experimental.enable_op_determinism) and the "
                     "Python/NumPy/TF global seeds set from --seed, so the "
                     "same command on the same machine writes the same "
                     "metrics.json. May be slower (deterministic kernels only; "
                     "benchmarks/train_step.py --deterministic measures it); "
                     "results may still differ across machines or TF builds.",
}


def define_flags(flag_values=flags.FLAGS):
    """Declares every training flag (call once, from the entry module)."""
    for section, cls in _SECTIONS:
        for field in dataclasses.fields(cls):
            name = _flag_name(section, field.name)
            default = field.default
            help_text = _HELP.get(name) or flag_help.HELP.get(name) or \
                _HELP.get(field.name, f"{section}.{field.name}")
            if name in _ENUMS:
                flags.DEFINE_enum(name, default, _ENUMS[name], help_text,
                                  flag_values=flag_values)
            elif isinstance(default, bool):
                flags.DEFINE_bool(name, default, help_text,
                                   flag_values=flag_values)
            elif isinstance(default, int):
                flags.DEFINE_integer(name, default, help_text,
                                   flag_values=flag_values)
            elif isinstance(default, float):
                flags.DEFINE_float(name, default, help_text,
                                   flag_values=flag_values)
            elif isinstance(default, tuple):
                flags.DEFINE_list(name, [str(v) for v in default], help_text,
                                  flag_values=flag_values)
                if name in _LIST_ENUMS:
                    flags.register_validator(
                        name, _list_enum_checker(name, _LIST_ENUMS[name]),
                        flag_values=flag_values)
            else:
                flags.DEFINE_string(name, default, help_text,
                                   flag_values=flag_values)
    for old, new in _OLD_NAMES.items():
        flags.DEFINE_string(old, None, f"Renamed: use --{new}.",
                            flag_values=flag_values)
        flags.register_validator(
            old, lambda value, old=old, new=new: _renamed(value, old, new),
            flag_values=flag_values)


def _renamed(value, old, new):
    if value is not None:
        raise flags.ValidationError(f"--{old} was renamed --{new} (same "
                                    "values); update the command or flagfile")
    return True


def _list_enum_checker(name, allowed):
    def check(values):
        bad = [v for v in values if v not in allowed]
        if bad:
            raise flags.ValidationError(
                f"--{name}: unknown value(s) {', '.join(map(repr, bad))}; "
                f"expected some of {', '.join(allowed)}")
        return True
    return check


def grouped_help(flag_values=flags.FLAGS):
    """The project's flags grouped by stage (python -m tf_pixintra.train
    --helpshort)."""
    names = [_flag_name(section, field.name) for section, cls in _SECTIONS
             for field in dataclasses.fields(cls)]
    return flag_help.grouped_help(flag_values, names)


def _convert_tuple(name, values, default):
    """Converts a list flag to a tuple of the default's element type."""
    if not default:
        kind = float if name in ("scale_range",) else int
    elif isinstance(default[0], str):
        return tuple(values)
    else:
        kind = type(default[0])
    out = []
    for v in values:
        try:
            out.append(kind(v))
        except ValueError:
            raise ConfigError(f"--{name}: {v!r} is not a {kind.__name__}") from None
    return tuple(out)


def from_flags(flag_values):
    """Builds and validates a Config from parsed absl flag values."""
    sections = {}
    for section, cls in _SECTIONS:
        kwargs = {}
        for field in dataclasses.fields(cls):
            name = _flag_name(section, field.name)
            value = flag_values[name].value
            if isinstance(field.default, tuple):
                value = _convert_tuple(field.name, value, field.default)
            kwargs[field.name] = value
        sections[section] = cls(**kwargs)
    config = Config(**sections)
    validate(config)
    return config


def _check(cond, message):
    if not cond:
        raise ConfigError(message)


def _check_size(name, size, allow_empty=False):
    if allow_empty and not size:
        return
    _check(len(size) == 2 and all(s > 0 for s in size),
           f"--{name}={','.join(map(str, size))}: expected two positive "
           "integers H,W")


def validate(config):
    """Raises ConfigError on any invalid value. Called before work starts."""
    d, m, r = config.data, config.model, config.run
    _check(r.stage in STAGES,
           f"--stage={r.stage!r}: unknown stage; expected one of {STAGES}")
    for s in r.pipeline:
        _check(s in PIPELINE_STAGES, f"--pipeline: unknown stage {s!r}; "
               f"expected some of {PIPELINE_STAGES}")
    _check(r.round in (1, 2), f"--round={r.round}: expected 1 or 2")
    _check(r.strategy in choices.STRATEGIES,
           f"--strategy={r.strategy!r}: expected one_device, mirrored or "
           "multi_worker")
    _check(r.mixed_precision in choices.PRECISIONS,
           f"--mixed_precision={r.mixed_precision!r}: expected float32, "
           "mixed_float16 or mixed_bfloat16")
    _check(r.devices >= 0, f"--devices={r.devices}: expected >= 0")
    _check(r.verbose in (0, 1, 2),
           f"--keras_verbose={r.verbose}: expected 0, 1 or 2")
    _check(r.checkpoint_every > 0,
           f"--checkpoint_every={r.checkpoint_every}: expected > 0")
    _check(math.isfinite(r.stop_grace_secs) and r.stop_grace_secs > 0,
           f"--stop_grace_secs={r.stop_grace_secs}: expected > 0")
    _check(math.isfinite(r.peer_wait_secs) and r.peer_wait_secs > 0,
           f"--peer_wait_secs={r.peer_wait_secs}: expected > 0")
    _check_optim(config)
    for name in ("eval_every", "log_every", "image_every",
                 "num_summary_images", "intra_diag_every"):
        _check(getattr(r, name) >= 0,
               f"--{name}={getattr(r, name)}: expected >= 0")
    _check(bool(r.run_dir), "--run_dir is empty")
    for t in r.export_tflite:
        _check(t in choices.TFLITE_VARIANTS,
               f"--export_tflite: unknown variant {t!r}")
    _check(0.0 <= config.pseudo.alpha <= 1.0,
           f"--alpha={config.pseudo.alpha}: expected a value in [0, 1]")
    for a in config.pseudo.alpha_sweep:
        _check(0.0 <= a <= 1.0, f"--alpha_sweep: {a} is outside [0, 1]")
    _check(0.0 < config.pseudo.threshold_cap <= 1.0,
           f"--threshold_cap={config.pseudo.threshold_cap}: expected (0, 1]")
    _check(0.0 <= config.pseudo.intrada_lambda <= 1.0,
           f"--intrada_lambda={config.pseudo.intrada_lambda}: expected [0, 1]")
    _check(config.pseudo.selector in choices.SELECTORS,
           f"--selector={config.pseudo.selector!r}: expected "
           "class_thresholds, ias or intrada")
    _check(config.pseudo.num_preview_images >= 0,
           f"--num_preview_images={config.pseudo.num_preview_images}: "
           "expected >= 0")
    _check(config.pseudo.num_shards >= 1,
           f"--num_shards={config.pseudo.num_shards}: expected >= 1")
    _check(-1 <= config.pseudo.shard_index < config.pseudo.num_shards,
           f"--shard_index={config.pseudo.shard_index}: expected -1 "
           f"or 0..{config.pseudo.num_shards - 1}")
    _check(config.intra.method in choices.INTRA_METHODS,
           f"--intra_method={config.intra.method!r}: expected pla, cts, "
           "intrada or none")
    _check((config.pseudo.selector == "intrada") ==
           (config.intra.method == "intrada"),
           f"--selector={config.pseudo.selector!r} and --intra_method="
           f"{config.intra.method!r}: the IntraDA baseline needs both set to "
           "intrada (and the pixel-level methods neither)")
    _check(config.intra.d_output_stride in choices.D_OUTPUT_STRIDES,
           f"--intra_d_output_stride={config.intra.d_output_stride}: expected "
           f"one of {choices.D_OUTPUT_STRIDES}")
    _check(config.intra.init in choices.INTRA_INITS,
           f"--intra_init={config.intra.init!r}: expected fresh or inter")
    _check(config.inter.variant in choices.INTER_VARIANTS,
           f"--inter_variant={config.inter.variant!r}: expected adaptsegnet "
           "or advent")
    _check(m.depth in choices.DEPTHS,
           f"--depth={m.depth}: expected 18, 34, 50 or 101")
    _check(m.width > 0, f"--width={m.width}: expected > 0")
    _check(m.bn_mode in choices.BN_MODES,
           f"--bn_mode={m.bn_mode!r}: expected frozen or train")
    _check(m.num_classes == 19, f"--num_classes={m.num_classes}: the label "
           "tables define 19 Cityscapes trainIds")
    if m.backbone_weights:
        _check(os.path.isfile(m.backbone_weights),
               f"--backbone_weights={m.backbone_weights!r}: no such file")
        _check(m.depth in (50, 101) and m.width == 1.0,
               "--backbone_weights needs --depth 50 or 101 and --width 1")
    _check_inter_model(config)
    for stage_cfg, name in ((config.inter, "inter"), (config.intra, "intra")):
        _check(stage_cfg.steps >= 0, f"--{name}_steps={stage_cfg.steps}: "
               "expected >= 0")
        _check(stage_cfg.batch_size >= 1,
               f"--{name}_batch_size={stage_cfg.batch_size}: expected >= 1")
    _check(d.source_dataset in choices.DATASETS,
           f"--source_dataset={d.source_dataset!r}: expected gta5, synthia "
           "or cityscapes (an oracle trained on target labels)")
    _check_size("source_size", d.source_size)
    _check_size("target_size", d.target_size)
    _check_size("eval_size", d.eval_size)
    _check_size("crop_size", d.crop_size, allow_empty=True)
    if d.scale_range:
        _check(len(d.scale_range) == 2 and 0 < d.scale_range[0] <=
               d.scale_range[1], f"--scale_range={d.scale_range}: expected "
               "lo,hi with 0 < lo <= hi")
    _check(d.eval_scales and all(s > 0 for s in d.eval_scales),
           f"--eval_scales={d.eval_scales}: expected positive scales")
    if d.toyscapes:
        _check(bool(d.toyscapes_dir), "--toyscapes needs --toyscapes_dir")
        _check(len(d.toyscapes_counts) == 3 and min(d.toyscapes_counts) > 0,
               f"--toyscapes_counts={d.toyscapes_counts}: expected three "
               "positive counts (source, target train, target val)")
        _check_size("toyscapes_image_size", d.toyscapes_image_size)
        _check(d.toyscapes_variant in choices.TOYSCAPES_VARIANTS,
               f"--toyscapes_variant={d.toyscapes_variant!r}: expected "
               "standard or shadows")
    else:
        _check_roots(config)


def _check_optim(config):
    """Learning rates finite and > 0, weight decay >= 0, momentum in [0, 1)."""
    o = config.optim
    for name, value in (("inter_lr_g", config.inter.lr_g),
                        ("intra_lr_g", config.intra.lr_g), ("lr_d", o.lr_d)):
        _check(math.isfinite(value) and value > 0,
               f"--{name}={value}: expected a finite learning rate > 0")
    _check(math.isfinite(config.intra.lr_d) and config.intra.lr_d >= 0,
           f"--intra_lr_d={config.intra.lr_d}: expected a finite learning rate "
           "> 0, or 0 for --lr_d")
    _check(math.isfinite(o.weight_decay) and o.weight_decay >= 0,
           f"--weight_decay={o.weight_decay}: expected a finite value >= 0")
    _check(0.0 <= o.momentum < 1.0,
           f"--momentum={o.momentum}: expected a value in [0, 1)")


def _check_inter_model(config):
    """--inter_model: an existing .keras file, and no Stage I to run."""
    path = config.inter.model
    if not path:
        return
    _check(path.endswith(".keras"), f"--inter_model={path!r}: expected a "
           ".keras file (convert a PyTorch .pth with python -m "
           "tf_pixintra.import_torch)")
    _check(io_utils.isfile(path), f"--inter_model={path!r}: no such file")
    stages = config.run.pipeline if config.run.stage == "all" else (
        config.run.stage,)
    for stage in ("inter", "source_only"):
        _check(stage not in stages, f"--inter_model={path!r} replaces Stage "
               f"I, but --{'pipeline' if config.run.stage == 'all' else 'stage'}"
               f" runs {stage!r}; leave it out")


def _check_roots(config):
    """Data roots must exist (ToyScapes is generated instead)."""
    d = config.data
    stages = config.run.pipeline if config.run.stage == "all" else (
        config.run.stage,)
    needs_source = any(s in ("source_only", "inter") for s in stages)
    if needs_source:
        _check(bool(d.source_root), "--source_root is empty (or use --toyscapes)")
        _check(os.path.isdir(d.source_root),
               f"--source_root={d.source_root!r}: no such directory")
    if any(s != "export" for s in stages):
        _check(bool(d.target_root), "--target_root is empty (or use --toyscapes)")
        _check(os.path.isdir(d.target_root),
               f"--target_root={d.target_root!r}: no such directory")
    for name in ("source_list", "target_list", "target_val_list"):
        path = getattr(d, name)
        if path:
            _check(os.path.isfile(path), f"--{name}={path!r}: no such file")


def shard_over_workers(config, task_index, num_workers):
    """The config with the pseudo stage split over `num_workers` workers.

    Under --strategy=multi_worker every worker does one shard: --num_shards
    becomes the number of workers and --shard_index this worker's index. An
    explicit value that says otherwise is a ConfigError naming both.
    """
    p = config.pseudo
    _check(p.num_shards in (1, num_workers),
           f"--num_shards={p.num_shards} contradicts the {num_workers} workers "
           "of TF_CONFIG (--strategy=multi_worker gives one shard to each "
           "worker); leave --num_shards out")
    _check(p.shard_index in (-1, task_index),
           f"--shard_index={p.shard_index} contradicts this worker's index "
           f"{task_index} in TF_CONFIG (--strategy=multi_worker gives shard "
           "k to worker k); leave --shard_index out")
    pseudo = dataclasses.replace(p, num_shards=num_workers,
                                 shard_index=task_index)
    return dataclasses.replace(config, pseudo=pseudo)


def check_batch_sizes(config, plan, num_replicas):
    """Each training stage's global batch must split evenly over the replicas.

    `plan` is [(stage, round)]; ConfigError names the flag and both values.
    """
    stages = {stage for stage, _ in plan}
    for name, stage_cfg, used in (
            ("inter", config.inter, stages & {"source_only", "inter"}),
            ("intra", config.intra, stages & {"intra"})):
        _check(not used or stage_cfg.batch_size % num_replicas == 0,
               f"--{name}_batch_size={stage_cfg.batch_size} does not divide "
               f"over {num_replicas} replicas (--strategy="
               f"{config.run.strategy}, --devices={config.run.devices}); "
               f"expected a multiple of {num_replicas} (batch sizes are global)")
