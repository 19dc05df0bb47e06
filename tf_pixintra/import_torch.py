"""Entry point: turn a PyTorch DeepLab-v2 checkpoint into a tf_pixintra model.

    python -m tf_pixintra.import_torch --checkpoint FILE.pth --arch multi|single \
        --out MODEL.keras [--num_classes 19] [--head_branches 4|2]

The result is the generator `build_deeplab_v2` makes (frozen BN), saved like
every stage's `model.keras`, so `--inter_model`, `tf_pixintra.evaluate
--model` and the exporter take it as it is. Bad input (no torch, not a
checkpoint, a missing or mismatching key) prints one line naming the file
and key and exits with 2.
"""

import os
import sys

from absl import app
from absl import flags

from tf_pixintra import choices
from tf_pixintra import io_utils
from tf_pixintra import torch_reader
from tf_pixintra.errors import ConfigError
from tf_pixintra.errors import cli_main


def define_flags(flag_values=flags.FLAGS):
    flags.DEFINE_string("checkpoint", None, "PyTorch .pth state dict to read.",
                        flag_values=flag_values)
    flags.DEFINE_string("arch", None, "multi (two heads: layer5 aux on layer3, "
                        "layer6 main on layer4) or single (one head on layer4, "
                        "named layer5 or layer6).", flag_values=flag_values)
    flags.DEFINE_string("out", None, "Where to write the Keras model (.keras).",
                        flag_values=flag_values)
    flags.DEFINE_integer("num_classes", 19, "Classes of the heads.", flag_values=flag_values)
    flags.DEFINE_integer("head_branches", 4, "Classifier branches summed: 4 "
                         "(ADVENT, IntraDA, BDL, CRST) or 2 (AdaptSegNet's "
                         "released models: its Classifier_Module returns "
                         "after the second branch).", flag_values=flag_values)
    flags.DEFINE_integer("depth", 101, "ResNet depth of the checkpoint (50 or "
                         "101).", flag_values=flag_values)
    flags.DEFINE_float("width", 1.0, "Channel multiplier of the checkpoint (1.0 for "
                       "every released model).", flag_values=flag_values)


def _check_flags(fv):
    if not fv.checkpoint:
        raise ConfigError("--checkpoint is required: a PyTorch .pth file")
    choices.check("--arch", fv.arch, choices.TORCH_ARCHS[:2])
    if not fv.out or not fv.out.endswith(".keras"):
        raise ConfigError(f"--out={fv.out!r}: expected a path ending in .keras")
    if fv.num_classes < 1:
        raise ConfigError(f"--num_classes={fv.num_classes}: expected >= 1")
    choices.check("--head_branches", fv.head_branches, choices.HEAD_BRANCHES)
    choices.check("--depth", fv.depth, choices.BOTTLENECK_DEPTHS)
    if not fv.width > 0:
        raise ConfigError(f"--width={fv.width}: expected > 0")


def save_model_atomically(model, path):
    """model.save to a temporary .keras name beside `path`, then rename."""
    directory = io_utils.parent(path)
    io_utils.makedirs(directory)
    tmp = io_utils.join(directory, f".partial.{os.getpid()}.{os.path.basename(path)}")
    try:
        model.save(tmp)
        io_utils.rename(tmp, path)
    finally:
        io_utils.remove(tmp, missing_ok=True)


def import_checkpoint(checkpoint, arch, out, num_classes=19, head_branches=4,
                      depth=101, width=1.0):
    """Reads `checkpoint`, builds our generator, copies, saves to `out`;
    returns the summary of `load_torch_state` plus the output path."""
    # Read (and refuse a bad file) before TensorFlow is imported: seconds.
    state = torch_reader.read_state_dict(checkpoint)
    # pylint: disable=import-outside-toplevel
    from tf_pixintra.models import build_deeplab_v2
    from tf_pixintra.models import torch_weights
    model = build_deeplab_v2(num_classes, depth=depth, width=width,
                             multi_level=(arch == "multi"), bn_mode="frozen",
                             seed=0, name="generator")
    summary = torch_weights.load_torch_state(
        model, state, arch, head_branches=head_branches, source=checkpoint)
    save_model_atomically(model, out)
    return {**summary, "out": out}


def run(fv):
    _check_flags(fv)
    summary = import_checkpoint(fv.checkpoint, fv.arch, fv.out, fv.num_classes,
                                fv.head_branches, fv.depth, fv.width)
    heads = ", ".join(f"{k} -> {v}" for k, v in sorted(summary["heads"].items()))
    print(f"{fv.checkpoint}: {summary['tensors']} tensors imported ({heads}); "
          f"wrote {summary['out']}")
    return summary


def cli(argv):
    """Parses `argv` (argv[0] is the program name) on fresh flags and runs;
    returns the exit status (0, or 2 after one line on stderr)."""
    fv = flags.FlagValues()
    define_flags(fv)
    try:
        rest = fv(argv)
    except flags.Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return main(rest, fv)


def main(argv, fv=flags.FLAGS):
    """absl entry point: exit 2 with one line on bad input or extra arguments."""
    try:
        return cli_main(argv, run, fv, status=2)
    except app.UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    define_flags()
    app.run(main)
