"""Tests of the deployment kit in export/ (LiteRT script, TF Serving client).

The kit must run without TensorFlow and tf_pixintra: both scripts run in
subprocesses that check sys.modules afterwards. The client talks to a tiny
local HTTP server that answers like TF Serving, with outputs computed by the
real SavedModel signature.
"""

import base64
import contextlib
import http.server
import importlib.util
import io
import json
import os
import re
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
        _reply(self, code, json.dumps(obj).encode())

    def log_message(self, *args):
        pass


def _reply(handler, code, data):
    """Sends `data` (JSON bytes) as an HTTP answer of status `code`."""
    handler.send_response(code)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


@contextlib.contextmanager
def _serving(handler):
    """Serves `handler` on a free loopback port; yields the server."""
    httpd = http.server.HTTPServer(("127.0.0.1", 0), handler)
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


@pytest.fixture
def server():
    _FakeServing.requests = []
    _FakeServing.error = None
    with _serving(_FakeServing) as httpd:
        yield httpd


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
                     "--model_name", H.MODEL_NAME, "--version", "3",
                     "--out_dir", str(tmp_path / "maps"), "--labels",
                     os.path.join(out, "labels.json"), "--timeout", "60"]],
            str(tmp_path))
    assert added == set()  # standard library only

    (path, headers, request), = _FakeServing.requests
    assert path == f"/v1/models/{H.MODEL_NAME}/versions/3:predict"
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
        client.predict([client.png_bytes([[0, 1]])], "127.0.0.1", port,
                       "nope", timeout=30)
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
    assert entry.name == H.MODEL_NAME
    assert entry.base_path == f"/models/{H.MODEL_NAME}"
    assert entry.model_platform == "tensorflow"


def test_readme_documents_the_deployment_commands():
    text = open(os.path.join(KIT, "README.md")).read()
    assert "docker run -p 8501:8501" in text
    assert "--no-deps" in text
    assert "litert_segment.py" in text
    assert "serve_image_bytes" in text


# ------------------------------------------------ one model name (issue 18.7)
def test_kit_defaults_agree_with_the_pipeline():
    import re

    from absl import flags

    from tf_pixintra import config, export_contract as C
    from tf_pixintra import export as export_lib

    client = _load_script(CLIENT, "serving_client")
    segment = _load_script(SEGMENT, "litert_segment")
    assert C.MODEL_NAME == "pixintra"
    assert config.RunConfig().export_name == C.MODEL_NAME
    flag_values = flags.FlagValues()
    export_lib.define_flags(flag_values)
    assert flag_values["model_name"].default == C.MODEL_NAME
    assert flag_values["serving_max_pixels"].default == C.SERVING_MAX_PIXELS
    assert flag_values["max_input_pixels"].default == C.MAX_INPUT_PIXELS
    args = client.parse_args(["x.png"])
    assert args.model_name == client.MODEL_NAME == C.MODEL_NAME
    assert args.max_pixels == client.MAX_PIXELS == C.SERVING_MAX_PIXELS
    assert client.SIGNATURE == C.SERVE_IMAGE_BYTES
    assert segment.parse_args(["m", "i"]).max_pixels == C.MAX_INPUT_PIXELS
    assert (segment.SIGNATURE, segment.INPUT_NAME) == (C.SERVING_DEFAULT,
                                                      C.IMAGES_KEY)
    text = open(os.path.join(KIT, "serving", "models.config")).read()
    assert re.findall(r'name: "([^"]*)"', text) == [C.MODEL_NAME]
    assert re.findall(r'base_path: "([^"]*)"', text) == [
            f"/models/{C.MODEL_NAME}"]
    for doc in (os.path.join(KIT, "README.md"), CLIENT, SEGMENT,
                os.path.join(H.repo_root(), "README.md")):
        assert "pixintrada" not in open(doc).read(), doc  # "PixIntraDA" is the method
    readme = open(os.path.join(KIT, "README.md")).read()
    assert f"saved_model/{C.MODEL_NAME}/1/" in readme
    assert f"tflite/{C.MODEL_NAME}_int8.tflite" in readme


# ------------------------------------------------ input bounds (issue 17.9)
def _grey_png(width, height, full=True):
    """A grey PNG of width x height; only the first row's data if not full."""
    import struct
    import zlib

    compressor = zlib.compressobj(9)
    rows = b"".join(compressor.compress(b"\0" * (width + 1))
                    for _ in range(height if full else 1)) + compressor.flush()

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(
            ">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def _run(script, argv, cwd, timeout=60):
    proc = subprocess.run([sys.executable, script] + argv, cwd=cwd,
                          env=dict(os.environ, PYTHONPATH=""),
                          capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stderr


def _one_clear_line(stderr):
    assert stderr.count("\n") == 1 and stderr.startswith("error: "), stderr
    assert "Traceback" not in stderr


def test_litert_segment_refuses_huge_images(tmp_path, capfd):
    # 88 KB of PNG that decodes to 9500 x 9500 (it used to exhaust memory),
    # and a header claiming 60000 x 60000 (it used to give a traceback).
    (tmp_path / "a.png").write_bytes(_grey_png(9500, 9500))
    assert (tmp_path / "a.png").stat().st_size < 100_000
    (tmp_path / "b.png").write_bytes(_grey_png(60000, 60000, full=False))
    Image.new("RGB", (64, 32)).save(tmp_path / "c.png")
    cases = [("a.png", [], "9500x9500 (WxH) = 90.2 megapixels, above "
                           "--max_pixels=40000000"),
             ("b.png", [], "60000x60000 (WxH) = 3600.0 megapixels"),
             ("c.png", ["--max_pixels", "2047"], "64x32 (WxH) = 0.0 "
                                                 "megapixels, above "
                                                 "--max_pixels=2047")]
    segment = _load_script(SEGMENT, "litert_segment")
    for i, (name, extra, expected) in enumerate(cases):
        argv = ["nowhere.tflite", str(tmp_path / name)] + extra
        if i == 0:  # the real command line once, main() in-process after
            code, stderr = _run(SEGMENT, argv, str(tmp_path))
        else:
            code, stderr = segment.main(argv), capfd.readouterr().err
        assert code == 2, stderr
        _one_clear_line(stderr)
        assert f"image {tmp_path / name} is {expected}" in stderr
    assert sorted(os.listdir(tmp_path)) == ["a.png", "b.png", "c.png"]


class _CannedServing(http.server.BaseHTTPRequestHandler):
    """Answers :predict with `answer(request) -> body bytes` (HTTP 200)."""

    answer = None
    requests = []

    def do_POST(self):  # noqa: N802 (http.server naming)
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append(request)
        _reply(self, 200, type(self).answer(request))

    def log_message(self, *args):
        pass


@pytest.fixture
def canned():
    _CannedServing.requests = []
    with _serving(_CannedServing) as httpd:
        yield httpd.server_address[1]


def _answer_by_size(label=3):
    """A correct answer: each image's map of `label`, sized from its header."""
    def answer(request):
        client = _load_script(CLIENT, "serving_client")
        predictions = []
        for instance in request["instances"]:
            width, height = client.image_size(base64.b64decode(instance["b64"]))
            predictions.append({"labels": [[label] * width] * height,
                                "heights": height, "widths": width})
        return json.dumps({"predictions": predictions}).encode()
    return answer


def test_client_refuses_wrong_answers(canned, tmp_path, capsys):
    client = _load_script(CLIENT, "serving_client")
    Image.new("RGB", (128, 64)).save(tmp_path / "street.png")
    out = tmp_path / "maps"
    argv = [str(tmp_path / "street.png"), "--host", "127.0.0.1", "--port",
            str(canned), "--out_dir", str(out), "--timeout", "10"]

    def rows(h, w, value=0):
        return [[value] * w for _ in range(h)]

    def one(labels, h=64, w=128):
        return {"predictions": [{"labels": labels, "heights": h,
                                 "widths": w}]}

    wrong = [
        (one(rows(2, 2), 2, 2), r"street.png: label map is 2x2 \(WxH\) but the image is "
                                r"128x64"),
        (one(rows(2, 2)), "not a list of at least 64 rows of 128 values"),
        (one(rows(64, 128, 0.0)), r"row 0 holds 0\.0; expected integer"),
        (one(rows(64, 128, True)), "row 0 holds True; expected integer"),
        (one(rows(64, 128, 19)), r"trainId 19; expected 0\.\.18"),
        (one(rows(63, 128) + [[0] * 127 + [-1]]), r"row 63 holds trainId -1"),
        (one(rows(64, 128), "64", 128), "is 128x64 .* expected equal"),
        ({"predictions": []}, "1 images sent to .*, 0 label maps received"),
        ({"outputs": {}}, "answer from .* has no predictions list"),
        ({"predictions": [[1]]}, "expected an object with labels"),
        (b"<html>502 Bad Gateway</html>", "answer from .* is not JSON"),
    ]
    for body, expected in wrong:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        _CannedServing.answer = lambda _, data=data: data
        assert client.main(argv) == 2, expected
        err = capsys.readouterr().err
        _one_clear_line(err)
        assert re.search(expected, err), (expected, err)
        # Each line names the image, or the server for a whole-answer fault.
        assert (str(tmp_path / "street.png") in err
                or f"http://127.0.0.1:{canned}/v1/models/pixintra:predict"
                in err), err
        assert not out.exists()  # nothing written from a bad answer
    # The same exit status and single line from the real command line.
    _CannedServing.answer = lambda _: json.dumps(one(rows(2, 2), 2, 2)).encode()
    code, stderr = _run(CLIENT, argv, str(tmp_path))
    assert code == 2
    _one_clear_line(stderr)
    # A correct answer is written.
    _CannedServing.answer = _answer_by_size(7)
    assert client.main(argv) == 0
    labels = np.asarray(Image.open(out / "street_labels.png"))
    assert labels.shape == (64, 128) and np.all(labels == 7)


def test_client_bounds_inputs_and_keeps_same_named_files(canned, tmp_path,
                                                         capsys):
    client = _load_script(CLIENT, "serving_client")
    _CannedServing.answer = _answer_by_size(5)
    for folder, size in (("street", (40, 20)), ("park", (24, 16))):
        (tmp_path / folder).mkdir()
        Image.new("RGB", size).save(tmp_path / folder / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "street" / "a.jpg")
    (tmp_path / "big.png").write_bytes(_grey_png(60000, 60000, full=False))
    (tmp_path / "notes.txt").write_text("not an image")
    common = ["--host", "127.0.0.1", "--port", str(canned), "--timeout", "10"]

    def run(paths, out="maps", extra=()):
        code = client.main([str(tmp_path / p) for p in paths] + common
                           + ["--out_dir", str(tmp_path / out), *extra])
        return code, capsys.readouterr().err

    # street/a.png and park/a.png: their folders are mirrored, none lost.
    assert run(["street/a.png", "park/a.png"]) == (0, "")
    for folder, size in (("street", (20, 40)), ("park", (16, 24))):
        labels = np.asarray(Image.open(tmp_path / "maps" / folder /
                                       "a_labels.png"))
        assert labels.shape == size and np.all(labels == 5)
    # One image keeps the flat layout.
    assert run(["park/a.png"], "flat") == (0, "")
    assert os.listdir(tmp_path / "flat") == ["a_labels.png"]
    sent = len(_CannedServing.requests)
    refused = [
        (["street/a.png", "street/a.jpg"], (), "inputs .*street/a.png and "
                                               ".*street/a.jpg would both be "
                                               "written to .*a_labels.png"),
        (["park/a.png", "big.png"], (), r"big.png is 60000x60000 \(WxH\) = "
                                        r"3600.0 megapixels, above "
                                        r"--max_pixels=8388608"),
        (["park/a.png"], ("--max_pixels", "383"), r"a.png is 24x16 \(WxH\) = "
                                                  r"0.0 megapixels, above "
                                                  r"--max_pixels=383"),
        (["notes.txt"], (), "notes.txt is not a PNG, JPEG, GIF or BMP"),
        (["missing.png"], (), "cannot read image .*missing.png"),
    ]
    for paths, extra, expected in refused:
        code, err = run(paths, "refused", extra)
        assert code == 2, expected
        _one_clear_line(err)
        assert re.search(expected, err), (expected, err)
    assert len(_CannedServing.requests) == sent  # nothing was sent
    assert not (tmp_path / "refused").exists()


def test_client_reads_image_headers():
    client = _load_script(CLIENT, "serving_client")
    for fmt in ("PNG", "JPEG", "GIF", "BMP"):
        buffer = io.BytesIO()
        Image.new("RGB", (37, 21)).save(buffer, format=fmt)
        assert client.image_size(buffer.getvalue()) == (37, 21), fmt
    buffer = io.BytesIO()
    Image.new("RGB", (30, 10)).save(buffer, format="JPEG", progressive=True)
    assert client.image_size(buffer.getvalue()) == (30, 10)
    assert client.image_size(b"\xff\xd8\xff") is None
    assert client.image_size(b"\x89PNG\r\n\x1a\n") is None
