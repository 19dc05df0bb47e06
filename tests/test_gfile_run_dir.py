"""A run directory on a tf.io.gfile file system: TF's in-memory ram://.

The whole ToyScapes pipeline (inter -> pseudo -> intra -> eval -> export)
runs in this process with --run_dir=ram://..., writes every stage's files
there (nothing on local disk besides the input data), and the same command
again finds every stage finished. ram:// lives in the process, so the run
is in-process (train.run), not a subprocess. The TFLite export, left out of
that run for time, has its own test here.
"""

import glob
import json
import os
import tempfile
import uuid

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

import export_helpers as H
from tf_pixintra import config as config_lib
from tf_pixintra import export as export_lib
from tf_pixintra import inference
from tf_pixintra import io_utils
from tf_pixintra import run_layout
from tf_pixintra import train
from tf_pixintra.data import tfrecords
from tf_pixintra.export_tflite import LiteRTSegmenter
from tf_pixintra.stages import training

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = "32,64"
STAGES = ("inter", "pseudo_r1", "intra_r1", "eval", "export")


def smoke_config(run_dir, data_dir):
    """configs/toyscapes_smoke.cfg, smaller: 4 images of 32x64, 2 steps,
    one output level, SavedModel only (a TFLite conversion would double
    the time; its file goes through io_utils.write_bytes like any other)."""
    flag_values = flags.FlagValues()
    config_lib.define_flags(flag_values)
    flag_values([
        "train", "--flagfile",
        os.path.join(ROOT, "configs", "toyscapes_smoke.cfg"),
        f"--run_dir={run_dir}", f"--toyscapes_dir={data_dir}",
        "--toyscapes_counts=4,4,2", f"--toyscapes_image_size={SIZE}",
        f"--source_size={SIZE}", f"--target_size={SIZE}",
        f"--eval_size={SIZE}", "--crop_size=32,64", "--inter_steps=2",
        "--intra_steps=2", "--checkpoint_every=1", "--num_preview_images=2",
        "--pipeline=inter,pseudo,intra,eval,export", "--log_every=1",
        "--image_every=0", "--num_summary_images=1", "--nomulti_level",
        "--export_tflite="])
    return config_lib.from_flags(flag_values)


def read_json(path):
    with tf.io.gfile.GFile(path, "rb") as f:
        return json.loads(f.read())


@pytest.mark.e2e   # the pipeline in this process: ~45 s on a busy 2-core box
def test_whole_pipeline_on_ram_run_dir_then_the_same_command_skips(
        tmp_path, monkeypatch):
    run_dir = f"ram://run-{uuid.uuid4().hex[:8]}/smoke"
    config = smoke_config(run_dir, tmp_path / "data")
    rows = train.run(config)
    assert [name for name, _ in rows] == [*STAGES, "comparison"]
    gfile = tf.io.gfile
    for stage in STAGES:
        metrics = read_json(f"{run_dir}/{stage}/metrics.json")
        if stage in ("inter", "intra_r1", "eval"):
            assert 0.0 <= metrics["target_miou"] <= 100.0, stage
    for name in ("config.json", "run.json", "summary.json", "comparison.png",
                 "sources_checked.json", "inter/model.keras",
                 "intra_r1/model.keras", "pseudo_r1/summary.json",
                 "pseudo_r1/pass1-00000-of-00001.json",
                 "pseudo_r1/pass2-00000-of-00001.json",
                 "pseudo_r1/preview_000.png", "pseudo_r1/preview_001.png",
                 "eval/per_class.md", "export/labels.json",
                 "export/saved_model/pixintra/1/saved_model.pb",
                 "export/saved_model/pixintra/1/assets.extra/"
                 "tf_serving_warmup_requests"):
        assert gfile.exists(f"{run_dir}/{name}"), name
    assert not gfile.exists(f"{run_dir}/.lock")     # released at the end
    assert not gfile.exists(f"{run_dir}/pseudo_r1/cache")   # dropped when done
    index = tfrecords.validate_records(
        f"{run_dir}/pseudo_r1/{run_layout.index_name('target')}")
    assert index["total"] == 4
    for stage in ("inter", "intra_r1"):
        assert tf.train.latest_checkpoint(f"{run_dir}/{stage}/checkpoints")
        assert gfile.glob(f"{run_dir}/{stage}/tb/events.out.tfevents.*")
    assert read_json(f"{run_dir}/run.json")["model"] == "intra_r1/model.keras"
    assert inference.resolve_model_path(run_dir) == f"{run_dir}/intra_r1/model.keras"
    # Nothing of the run went to local disk: only the generated input data.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    assert not os.path.exists("ram:")

    # The same command again: every stage is finished. Nothing trains and
    # nothing is written but the lock and the comparison picture (ram://
    # keeps no modification times: the writes are recorded instead).
    written = []
    atomic_path = io_utils.atomic_path

    def recording(path):
        written.append(io_utils.relpath(path, run_dir))
        return atomic_path(path)

    def no_training(*args, **kwargs):
        raise AssertionError("a finished stage trained again")
    monkeypatch.setattr(io_utils, "atomic_path", recording)
    monkeypatch.setattr(training, "fit", no_training)
    again = train.run(config)
    assert again == rows
    assert sorted(set(written)) == [".lock", "comparison.png"]


def test_tflite_export_to_a_ram_directory_runs_in_litert(tmp_path):
    """export_model with a ram:// out_dir: the SavedModel and the fp32 and
    int8 TFLite models land there (the converter reads its batch-1 source
    from a local scratch directory), nothing is left on local disk, and
    the models read back from ram:// segment the hand-made block images
    of the palette model as the block classes."""

    out_dir = f"ram://export-{uuid.uuid4().hex[:8]}/export"
    blocks = [H.block_image(300 + i) for i in range(3)]
    scratch = os.path.join(tempfile.gettempdir(), "tflite_source.*.tmp")
    scratch_before = set(glob.glob(scratch))
    result = export_lib.export_model(
        H.palette_model(), out_dir, version=1, input_size=H.INPUT_SIZE,
        representative_images=[b[0] for b in blocks],
        variants=("fp32", "int8"), warmup=False)
    assert set(glob.glob(scratch)) <= scratch_before   # removed when done
    assert not os.path.exists("ram:")
    assert tf.io.gfile.exists(f"{result['saved_model']}/saved_model.pb")
    labels = read_json(f"{out_dir}/labels.json")
    assert labels["tflite"] == {"fp32": "tflite/pixintra_fp32.tflite",
                                "int8": "tflite/pixintra_int8.tflite"}
    for variant, path in result["tflite"].items():
        assert path.startswith(out_dir), path
        segmenter = LiteRTSegmenter(path)
        for image, truth, _ in blocks:
            predicted = segmenter(image)["labels"]
            inside = truth != 255
            # Large-margin hand-weighted classifier: every block interior
            # pixel gets its block's class, fp32 and int8 alike.
            np.testing.assert_array_equal(predicted[inside], truth[inside],
                                          err_msg=variant)
