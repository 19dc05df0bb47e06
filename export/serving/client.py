"""TF Serving REST client for the exported model (Python standard library only).

    python client.py IMAGE [IMAGE ...] [--host localhost] [--port 8501]
        [--model_name pixintrada] [--version N] [--out_dir DIR]
        [--labels labels.json] [--timeout 60]

POSTs the encoded images to
http://HOST:PORT/v1/models/NAME[/versions/N]:predict with signature
"serve_image_bytes" in TF Serving's row format, binary values as
{"b64": ...}:

    {"signature_name": "serve_image_bytes",
     "instances": [{"b64": "<base64 PNG/JPEG>"}, ...]}

and reads the row-format answer

    {"predictions": [{"labels": [[...]], "heights": h, "widths": w}, ...]}

where `labels` is padded to the largest image of the request (255) and the
image's own map is labels[:h][:w]. Writes one 8-bit PNG label map (trainIds,
255 = ignore) per image, <out_dir>/<image stem>_labels.png, and with
--labels (labels.json of the export) also a colour PNG <stem>_color.png.
"""

import argparse
import base64
import json
import os
import struct
import sys
import tempfile
import urllib.error
import urllib.request
import zlib

SIGNATURE = "serve_image_bytes"


def predict_url(host, port, model_name, version=None):
    """REST predict URL of a model (latest version when `version` is None)."""
    version_part = f"/versions/{int(version)}" if version is not None else ""
    return f"http://{host}:{port}/v1/models/{model_name}{version_part}:predict"


def request_body(encoded_images):
    """The JSON request body (bytes) for a list of encoded image bytes."""
    instances = [{"b64": base64.b64encode(data).decode("ascii")}
                 for data in encoded_images]
    return json.dumps({"signature_name": SIGNATURE,
                       "instances": instances}).encode("utf-8")


def parse_response(body):
    """Label maps (lists of rows of ints) from a row-format predict answer."""
    answer = json.loads(body)
    if "error" in answer:
        raise RuntimeError(f"TF Serving error: {answer['error']}")
    predictions = answer.get("predictions")
    if not isinstance(predictions, list):
        raise RuntimeError(f"unexpected answer without a predictions list: "
                           f"{str(answer)[:200]}")
    maps = []
    for prediction in predictions:
        height, width = int(prediction["heights"]), int(prediction["widths"])
        maps.append([row[:width] for row in prediction["labels"][:height]])
    return maps


def predict(encoded_images, host="localhost", port=8501,
            model_name="pixintrada", version=None, timeout=60.0):
    """Segments encoded images through TF Serving; returns their label maps."""
    request = urllib.request.Request(
            predict_url(host, port, model_name, version),
            data=request_body(encoded_images),
            headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as err:
        detail = err.read().decode("utf-8", "replace")
        raise RuntimeError(f"TF Serving answered HTTP {err.code} for "
                           f"{request.full_url}: {detail}") from err
    return parse_response(body)


def png_bytes(rows, palette=None):
    """An 8-bit PNG of a label map: grey (colour type 0), or RGB via `palette`."""
    height, width = len(rows), len(rows[0]) if rows else 0
    lines = []
    for row in rows:
        if palette is None:
            pixels = bytes(row)
        else:
            pixels = b"".join(bytes(palette[v]) if v < len(palette)
                              else b"\0\0\0" for v in row)
        lines.append(b"\0" + pixels)  # filter type 0 per scanline
    colour_type = 0 if palette is None else 2

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"".join(lines), 9))
            + chunk(b"IEND", b""))


def write_file(path, data):
    """Writes `data` under a temporary name, renamed when complete."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".",
                               suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("images", nargs="+", help="PNG/JPEG images")
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=8501, help="REST port")
    parser.add_argument("--model_name", default="pixintrada")
    parser.add_argument("--version", type=int, default=None,
                        help="model version (default: the latest)")
    parser.add_argument("--out_dir", default=".", help="where the PNGs go")
    parser.add_argument("--labels", default=None,
                        help="labels.json of the export: also write colour PNGs")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for the answer")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    encoded = []
    for path in args.images:
        with open(path, "rb") as f:
            encoded.append(f.read())
    maps = predict(encoded, args.host, args.port, args.model_name,
                   args.version, args.timeout)
    if len(maps) != len(encoded):
        raise RuntimeError(f"{len(encoded)} images sent, {len(maps)} label "
                           "maps received")
    palette = None
    if args.labels:
        with open(args.labels, "r", encoding="utf-8") as f:
            palette = json.load(f)["palette"]
    for path, rows in zip(args.images, maps):
        stem = os.path.join(args.out_dir,
                            os.path.splitext(os.path.basename(path))[0])
        write_file(stem + "_labels.png", png_bytes(rows))
        print(f"{path}: {len(rows[0]) if rows else 0}x{len(rows)} -> "
              f"{stem}_labels.png")
        if palette is not None:
            write_file(stem + "_color.png", png_bytes(rows, palette))
    return 0


if __name__ == "__main__":
    sys.exit(main())
