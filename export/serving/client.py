"""TF Serving REST client for the exported model (Python standard library only).

    python client.py IMAGE [IMAGE ...] [--host localhost] [--port 8501]
        [--model_name pixintra] [--version N] [--out_dir DIR]
        [--labels labels.json] [--timeout 60] [--max_pixels 8388608]

POSTs the encoded images to
http://HOST:PORT/v1/models/NAME[/versions/N]:predict with signature
"serve_image_bytes" in TF Serving's row format, binary values as
{"b64": ...}:

    {"signature_name": "serve_image_bytes",
     "instances": [{"b64": "<base64 PNG/JPEG>"}, ...]}

and reads the row-format answer

    {"predictions": [{"labels": [[...]], "heights": h, "widths": w}, ...]}

where `labels` is padded to the largest image of the request (255) and the
image's own map is labels[:h][:w]. Writes one 8-bit PNG label map (trainIds)
per image, <out_dir>/<image stem>_labels.png, and with
--labels (labels.json of the export) also a colour PNG <stem>_color.png.
Inputs in different folders keep their paths relative to the inputs' common
folder under --out_dir, so two files of the same name never overwrite each
other.

Checked before anything is sent: every image is a PNG/JPEG/GIF/BMP whose
header gives at most --max_pixels pixels. Checked in the answer: one map per
image, of the image's size, integer trainIds in 0..num_classes-1. Nothing is
written unless every check passes. Exit status: 0; 2 for a bad input or a
malformed answer; 1 for a server or network error (one line on stderr).
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
# Defaults shared with the exporter (tf_pixintra.export_contract; a test
# keeps them equal): model name, the signature's cap on an image's pixels.
MODEL_NAME = "pixintra"
MAX_PIXELS = 4096 * 2048
NUM_CLASSES = 19  # Cityscapes trainIds 0..18 (labels.json num_classes)


class ClientError(ValueError):
    """A bad input file or a malformed answer; the message names it."""


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


# ------------------------------------------------------------ image headers
def _jpeg_size(data):
    """(width, height) from the first SOFn segment of a JPEG, or None."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # no length field
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if (0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)
                and pos + 9 <= len(data)):
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            return width, height
        if marker == 0xDA or length < 2:  # scan data before any frame header
            return None
        pos += 2 + length
    return None


def image_size(data):
    """(width, height) of encoded PNG/JPEG/GIF/BMP bytes from the header.

    None for other or truncated data. Nothing is decoded.
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:3] == b"\xff\xd8\xff":
        return _jpeg_size(data)
    if data[:4] == b"GIF8" and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if data[:2] == b"BM" and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return abs(width), abs(height)
    return None


def read_images(paths, max_pixels=MAX_PIXELS):
    """[(bytes, (width, height))] of the image files; ClientError naming a
    file that is missing, not a PNG/JPEG/GIF/BMP, or above `max_pixels`."""
    images = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as err:
            raise ClientError(f"cannot read image {path}: {err}") from None
        size = image_size(data)
        if size is None:
            raise ClientError(f"image {path} is not a PNG, JPEG, GIF or BMP "
                              "file (or its header is truncated)")
        width, height = size
        if width * height > max_pixels:
            raise ClientError(
                    f"image {path} is {width}x{height} (WxH) = "
                    f"{width * height / 1e6:.1f} megapixels, above "
                    f"--max_pixels={max_pixels} (the cap of the exported "
                    "serve_image_bytes signature); not sent")
        if width * height == 0:
            raise ClientError(f"image {path} is {width}x{height} (WxH): empty")
        images.append((data, (width, height)))
    return images


def output_stems(paths, out_dir):
    """Output path stem (without "_labels.png") of each input image.

    The inputs' paths relative to their common directory are mirrored under
    `out_dir`, so street/a.png and park/a.png do not overwrite each other;
    two inputs that would still share a stem (a.png, a.jpg) are a
    ClientError naming both.
    """
    absolute = [os.path.abspath(p) for p in paths]
    common = os.path.commonpath([os.path.dirname(p) for p in absolute])
    stems, seen = [], {}
    for path, full in zip(paths, absolute):
        relative = os.path.splitext(os.path.relpath(full, common))[0]
        stem = os.path.join(out_dir, relative)
        key = os.path.normcase(os.path.normpath(stem))
        if key in seen:
            raise ClientError(f"inputs {seen[key]} and {path} would both be "
                              f"written to {stem}_labels.png; rename one or "
                              "segment them in separate runs")
        seen[key] = path
        stems.append(stem)
    return stems


# ------------------------------------------------------------ the answer
def _check_map(prediction, path, size, num_classes):
    """The label map (rows) of one prediction, checked against its image."""
    where = f"server answer for image {path}"
    if not isinstance(prediction, dict) or not {
            "labels", "heights", "widths"} <= set(prediction):
        raise ClientError(f"{where}: expected an object with labels, heights "
                          f"and widths, got {str(prediction)[:100]}")
    width, height = size
    got = (prediction["widths"], prediction["heights"])
    if got != (width, height) or any(type(v) is not int for v in got):
        raise ClientError(f"{where}: label map is {got[0]}x{got[1]} (WxH) but "
                          f"the image is {width}x{height}; expected equal "
                          "sizes")
    labels = prediction["labels"]
    if (not isinstance(labels, list) or len(labels) < height
            or any(not isinstance(row, list) or len(row) < width
                   for row in labels[:height])):
        raise ClientError(f"{where}: labels is not a list of at least "
                          f"{height} rows of {width} values")
    rows = [row[:width] for row in labels[:height]]
    for y, row in enumerate(rows):
        if any(type(v) is not int for v in row):
            bad = next(v for v in row if type(v) is not int)
            raise ClientError(f"{where}: row {y} holds {bad!r}; expected "
                              "integer trainIds")
        low, high = min(row), max(row)
        if low < 0 or high >= num_classes:
            raise ClientError(f"{where}: row {y} holds trainId "
                              f"{low if low < 0 else high}; expected 0.."
                              f"{num_classes - 1}")
    return rows


def parse_response(body, paths, sizes, num_classes=NUM_CLASSES,
                   source="the server"):
    """Checked label maps (lists of rows of ints) of a row-format answer.

    `paths`, `sizes`: the images sent and their (width, height); `source`
    names the server in messages. RuntimeError for a TF Serving error;
    ClientError for an answer of the wrong form, count, size, type or range.
    """
    try:
        answer = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise ClientError(f"answer from {source} is not JSON ({err}): "
                          f"{body[:100]!r}") from None
    if isinstance(answer, dict) and "error" in answer:
        raise RuntimeError(f"TF Serving error: {answer['error']}")
    predictions = answer.get("predictions") if isinstance(answer, dict) else None
    if not isinstance(predictions, list):
        raise ClientError(f"answer from {source} has no predictions list: "
                          f"{str(answer)[:200]}")
    if len(predictions) != len(paths):
        raise ClientError(f"{len(paths)} images sent to {source}, "
                          f"{len(predictions)} label maps received")
    return [_check_map(prediction, path, size, num_classes)
            for prediction, path, size in zip(predictions, paths, sizes)]


def predict(encoded_images, host="localhost", port=8501,
            model_name=MODEL_NAME, version=None, timeout=60.0, paths=None,
            num_classes=NUM_CLASSES):
    """Segments encoded images through TF Serving; returns their label maps.

    Every map is checked against its image's header size and the trainId
    range (ClientError). `paths` name the images in messages.
    """
    paths = paths or [f"#{i}" for i in range(len(encoded_images))]
    sizes = []
    for path, data in zip(paths, encoded_images):
        size = image_size(data)
        if size is None:
            raise ClientError(f"image {path} is not a PNG, JPEG, GIF or BMP "
                              "file (or its header is truncated)")
        sizes.append(size)
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
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise RuntimeError(f"no answer from {request.full_url}: "
                           f"{reason}") from err
    return parse_response(body, paths, sizes, num_classes, request.full_url)


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
    parser.add_argument("images", nargs="+", help="PNG/JPEG/GIF/BMP images")
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=8501, help="REST port")
    parser.add_argument("--model_name", default=MODEL_NAME)
    parser.add_argument("--version", type=int, default=None,
                        help="model version (default: the latest)")
    parser.add_argument("--out_dir", default=".", help="where the PNGs go")
    parser.add_argument("--labels", default=None,
                        help="labels.json of the export: also write colour PNGs")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for the answer")
    parser.add_argument("--max_pixels", type=int, default=MAX_PIXELS,
                        help="refuse an image above this many pixels (width x "
                        "height, from its header; default %(default)s, the "
                        "exporter's --serving_max_pixels)")
    return parser.parse_args(argv)


def _read_palette(path):
    """(palette, num_classes) of an export's labels.json."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            meta = json.load(f)
        palette = meta["palette"]
        return palette, int(meta.get("num_classes", len(palette)))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ClientError(f"cannot read --labels {path}: {err!r}; expected "
                          "the labels.json of tf_pixintra.export") from None


def run(args):
    """Segments `args.images`; returns the written paths. Raises ClientError
    (bad input or answer) or RuntimeError (server or network)."""
    if args.max_pixels < 1:
        raise ClientError(f"--max_pixels={args.max_pixels}; expected a "
                          "positive number of pixels")
    palette, num_classes = None, NUM_CLASSES
    if args.labels:
        palette, num_classes = _read_palette(args.labels)
    stems = output_stems(args.images, args.out_dir)
    images = read_images(args.images, args.max_pixels)
    maps = predict([data for data, _ in images], args.host, args.port,
                   args.model_name, args.version, args.timeout,
                   paths=args.images, num_classes=num_classes)
    written = []
    for path, stem, rows in zip(args.images, stems, maps):
        write_file(stem + "_labels.png", png_bytes(rows))
        written.append(stem + "_labels.png")
        print(f"{path}: {len(rows[0])}x{len(rows)} -> {stem}_labels.png")
        if palette is not None:
            write_file(stem + "_color.png", png_bytes(rows, palette))
            written.append(stem + "_color.png")
    return written


def main(argv=None):
    """CLI: exit 0; 2 for a bad input or answer; 1 for a server/network error."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        run(args)
    except ClientError as err:
        sys.stderr.write(f"error: {err}\n")
        return 2
    except RuntimeError as err:
        sys.stderr.write(f"error: {err}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
