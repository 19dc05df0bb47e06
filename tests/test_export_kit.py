"""Tests of the deployment kit in export/ (LiteRT script, TF Serving client).

The kit must run without TensorFlow and tf_pixintra: both scripts run in
subprocesses that check sys.modules afterwards. The client talks to a tiny
local HTTP server that answers like TF Serving, with outputs computed by the
real SavedModel signature.
"""

import base64
import http.server
import importlib.util
import io
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image

import export_helpers as H

KIT = os.path.join(H.repo_root(), "export")
SEGMENT = os.path.join(KIT, "litert_segment.py")
CLIENT = os.path.join(KIT, "serving", "client.py")


@pytest.fixture(scope="module")
def palette(tmp_path_factory):
    return H.get_export("palette", tmp_path_factory)


def _load_script(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Runs a script's main with argv, then lists the non-stdlib modules it added.
_WRAPPER = r'''
import json, runpy, sys
before = set(sys.modules)
script, runs = sys.argv[1], json.loads(sys.argv[2])
for argv in runs:
    sys.argv = [script] + argv
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exit_:
        assert not exit_.code, exit_.code
added = {m.split(".")[0] for m in set(sys.modules) - before}
print("ADDED=" + json.dumps(sorted(added - set(sys.stdlib_module_names))))
'''


def _run_script(script, runs, cwd):
    env = dict(os.environ, PYTHONPATH="")
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, script,
                           json.dumps(runs)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [l for l in proc.stdout.splitlines() if l.startswith("ADDED=")][-1]
    return set(json.loads(line[len("ADDED="):])), proc.stdout


def test_litert_segment_runs_without_tensorflow(palette, tmp_path):
    _, result, _ = palette
    image, hand, _ = H.block_image(20, size=(48, 96), block=24)
    image_path = tmp_path / "street.png"
    Image.fromarray(image).save(image_path)
    runs = []
    for variant in ("fp32", "int8"):
        runs.append([result["tflite"][variant], str(image_path),
                     "--out_labels", str(tmp_path / f"{variant}_labels.png"),
                     "--out_overlay", str(tmp_path / f"{variant}_overlay.png"),
                     "--alpha", "0.5"])
    added, stdout = _run_script(SEGMENT, runs, str(tmp_path))
    # labels.json was found in the export directory above tflite/.
    assert "labels:" in stdout
    assert not added & {"tensorflow", "tf_pixintra", "keras", "jax", "torch"}
    assert added <= {"numpy", "PIL", "ai_edge_litert", "google", "absl"}, added
    keep = hand != 255
    palette_rgb = H.PALETTE.astype(np.float64)
    for variant in ("fp32", "int8"):
        labels = np.asarray(Image.open(tmp_path / f"{variant}_labels.png"))
        assert labels.shape == (48, 96) and labels.dtype == np.uint8
        np.testing.assert_array_equal(labels[keep], hand[keep])
        blended = np.asarray(Image.open(tmp_path / f"{variant}_overlay.png"))
        assert blended.shape == (48, 96, 3)
        expected = 0.5 * image[keep] + 0.5 * palette_rgb[hand[keep]]
        assert np.abs(blended[keep] - expected).max() <= 0.5 + 1e-9


def test_litert_segment_overlay_and_label_lookup_by_hand(tmp_path):
    segment = _load_script(SEGMENT, "litert_segment")
    image = Image.fromarray(np.array([[[10, 20, 30], [40, 50, 60]]],
                                     np.uint8))
    blended = segment.overlay(image, np.array([[1, 255]], np.uint8),
                              [[0, 0, 0], [100, 200, 250]], alpha=0.25)
    # 0.75 * (10, 20, 30) + 0.25 * (100, 200, 250) = (32.5, 65, 85) -> round.
    np.testing.assert_array_equal(blended, [[[32, 65, 85], [40, 50, 60]]])
    (tmp_path / "tflite").mkdir()
    model = tmp_path / "tflite" / "m.tflite"
    with pytest.raises(FileNotFoundError, match="--labels"):
        segment.find_labels(str(model))
    (tmp_path / "labels.json").write_text("{}")
    assert segment.find_labels(str(model)) == str(tmp_path / "labels.json")


class _FakeServing(http.server.BaseHTTPRequestHandler):
    """Answers :predict like TF Serving's REST API (row format)."""

    loaded = None
    signatures = None
    requests = []
    error = None

    def do_POST(self):  # noqa: N802 (http.server naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = json.loads(body)
        self.requests.append((self.path, dict(self.headers), request))
        if self.error is not None:
            self._answer(404, {"error": self.error})
            return
        import tensorflow as tf

        blobs = [base64.b64decode(i["b64"]) for i in request["instances"]]
        signature = self.signatures[request["signature_name"]]
        out = signature(image_bytes=tf.constant(blobs))
        predictions = [{"labels": out["labels"][i].numpy().tolist(),
                        "heights": int(out["heights"][i]),
                        "widths": int(out["widths"][i])}
                       for i in range(len(blobs))]
        self._answer(200, {"predictions": predictions})

    def _answer(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _FakeServing.requests = []
    _FakeServing.error = None
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _FakeServing)
    httpd.timeout = 5
    thread = threading.Thread(target=httpd.serve_forever,
                              kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def test_client_request_format_and_label_maps(palette, server, tmp_path):
    import tensorflow as tf

    _, result, out = palette
    _FakeServing.loaded = tf.saved_model.load(result["saved_model"])
    _FakeServing.signatures = _FakeServing.loaded.signatures
    small = H.block_image(30)
    big = H.block_image(31, size=(48, 96), block=24)
    paths = []
    for name, (image, _, _) in (("a", small), ("b", big)):
        paths.append(str(tmp_path / f"{name}.png"))
        Image.fromarray(image).save(paths[-1])
    port = server.server_address[1]
    added, _ = _run_script(CLIENT, [
            paths + ["--host", "127.0.0.1", "--port", str(port),
                     "--model_name", "pixintrada", "--version", "3",
                     "--out_dir", str(tmp_path / "maps"), "--labels",
                     os.path.join(out, "labels.json"), "--timeout", "60"]],
            str(tmp_path))
    assert added == set()  # standard library only

    (path, headers, request), = _FakeServing.requests
    assert path == "/v1/models/pixintrada/versions/3:predict"
    assert headers["Content-Type"] == "application/json"
    assert request["signature_name"] == "serve_image_bytes"
    assert [base64.b64decode(i["b64"]) for i in request["instances"]] == [
            open(p, "rb").read() for p in paths]
    for name, (image, hand, _) in (("a", small), ("b", big)):
        labels = np.asarray(Image.open(tmp_path / "maps" / f"{name}_labels.png"))
        assert labels.shape == image.shape[:2]
        keep = hand != 255
        np.testing.assert_array_equal(labels[keep], hand[keep])
        colour = np.asarray(Image.open(tmp_path / "maps" / f"{name}_color.png"))
        np.testing.assert_array_equal(colour[keep],
                                      H.PALETTE[hand[keep]].astype(np.uint8))


def test_client_reports_server_errors(server):
    client = _load_script(CLIENT, "serving_client")
    _FakeServing.error = "Servable not found for request: Latest(nope)"
    port = server.server_address[1]
    with pytest.raises(RuntimeError, match=r"404.*Servable not found"):
        client.predict([b"\x89PNG"], "127.0.0.1", port, "nope", timeout=30)
    assert _FakeServing.requests[0][0] == "/v1/models/nope:predict"


def test_client_png_writer_round_trips():
    client = _load_script(CLIENT, "serving_client")
    rows = [[0, 1, 2], [18, 255, 7]]
    grey = np.asarray(Image.open(io.BytesIO(client.png_bytes(rows))))
    np.testing.assert_array_equal(grey, rows)
    palette = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    rgb = np.asarray(Image.open(io.BytesIO(client.png_bytes([[2, 0]],
                                                            palette))))
    np.testing.assert_array_equal(rgb, [[[7, 8, 9], [1, 2, 3]]])


def test_models_config_parses_as_model_server_config():
    pytest.importorskip("tensorflow_serving.config.model_server_config_pb2")
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    text = open(os.path.join(KIT, "serving", "models.config")).read()
    config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    (entry,) = config.model_config_list.config
    assert entry.name == "pixintrada"
    assert entry.base_path == "/models/pixintrada"
    assert entry.model_platform == "tensorflow"


def test_readme_documents_the_deployment_commands():
    text = open(os.path.join(KIT, "README.md")).read()
    assert "docker run -p 8501:8501" in text
    assert "--no-deps" in text
    assert "litert_segment.py" in text
    assert "serve_image_bytes" in text
