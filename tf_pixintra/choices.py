"""The allowed values of every enumerated setting, each defined once (flags and the
modules that check their arguments import them), and the one check against them."""

from tf_pixintra.errors import ConfigError

# Data set layouts (source, target, stats, evaluation); also the pipeline's label formats.
DATASETS = ("gta5", "synthia", "cityscapes")
TOYSCAPES_VARIANTS = ("standard", "shadows")

# Networks.
BN_MODES = ("frozen", "train")
# ResNet depth -> (block kind, blocks per layer) (He et al. 2016, Table 1).
RESNET_LAYOUTS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
}
DEPTHS = tuple(RESNET_LAYOUTS)
# PyTorch DeepLab-v2 checkpoints (tf_pixintra.import_torch): which heads the
# file has (the CLI imports whole models, multi or single), its ASPP branches,
# and the backbones they come with.
TORCH_ARCHS = ("multi", "single", "backbone")
HEAD_BRANCHES = (4, 2)
BOTTLENECK_DEPTHS = tuple(d for d, (kind, _) in RESNET_LAYOUTS.items() if kind == "bottleneck")
# Output strides of the FC discriminator (32: the paper's five stride-2 convs).
D_OUTPUT_STRIDES = (2, 4, 8, 16, 32)

# Stage I: what the discriminators see (source_only has none).
INTER_VARIANTS = ("adaptsegnet", "advent")
# Sec 4.1 pseudo-label selectors and Stage II methods / initialisations.
SELECTORS = ("class_thresholds", "ias", "intrada")
INTRA_METHODS = ("pla", "cts", "intrada", "none")
INTRA_INITS = ("fresh", "inter")

# Devices, numerics, export.
STRATEGIES = ("one_device", "mirrored", "multi_worker")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
TFLITE_VARIANTS = ("fp32", "fp16", "int8")


def check(name, value, allowed):
    """ConfigError "name=value: expected one of ..." unless value is allowed."""
    if value not in allowed:
        raise ConfigError(f"{name}={value!r}: expected one of "
                          f"{', '.join(map(str, allowed))}")
