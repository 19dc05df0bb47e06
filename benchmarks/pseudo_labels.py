r"""Memory and speed of the pseudo stage (Sec 4.1) at the paper's 512x1024.

Writes N synthetic target images (smooth random colour fields, 512x1024,
Cityscapes layout; a few distinct images hard-linked N times) and a random
DeepLab-v2 (`tiny`: ResNet-18 at width 0.125; `paper`: ResNet-101, width 1,
frozen BN) saved as <run_dir>/inter/model.keras, then runs each measurement
in a FRESH Python subprocess:

  stage  the whole pseudo stage (pass 1, merge, pass 2, index, summary with
         the alpha sweep; selector class_thresholds, 19 classes), with the
         time spent in each part (wrappers around the stage's functions);
  bare   the least any pseudo-labelling needs: per image read, resize to
         512x1024, forward, upsample the logits to 512x1024, softmax, argmax.

Reported per child: wall and CPU seconds, peak RSS (ru_maxrss), the RSS
after the first images and at the end of each pass (RSS growth), and with
--tracemalloc the peak of Python-heap allocations (numpy arrays included;
TensorFlow's own allocator is not traced).

  memory mode: `stage` for every --num_images (e.g. 100,1000) with --model
               tiny; checks peak RSS(largest N) / peak RSS(smallest N) <= 1.10.
  speed mode:  `bare` then `stage` on the same images, --repeats times
               (alternating, so load from other processes hits both); the
               ratio stage / bare (goal <= 1.2 with --model paper).

    python -m benchmarks.pseudo_labels --mode memory --num_images 100,1000 \
        --model tiny --work_dir /tmp/pseudo_bench --json /tmp/mem.json
    python -m benchmarks.pseudo_labels --mode speed --num_images 12 \
        --model paper --repeats 2 --work_dir /tmp/pseudo_bench
"""

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

SIZE = (512, 1024)           # (H, W): the paper's Stage II training size
NUM_CLASSES = 19
DISTINCT_IMAGES = 8
CITY = "benchcity"
MODELS = {"tiny": (18, 0.125), "paper": (101, 1.0)}


# ------------------------------------------------------------------ data

def smooth_image(rng):
    """A smooth random 512x1024 RGB image (bilinear upsampled noise + grain)."""
    from PIL import Image  # pylint: disable=import-outside-toplevel
    coarse = rng.integers(0, 256, (12, 24, 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(coarse).resize(
        (SIZE[1], SIZE[0]), Image.BILINEAR), np.int16)
    grain = rng.integers(-6, 7, image.shape, dtype=np.int16)
    return np.clip(image + grain, 0, 255).astype(np.uint8)


def ensure_images(work_dir, num_images):
    """Cityscapes-layout root with `num_images` train images; returns it."""
    from PIL import Image  # pylint: disable=import-outside-toplevel
    distinct = os.path.join(work_dir, "distinct")
    os.makedirs(distinct, exist_ok=True)
    rng = np.random.default_rng(0)
    sources = []
    for k in range(DISTINCT_IMAGES):
        path = os.path.join(distinct, f"{k}.png")
        image = smooth_image(rng)
        if not os.path.exists(path):
            Image.fromarray(image).save(path + ".tmp.png", compress_level=1)
            os.replace(path + ".tmp.png", path)
        sources.append(path)
    root = os.path.join(work_dir, f"data_{num_images}", "cityscapes")
    city_dir = os.path.join(root, "leftImg8bit", "train", CITY)
    os.makedirs(city_dir, exist_ok=True)
    for i in range(num_images):
        path = os.path.join(city_dir, f"{CITY}_{i:06d}_000019_leftImg8bit.png")
        if not os.path.exists(path):
            os.link(sources[i % DISTINCT_IMAGES], path)
    return root


def ensure_model(work_dir, model):
    """Saves the random generator once; returns its .keras path."""
    path = os.path.join(work_dir, "models", f"{model}.keras")
    if os.path.exists(path):
        return path
    from tf_pixintra import models  # pylint: disable=import-outside-toplevel
    depth, width = MODELS[model]
    generator = models.build_deeplab_v2(NUM_CLASSES, depth=depth, width=width,
                                        bn_mode="frozen", seed=0)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    generator.save(path + ".tmp.keras")
    os.replace(path + ".tmp.keras", path)
    return path


# ----------------------------------------------------------- child helpers

def rss_mb():
    """Current resident set size in MB (from /proc/self/statm)."""
    with open("/proc/self/statm", encoding="ascii") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Parts:
    """Accumulated wall time per named part (wrapped functions)."""

    def __init__(self):
        self.seconds = {}
        self.calls = {}

    def wrap(self, owner, attr, part, after=None):
        original = getattr(owner, attr)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            out = original(*args, **kwargs)
            self.seconds[part] = self.seconds.get(part, 0.0) + (
                time.perf_counter() - start)
            self.calls[part] = self.calls.get(part, 0) + 1
            if after is not None:
                after(part)
            return out
        setattr(owner, attr, timed)
        return original


def child_stage(args):
    """Runs the pseudo stage once; prints a JSON line of measurements."""
    # pylint: disable=import-outside-toplevel
    import tracemalloc
    wall0 = time.perf_counter()
    from tf_pixintra import config as config_lib
    from tf_pixintra import run_layout
    from tf_pixintra import subdomains
    from tf_pixintra.data import datasets, tfrecords
    from tf_pixintra.stages import common, pseudo_stage, sources
    import_seconds = time.perf_counter() - wall0

    depth, width = MODELS[args.model]
    config = config_lib.Config(
        data=config_lib.DataConfig(target_root=args.data_root, target_size=SIZE),
        model=config_lib.ModelConfig(depth=depth, width=width),
        optim=config_lib.OptimConfig(), inter=config_lib.InterConfig(),
        pseudo=config_lib.PseudoConfig(), intra=config_lib.IntraConfig(),
        run=config_lib.RunConfig(run_dir=args.run_dir, stage="pseudo"))
    config_lib.validate(config)
    ctx = common.Context(config, args.run_dir, None,
                         sources.resolve(config.data, need_source=False))
    rss = {"after_imports": rss_mb()}
    marks = []
    parts = Parts()
    in_pass2 = []

    def mark(part):
        if part == "inference (read + forward)":
            marks.append(("pass1", rss_mb()))
        elif part == "separation (Eq. 2, 3, 7)":
            marks.append(("pass2", rss_mb()))

    original_make = pseudo_stage.make_predictor

    def make_predictor(*a, **k):
        predict = original_make(*a, **k)

        def timed(image):
            out = predict(image)
            out.numpy()
            return out
        return timed
    pseudo_stage.make_predictor = make_predictor
    parts.wrap(pseudo_stage, "make_predictor", "model load + trace set-up")
    parts.wrap(common, "load_generator", "model load + trace set-up")
    # Pass 1 reads the image for the network; pass 2 reads it for the record.
    read = datasets.read_image

    def read_image(path):
        if in_pass2:
            return read(path)
        start = time.perf_counter()
        out = read(path)
        parts.seconds["inference (read + forward)"] = parts.seconds.get(
            "inference (read + forward)", 0.0) + time.perf_counter() - start
        return out
    datasets.read_image = read_image
    pass1 = pseudo_stage._pass1  # pylint: disable=protected-access

    def timed_pass1(ctx_, stage_dir, predictor, *rest):
        def timed_predictor():
            inner = predictor()

            def call(image):
                start = time.perf_counter()
                out = inner(image)
                parts.seconds["inference (read + forward)"] = parts.seconds.get(
                    "inference (read + forward)", 0.0) + time.perf_counter() - start
                mark("inference (read + forward)")
                return out
            return call
        pass1(ctx_, stage_dir, timed_predictor, *rest)
        rss["end_pass1"] = rss_mb()
    pseudo_stage._pass1 = timed_pass1  # pylint: disable=protected-access
    pass2 = pseudo_stage._pass2  # pylint: disable=protected-access

    def timed_pass2(*a, **k):
        in_pass2.append(True)
        pass2(*a, **k)
        rss["end_pass2"] = rss_mb()
    pseudo_stage._pass2 = timed_pass2  # pylint: disable=protected-access
    parts.wrap(pseudo_stage, "full_resolution", "upsample to 512x1024")
    parts.wrap(subdomains.ClassThresholds, "update", "threshold histogram")
    parts.wrap(subdomains, "separate_pixels", "separation (Eq. 2, 3, 7)",
               after=mark)
    parts.wrap(pseudo_stage, "training_image", "record image (read, resize, PNG)")
    parts.wrap(tfrecords, "encode_example", "map PNGs + record (encode_example)")
    parts.wrap(subdomains.PropCounter, "update_sweep", "alpha sweep")
    parts.wrap(pseudo_stage, "_summarise", "index + summary")

    if args.tracemalloc:
        tracemalloc.start()
    start, cpu_start = time.perf_counter(), cpu_seconds()
    metrics = pseudo_stage.run(ctx, 1)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
    assert metrics is not None
    index = os.path.join(args.run_dir, run_layout.stage_dir_name("pseudo", 1),
                         run_layout.index_name(run_layout.RECORDS))
    total_records = tfrecords.read_index(index)["total"]
    assert total_records == args.num_images, total_records
    pass1_rss = [r for p, r in marks if p == "pass1"]
    pass2_rss = [r for p, r in marks if p == "pass2"]
    warm = min(10, len(pass1_rss)) - 1
    rss.update({
        "pass1_after_10_images": pass1_rss[warm],
        "pass1_max": max(pass1_rss),
        "pass2_after_10_images": pass2_rss[warm],
        "pass2_max": max(pass2_rss),
    })
    rss["growth_pass1_after_warmup"] = rss["pass1_max"] - rss["pass1_after_10_images"]
    rss["growth_pass2_after_warmup"] = rss["pass2_max"] - rss["pass2_after_10_images"]
    accounted = sum(parts.seconds.values())   # the parts do not overlap
    out = {
        "kind": "stage", "num_images": args.num_images, "model": args.model,
        "seconds": seconds, "cpu_seconds": cpu, "import_seconds": import_seconds,
        "peak_rss_mb": peak_rss_mb(), "rss_mb": rss,
        "parts_seconds": dict(parts.seconds),
        "other_seconds": seconds - accounted,
        "prop": metrics["prop"], "alpha_sweep": metrics["alpha_sweep"],
    }
    if args.tracemalloc:
        out["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
    print("RESULT " + json.dumps(out), flush=True)


def child_bare(args):
    """Bare inference pass over the same images; prints a JSON line."""
    # pylint: disable=import-outside-toplevel
    import tensorflow as tf
    from tf_pixintra.data import datasets
    from tf_pixintra import run_layout
    from tf_pixintra.models import caffe_preprocess
    from tf_pixintra.stages import common

    examples = datasets.list_examples("cityscapes", args.data_root, "train",
                                      require_labels=False)
    start, cpu_start = time.perf_counter(), cpu_seconds()
    model = common.load_generator(os.path.join(args.run_dir, "inter",
                                               run_layout.MODEL_FILE))

    @tf.function(reduce_retracing=True)
    def label(image):
        x = caffe_preprocess(tf.image.resize(image[None], SIZE))
        out = model(x, training=False)
        logits = out[0] if isinstance(out, (list, tuple)) else out
        probs = tf.nn.softmax(tf.image.resize(logits, SIZE), axis=-1)
        return tf.cast(tf.argmax(probs[0], axis=-1), tf.uint8)

    first = None
    for example in examples:
        label(datasets.read_image(example.image_path)).numpy()
        if first is None:
            first = time.perf_counter() - start
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
    print("RESULT " + json.dumps({
        "kind": "bare", "num_images": len(examples), "model": args.model,
        "seconds": seconds, "cpu_seconds": cpu,
        "seconds_to_first_label": first, "peak_rss_mb": peak_rss_mb()}),
        flush=True)


# ------------------------------------------------------------------ parent

def run_child(kind, args, num_images, data_root, model_path, tag):
    """Runs one measurement in a fresh interpreter; returns its JSON dict."""
    run_dir = os.path.join(args.work_dir, "runs", f"{kind}_{args.model}_{num_images}_{tag}")
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(os.path.join(run_dir, "inter"))
    os.link(model_path, os.path.join(run_dir, "inter", "model.keras"))
    command = [sys.executable, "-m", "benchmarks.pseudo_labels", "--child", kind,
               "--model", args.model, "--num_images", str(num_images),
               "--data_root", data_root, "--run_dir", run_dir]
    if args.tracemalloc:
        command.append("--tracemalloc")
    result = subprocess.run(command, capture_output=True, text=True,
                            cwd=ROOT, check=False)
    lines = [l for l in result.stdout.splitlines() if l.startswith("RESULT ")]
    if result.returncode != 0 or not lines:
        sys.stderr.write(result.stderr[-6000:])
        raise SystemExit(f"child {kind} N={num_images} failed "
                         f"(exit {result.returncode})")
    if not args.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    return json.loads(lines[-1][len("RESULT "):])


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return {"nproc": os.cpu_count(), "cpu": model,
            "load_average": os.getloadavg(), "python": platform.python_version(),
            "tensorflow": tf.__version__}


def print_stage(r):
    print(f"  stage N={r['num_images']}: {r['seconds']:.1f} s wall "
          f"({r['seconds'] / r['num_images']:.3f} s/image), "
          f"{r['cpu_seconds']:.1f} s CPU, peak RSS {r['peak_rss_mb']:.0f} MB"
          + (f", tracemalloc peak {r['tracemalloc_peak_mb']:.0f} MB"
             if "tracemalloc_peak_mb" in r else ""))
    rss = r["rss_mb"]
    print(f"    RSS MB: pass 1 after 10 images {rss['pass1_after_10_images']:.0f}, "
          f"max {rss['pass1_max']:.0f}, end {rss['end_pass1']:.0f}; pass 2 after "
          f"10 {rss['pass2_after_10_images']:.0f}, max {rss['pass2_max']:.0f}, "
          f"end {rss['end_pass2']:.0f}")
    for part, seconds in sorted(r["parts_seconds"].items(), key=lambda kv: -kv[1]):
        print(f"    {part:<36} {seconds:8.1f} s  {100 * seconds / r['seconds']:5.1f} %")
    print(f"    {'other (npy, writing, loops)':<36} {r['other_seconds']:8.1f} s  "
          f"{100 * r['other_seconds'] / r['seconds']:5.1f} %")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("memory", "speed"), default="memory")
    parser.add_argument("--num_images", default="100,1000",
                        help="comma-separated image counts")
    parser.add_argument("--model", choices=tuple(MODELS), default="tiny")
    parser.add_argument("--repeats", type=int, default=1,
                        help="speed mode: bare/stage pairs to run")
    parser.add_argument("--work_dir", default="/tmp/pseudo_bench")
    parser.add_argument("--json", default="", help="write the results here")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="also trace Python-heap peaks (slower)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the run directories (records)")
    parser.add_argument("--child", choices=("stage", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--data_root", help=argparse.SUPPRESS)
    parser.add_argument("--run_dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.num_images = int(args.num_images)
        return (child_stage if args.child == "stage" else child_bare)(args)

    counts = [int(v) for v in args.num_images.split(",")]
    os.makedirs(args.work_dir, exist_ok=True)
    model_path = ensure_model(args.work_dir, args.model)
    results = {"machine": machine(), "mode": args.mode, "model": args.model,
               "size": list(SIZE), "runs": []}
    print(f"machine: {results['machine']}")
    if args.mode == "memory":
        for n in counts:
            r = run_child("stage", args, n, ensure_images(args.work_dir, n),
                          model_path, "mem")
            results["runs"].append(r)
            print_stage(r)
        peaks = [r["peak_rss_mb"] for r in results["runs"]]
        ratio = peaks[-1] / peaks[0]
        results["peak_ratio"] = ratio
        print(f"peak RSS N={counts[-1]} / N={counts[0]}: {ratio:.3f} "
              f"({'OK' if ratio <= 1.10 else 'NOT'} <= 1.10)")
    else:
        for n in counts:
            root = ensure_images(args.work_dir, n)
            ratios, cpu_ratios = [], []
            for rep in range(args.repeats):
                bare = run_child("bare", args, n, root, model_path, f"r{rep}")
                print(f"  bare  N={n}: {bare['seconds']:.1f} s wall "
                      f"({bare['seconds'] / n:.3f} s/image), "
                      f"{bare['cpu_seconds']:.1f} s CPU, first label after "
                      f"{bare['seconds_to_first_label']:.1f} s")
                stage = run_child("stage", args, n, root, model_path, f"r{rep}")
                print_stage(stage)
                ratios.append(stage["seconds"] / bare["seconds"])
                cpu_ratios.append(stage["cpu_seconds"] / bare["cpu_seconds"])
                print(f"  ratio stage / bare: {ratios[-1]:.3f} wall, "
                      f"{cpu_ratios[-1]:.3f} CPU")
                results["runs"] += [bare, stage]
            results.setdefault("ratios", {})[str(n)] = {
                "wall": ratios, "cpu": cpu_ratios}
            print(f"N={n}: stage / bare wall {min(ratios):.3f}..{max(ratios):.3f}"
                  f", CPU {min(cpu_ratios):.3f}..{max(cpu_ratios):.3f} "
                  f"(goal <= 1.2 with --model paper)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
