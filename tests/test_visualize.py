"""tf_pixintra.visualize: the stage comparison picture on a tiny run dir."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tf_pixintra import config as config_lib
from tf_pixintra import previews
from tf_pixintra import visualize
from tf_pixintra.data.labels import CLASS_NAMES
from tf_pixintra.data.labels import colorize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = (32, 64)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """config.json, 2 ToyScapes val images, two 'trained' stages whose
    metrics.json hold hand-made per-class IoU."""
    from tf_pixintra import models  # pylint: disable=import-outside-toplevel
    root = tmp_path_factory.mktemp("vis")
    config = config_lib.Config(
        data=config_lib.DataConfig(
            toyscapes=True, toyscapes_dir=str(root / "data"),
            toyscapes_counts=(1, 1, 2), toyscapes_image_size=SIZE,
            target_size=SIZE, eval_size=SIZE),
        model=config_lib.ModelConfig(depth=18, width=0.125),
        optim=config_lib.OptimConfig(), inter=config_lib.InterConfig(),
        pseudo=config_lib.PseudoConfig(), intra=config_lib.IntraConfig(),
        run=config_lib.RunConfig(run_dir=str(root / "run")))
    run = root / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(config.experiment_dict()))
    ious = {"inter": {"road": 50.0, "sky": 100.0, "bus": None},
            "intra_r1": {"road": 80.0, "sky": 0.0, "bus": None}}
    for i, (stage, iou) in enumerate(ious.items()):
        (run / stage).mkdir()
        models.build_deeplab_v2(19, depth=18, width=0.125, seed=i).save(
            str(run / stage / "model.keras"))
        (run / stage / "metrics.json").write_text(json.dumps(
            {"stage": stage, "target_miou": 42.0 + i, "target_iou": iou}))
    return run


def test_rows_and_iou_chart(run_dir, tmp_path):
    from tf_pixintra import inference  # pylint: disable=import-outside-toplevel
    from tf_pixintra.stages import sources  # pylint: disable=import-outside-toplevel
    out = str(tmp_path / "cmp.png")
    visualize.write_comparison(str(run_dir), out, num_images=2)
    picture = np.asarray(Image.open(out).convert("RGB"))
    examples = sources.resolve(visualize.data_config(str(run_dir)),
                               need_source=False).target_val
    h, w = SIZE
    row_height = h + previews.TITLE_HEIGHT
    models = [inference.load_model(str(run_dir / s / "model.keras"))
              for s in ("inter", "intra_r1")]
    from tf_pixintra.data import datasets  # pylint: disable=import-outside-toplevel
    for r, example in enumerate(examples):
        image, label = datasets.read_example(example, "cityscapes")
        want = [image, colorize(label)] + [colorize(inference.predict_labels(
            m, image, size=SIZE, output_size=SIZE)) for m in models]
        for panel, expected in enumerate(want):   # image | truth | stages
            x, y = previews.panel_origin(panel, w)
            got = picture[r * row_height + y:r * row_height + y + h, x:x + w]
            np.testing.assert_array_equal(got, expected)
    chart = picture[2 * row_height:]
    assert chart.shape[1] >= 520
    for j, (stage, iou) in enumerate((("inter", 50.0), ("intra_r1", 80.0))):
        x0, y0, x1, y1 = visualize.bar_box(CLASS_NAMES.index("road"), j, 2,
                                           chart.shape[1], iou)
        assert (chart[y0:y1 + 1, x0:x1 + 1] == visualize.STAGE_COLORS[stage]
                ).all()
        assert y1 - y0 == round(iou * visualize.CHART_HEIGHT / 100)
    # sky: 100 for inter, 0 for intra_r1; bus (None): no bar at all.
    x0, y0, x1, _ = visualize.bar_box(CLASS_NAMES.index("sky"), 0, 2,
                                      chart.shape[1], 100.0)
    assert (chart[y0, x0:x1 + 1] == visualize.STAGE_COLORS["inter"]).all()
    x0, y0, x1, y1 = visualize.bar_box(CLASS_NAMES.index("bus"), 0, 2,
                                       chart.shape[1], 100.0)
    for color in visualize.STAGE_COLORS.values():
        assert not (chart[y0:y1, x0:x1 + 10] == color).all(axis=-1).any()


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "nope", "no such directory"),
    (lambda tmp: tmp, "no config.json"),
])
def test_cli_errors_are_one_line_exit_2(tmp_path, make, message):
    result = subprocess.run(
        [sys.executable, "-m", "tf_pixintra.visualize",
         f"--run_dir={make(tmp_path)}", f"--out={tmp_path / 'x.png'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2
    errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and message in errors[0]
    assert not (tmp_path / "x.png").exists()


def test_no_trained_stage_is_refused(run_dir, tmp_path):
    empty = tmp_path / "run"
    empty.mkdir()
    (empty / "config.json").write_text((run_dir / "config.json").read_text())
    with pytest.raises(config_lib.ConfigError, match="no trained stage"):
        visualize.comparison(str(empty))
