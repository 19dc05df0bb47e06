r"""ToyScapes: a built-in synthetic-to-real street-scene benchmark.

    python -m tf_pixintra.data.toyscapes --out DIR --seed S \
        [--num_source 400 --num_target 400 --num_val 100 \
         --height 128 --width 256 --workers N --variant standard|shadows]

writes procedurally drawn street scenes (toyscapes_render) in the real data set layouts, read by
the ordinary readers (tf_pixintra.data.datasets):

- source ("synthetic"), GTA5 layout: DIR/gta5/{images,labels}/00001.png;
- target ("real"), Cityscapes layout:
  DIR/cityscapes/leftImg8bit/{train,val}/<city>/<name>_leftImg8bit.png and
  DIR/cityscapes/gtFine/{train,val}/<city>/<name>_gtFine_labelIds.png with
  <name> = <city>_SSSSSS_000019 (invented cities). Labels are 8-bit labelIds;
  target train ones are for oracle runs and diagnostics, never adaptation.
- DIR/toyscapes.json, written last: the arguments, and the look parameters
  (haze density beta, ...) of each target image.

Image k of a split is drawn from its own generator seeded by (seed, split, k), so the same
arguments give the same bytes whatever the counts.

Variant "shadows" is a positive control for Stage II: every target image also gets soft bluish cast
shadows (`toyscapes_render.draw_shadows`) over about a third of its non-sky pixels, drawn from a
separate generator, so scenes, labels and the rest of the look are the standard variant's at the
same seed and the hard pixels a Stage I model leaves are mostly shadowed ones.
"""

import contextlib
import fcntl
import io
import multiprocessing
import os
import shutil
import sys
import time
import types

import numpy as np
from absl import app
from absl import flags
from PIL import Image

from tf_pixintra import choices, io_utils, progress
from tf_pixintra.data import labels as labels_lib
from tf_pixintra.data import toyscapes_render as render
from tf_pixintra.errors import ConfigError

# Bump whenever the drawing changes the bytes written for the same arguments.
GENERATOR_VERSION = 1
MANIFEST_NAME = "toyscapes.json"
MARKER_NAME = ".toyscapes"   # marks a directory as written by ToyScapes
LOCK_NAME = ".toyscapes.lock"

DEFAULTS = {"seed": 0, "num_source": 400, "num_target": 400, "num_val": 100,
            "height": 128, "width": 256}
MIN_SIZE = 32

SOURCE_DIR = "gta5"
TARGET_DIR = "cityscapes"
TRAIN_CITIES = ("toyburg", "pixelstadt", "voxelheim")
VAL_CITIES = ("rendermund", "shaderlingen")
FRAME = 19  # Cityscapes' labelled frame number

_CHUNK = 25  # images per parallel task
# Split codes mixed into the per-image seeds.
_SPLIT_CODES = {"source": 0, "train": 1, "val": 2}


def target_name(split, index):
    """Cityscapes-style stem of target image `index` of `split`."""
    cities = TRAIN_CITIES if split == "train" else VAL_CITIES
    return f"{cities[index % len(cities)]}_{index // len(cities):06d}_{FRAME:06d}"


def source_paths(root, index):
    """(image, label) paths of source image `index` (0-based; "00001.png")."""
    name = f"{index + 1:05d}.png"
    base = os.path.join(root, SOURCE_DIR)
    return (os.path.join(base, "images", name), os.path.join(base, "labels", name))


def target_paths(root, split, index):
    """(image, label) paths of target image `index` of `split` ("train"/"val")."""
    name = target_name(split, index)
    city = name.split("_")[0]
    base = os.path.join(root, TARGET_DIR)
    return (os.path.join(base, "leftImg8bit", split, city, name + "_leftImg8bit.png"),
            os.path.join(base, "gtFine", split, city, name + "_gtFine_labelIds.png"))


def dataset_paths(root):
    """Absolute "root", "manifest", "gta5" (source root, split "all") and
    "cityscapes" (target root, splits "train" and "val") of a benchmark."""
    root = os.path.abspath(os.fspath(root))
    return {"root": root, "manifest": os.path.join(root, MANIFEST_NAME),
            "gta5": os.path.join(root, SOURCE_DIR), "cityscapes": os.path.join(root, TARGET_DIR)}


def _generators(seed, split, index):
    """Independent generators (scene, look, shadows) of one image; a
    SeedSequence child depends on its index only, so each is fixed alone."""
    sequence = np.random.SeedSequence([seed, _SPLIT_CODES[split], index])
    return tuple(np.random.default_rng(child) for child in sequence.spawn(3))


def variant_dir(data_dir, variant):
    """Where `ensure_toyscapes` keeps a variant: data_dir itself for the
    standard one, `<data_dir>_<variant>` beside it for the others."""
    choices.check("variant", variant, choices.TOYSCAPES_VARIANTS)
    if variant == "standard":
        return data_dir
    return os.fspath(data_dir).rstrip("/\\") + "_" + variant


def draw_source(seed, index, height, width):
    """Source image `index`: (uint8 RGB [H, W, 3], uint8 trainIds [H, W])."""
    scene_rng = _generators(seed, "source", index)[0]
    label, _, rgb, _ = render.render_scene(scene_rng, height, width, render.SOURCE_PALETTE)
    return render.render_source_look(rgb), label


def draw_target(seed, split, index, height, width, variant="standard"):
    """Target image `index` of `split`: (RGB, trainIds, look conditions), the
    conditions of `render.draw_target_conditions` (and `draw_shadows`)."""
    choices.check("variant", variant, choices.TOYSCAPES_VARIANTS)
    scene_rng, look_rng, shadow_rng = _generators(seed, split, index)
    label, depth, rgb, orient = render.render_scene(
            scene_rng, height, width, render.TARGET_PALETTE)
    conditions = render.draw_target_conditions(look_rng)
    shadow = None
    if variant == "shadows":
        shadow, info = render.draw_shadows(shadow_rng, label)
        conditions = {**conditions, **info}
    image = render.render_target_look(look_rng, label, depth, rgb, orient, conditions, shadow)
    return image, label, conditions


def _write_pair(image_path, label_path, image, train_ids):
    """Writes an RGB image and its 8-bit Cityscapes labelId PNG atomically. Compression level 1:
    higher ones hardly shrink the noisy target images, at twice the time."""
    label_ids = labels_lib.train_ids_to_label_ids(train_ids)
    for path, array, mode in ((image_path, image, "RGB"), (label_path, label_ids, "L")):
        buffer = io.BytesIO()
        Image.fromarray(array, mode=mode).save(buffer, format="PNG", compress_level=1)
        io_utils.write_bytes(path, buffer.getvalue())


def _check_args(seed, num_source, num_target, num_val, height, width):
    """ConfigError for arguments outside their ranges."""
    for name, value, low in (("seed", seed, 0), ("num_source", num_source, 0),
                             ("num_target", num_target, 0), ("num_val", num_val, 0),
                             ("height", height, MIN_SIZE), ("width", width, MIN_SIZE)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ConfigError(f"toyscapes: {name}={value!r}; expected an integer >= {low}")
        if value < low:
            raise ConfigError(f"toyscapes: {name}={value}; expected an integer >= {low}")


def _prepare_directory(root):
    """Makes `root` ready for a fresh benchmark: removes the manifest first (a killed run is never
    taken as complete), then the data folders of an earlier ToyScapes run; ConfigError for such
    folders ToyScapes did not write."""
    os.makedirs(root, exist_ok=True)
    marker = os.path.join(root, MARKER_NAME)
    manifest = os.path.join(root, MANIFEST_NAME)
    existing = [d for d in (SOURCE_DIR, TARGET_DIR) if os.path.exists(os.path.join(root, d))]
    owned = os.path.exists(marker) or os.path.exists(manifest)
    if existing and not owned:
        raise ConfigError(f"{root}: holds {' and '.join(existing)} folders that were not "
                          f"written by ToyScapes (no {MARKER_NAME} or {MANIFEST_NAME}); "
                          "expected an empty or ToyScapes directory. Choose another "
                          "--out directory.")
    if os.path.exists(manifest):
        os.remove(manifest)
    io_utils.write_text(marker, "Written by tf_pixintra.data.toyscapes; "
                        "its folders are regenerated at will.\n")
    for d in existing:
        shutil.rmtree(os.path.join(root, d))


def _write_images(task):
    """Draws and writes the images of `task` (root, seed, height, width, split, indices, variant);
    returns [(split, index, look conditions)] of target images (none for split "source")."""
    root, seed, height, width, split, indices, variant = task
    written = []
    for index in indices:
        if split == "source":
            image, label = draw_source(seed, index, height, width)
            _write_pair(*source_paths(root, index), image, label)
        else:
            image, label, conditions = draw_target(seed, split, index, height, width, variant)
            _write_pair(*target_paths(root, split, index), image, label)
            written.append((split, index, conditions))
    return written


def default_workers():
    """Worker processes to use: the CPUs this process may run on, at most 8."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        count = os.cpu_count() or 1
    return max(1, min(count, 8))


@contextlib.contextmanager
def _bare_main():
    """Hides the caller's __main__ module while worker processes start: spawned processes
    re-import it (TensorFlow for tf_pixintra.train, or a script without a main guard run again),
    and they need only this module."""
    saved = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = saved


def _run_tasks(tasks, workers):
    """Runs `_write_images` over `tasks` (in order), in `workers` spawned
    processes; shows progress in images."""
    total = sum(len(task[5]) for task in tasks)
    with progress.Progress(total, "ToyScapes generation") as bar:
        pool = None
        chunks = map(_write_images, tasks)
        if workers > 1 and len(tasks) > 1:
            # "spawn", not "fork": the caller may hold TensorFlow threads.
            with _bare_main():
                pool = multiprocessing.get_context("spawn").Pool(
                        min(workers, len(tasks)))  # starts them all now
            chunks = pool.imap(_write_images, tasks, chunksize=1)
        items = []
        try:
            for task, chunk in zip(tasks, chunks):
                items += chunk
                bar.update(len(task[5]))
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
        return items


def _settings(seed, num_source, num_target, num_val, height, width, variant):
    """The manifest entries a reused benchmark must match."""
    return {"version": GENERATOR_VERSION, "seed": int(seed), "num_source": int(num_source),
            "num_target": int(num_target), "num_val": int(num_val), "height": int(height),
            "width": int(width), "variant": variant}


def generate(out_dir, seed, num_source, num_target, num_val, height, width,
             workers=None, variant="standard"):
    """Writes a ToyScapes benchmark to `out_dir` (replacing an older one).

    `seed` >= 0; `num_source`, `num_target`, `num_val`: image counts of the source, target "train"
    and target "val" splits; `height`, `width` >= MIN_SIZE pixels; `workers`: drawing processes
    (default `default_workers()`), the bytes do not depend on it. Returns the manifest dict (also
    written to out_dir/toyscapes.json, last).
    """
    _check_args(seed, num_source, num_target, num_val, height, width)
    choices.check("variant", variant, choices.TOYSCAPES_VARIANTS)
    workers = default_workers() if workers is None else int(workers)
    root = os.path.abspath(os.fspath(out_dir))
    _prepare_directory(root)
    tasks = []
    for split, count in (("source", num_source), ("train", num_target), ("val", num_val)):
        for start in range(0, count, _CHUNK):
            indices = tuple(range(start, min(start + _CHUNK, count)))
            tasks.append((root, int(seed), int(height), int(width), split, indices, variant))
    targets = {"train": [], "val": []}
    for split, index, conditions in _run_tasks(tasks, workers):  # in order
        image_path, label_path = target_paths(root, split, index)
        targets[split].append({"name": target_name(split, index),
                               "image": os.path.relpath(image_path, root),
                               "label": os.path.relpath(label_path, root),
                               **conditions})
    manifest = {
        "generator": "tf_pixintra.data.toyscapes",
        **_settings(seed, num_source, num_target, num_val, height, width, variant),
        "source": {"dataset": "gta5", "root": SOURCE_DIR, "split": "all"},
        "target": {"dataset": "cityscapes", "root": TARGET_DIR, "splits": ["train", "val"],
                   "note": "train labels are for oracle runs and diagnostics only, never for "
                           "adaptation"},
        "classes": [labels_lib.CLASS_NAMES[k] for k in render.DRAWN_CLASSES],
        "beta_range": list(render.BETA_RANGE),
        "target_images": targets,
    }
    io_utils.write_json(os.path.join(root, MANIFEST_NAME), manifest)
    return manifest


def _is_complete(root, wanted):
    """True when `root` holds a manifest matching `wanted` and all its files."""
    try:
        manifest = io_utils.read_json(os.path.join(root, MANIFEST_NAME))
    except (OSError, ValueError):  # missing or damaged
        return False
    # A manifest without a variant is a standard one.
    if not isinstance(manifest, dict) or any(
            manifest.get(k, "standard" if k == "variant" else None) != v
            for k, v in wanted.items()):
        return False
    paths = [source_paths(root, i) for i in range(wanted["num_source"])]
    for split, count in (("train", wanted["num_target"]), ("val", wanted["num_val"])):
        paths += [target_paths(root, split, i) for i in range(count)]
    return all(os.path.isfile(p) for pair in paths for p in pair)


@contextlib.contextmanager
def _locked(root):
    """Holds an exclusive lock on root/.toyscapes.lock (one generator at once)."""
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, LOCK_NAME), "a", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_toyscapes(data_dir, seed=DEFAULTS["seed"], num_source=DEFAULTS["num_source"],
                     num_target=DEFAULTS["num_target"], num_val=DEFAULTS["num_val"],
                     height=DEFAULTS["height"], width=DEFAULTS["width"], workers=None,
                     variant="standard"):
    """`dataset_paths` of the ToyScapes benchmark in `variant_dir(data_dir, variant)`, generated
    (`generate`) unless its manifest matches the generator version and every argument and all its
    files exist. Safe against concurrent callers (file lock)."""
    _check_args(seed, num_source, num_target, num_val, height, width)
    root = os.path.abspath(variant_dir(os.fspath(data_dir), variant))
    wanted = _settings(seed, num_source, num_target, num_val, height, width, variant)
    with _locked(root):
        if not _is_complete(root, wanted):
            generate(root, seed, num_source, num_target, num_val, height, width,
                     workers=workers, variant=variant)
    return dataset_paths(root)


def _define_flags():
    """Defines the CLI flags (only when run as a program, never on import)."""
    flags.DEFINE_string("out", None, "Benchmark root directory to write.")
    flags.DEFINE_integer("seed", DEFAULTS["seed"], "Random seed (>= 0).")
    flags.DEFINE_integer("num_source", DEFAULTS["num_source"], "Source images (GTA5 layout).")
    flags.DEFINE_integer("num_target", DEFAULTS["num_target"],
                         "Target train images (Cityscapes layout).")
    flags.DEFINE_integer("num_val", DEFAULTS["num_val"],
                         "Target validation images (Cityscapes layout).")
    flags.DEFINE_integer("height", DEFAULTS["height"], "Image height.")
    flags.DEFINE_integer("width", DEFAULTS["width"], "Image width.")
    flags.DEFINE_integer("workers", None, "Drawing processes (default: one per CPU, at "
                         "most 8); the output does not depend on it.")
    flags.DEFINE_enum("variant", "standard", list(choices.TOYSCAPES_VARIANTS),
                      "standard, or shadows: the positive control, with soft cast shadows "
                      "over parts of every target image (same scenes and labels as "
                      "standard at the same seed).")
    flags.mark_flag_as_required("out")
    return flags.FLAGS


def main(argv):
    """CLI entry: generate a benchmark and print where it is."""
    del argv
    # Call through the importable module so worker processes can unpickle
    # its functions (this file runs as __main__ here).
    # pylint: disable-next=import-outside-toplevel,import-self
    from tf_pixintra.data import toyscapes
    args = flags.FLAGS
    start = time.perf_counter()
    try:
        manifest = toyscapes.generate(args.out, args.seed, args.num_source, args.num_target,
                                      args.num_val, args.height, args.width, workers=args.workers,
                                      variant=args.variant)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    paths = dataset_paths(args.out)
    count = args.num_source + args.num_target + args.num_val
    print(f"ToyScapes v{manifest['version']} ({args.variant}): {count} images of "
          f"{args.height}x{args.width} (HxW) in {seconds:.1f} s")
    for key in ("gta5", "cityscapes", "manifest"):
        print(f"  {key}: {paths[key]}")
    return 0


if __name__ == "__main__":
    _define_flags()
    app.run(main)
