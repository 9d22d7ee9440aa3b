"""A catalogue of hostile and odd inputs (issue #10), each run against the real ``dragnext`` command.

Usage::

    .venv/bin/python scripts/hostile_catalogue.py [-k SUBSTRING] [--max-seconds 2.0] [--keep] [--src DIR]

(``--src DIR``: run the ``dragnext`` package found in DIR instead of src/, e.g. a copy of an older version, to
compare pass counts.) About 370 cases, 4-5 minutes on two busy cores.

Every case builds its inputs in a folder of its own, runs one command with a timeout, and checks:

- the exit status (2 for bad input; 3 for a ``convert`` run where some samples failed; 1 where a model folder
  cannot be loaded, as ``cli/common.py`` documents);
- stderr: exactly one non-empty line ``dragnext: error: ...`` naming the problem (argparse errors: its usage
  lines, then one ``dragnext <command>: error: ...`` line; ``convert``: one ``failed <sample>: ...`` line per
  bad sample), and never ``Traceback``;
- nothing new or changed in the case's folder (or where the case names, e.g. ``/proc/x.png``), except what the
  case allows (``convert``'s converted samples and ``failed.csv``);
- the wall time (over 1 s is reported as slow; over ``--max-seconds`` fails), and whether a model was loaded: a
  probe (``sitecustomize`` on ``PYTHONPATH``) records at exit whether torch and a backbone module were imported.

It ends with a few UI restore cases through :func:`dragnext.ui.uploads.read_instruction_upload` (no browser).
Prints a table and a summary; exits 1 if any case fails.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "src"  # the dragnext package run; --src names another copy (to compare with an older version)
DRAGNEXT = REPO / ".venv" / "bin" / "dragnext"
SLOW_SECONDS = 1.0
BACKBONE_MODULES = ("dragnext.models.pixel", "dragnext.models.stable_diffusion", "dragnext.models.sdxl",
                    "dragnext.editor")

PROBE = '''
import atexit, os, sys
_out = os.environ.get("HOSTILE_PROBE")
if _out:
    def _report():
        names = [m for m in ("torch",) + %r if m in sys.modules]
        with open(_out, "w") as stream:
            stream.write(" ".join(names))
    atexit.register(_report)
'''.replace("%r", repr(BACKBONE_MODULES))


# ---------------------------------------------------------------------------------------------------- builders


def png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


def picture(size: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    return np.stack([(x * 4) % 256, (y * 4) % 256, ((x + y) * 2) % 256], -1).astype(np.uint8)


def square_mask(size: int = 64, lo: int = 12, hi: int = 28) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[lo:hi, lo:hi] = 255
    return mask


def png_header_only(path: Path, width: int, height: int, bit_depth: int = 8, colour: int = 0) -> Path:
    """A PNG declaring ``width x height`` with a tiny IDAT: a bomb by header (decoding would need the pixels)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def real_bomb(path: Path, side: int) -> Path:
    """A real PNG of ``side x side`` black pixels (1-bit: small to make, decodes to side^2 bytes as L)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("1", (side, side)).save(path)
    return path


def op(kind: str = "translate", region="region.png", handle=(20, 20), target=(30, 20), center=None) -> dict:
    entry = {"type": kind, "region": region, "handle": list(handle), "target": list(target)}
    if center is not None:
        entry["center"] = list(center)
    return entry


def request_folder(folder: Path, *, image=True, region=True, doc: dict | None = None, text: str | bytes | None = None,
                   name: str = "req.json") -> Path:
    """``folder/req.json`` with image.png and region.png beside it; ``doc``/``text`` replace the JSON."""
    folder.mkdir(parents=True, exist_ok=True)
    if image:
        png(folder / "image.png", picture())
    if region:
        png(folder / "region.png", square_mask())
    if text is None:
        text = json.dumps(doc if doc is not None else {"image": "image.png", "operations": [op()]})
    path = folder / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


# ---------------------------------------------------------------------------------------------------- cases


@dataclass
class Case:
    name: str
    setup: Callable[[Path], list[str]]  # builds inputs in the folder, returns the argv after "dragnext"
    status: int | tuple[int, ...] = 2
    expect: str = ""  # a substring of the error line
    form: str = "one"  # one | argparse | convert:N (N failed lines) | any
    allowed_new: tuple[str, ...] = ()  # relative paths (prefixes) that may appear
    outside: tuple[str, ...] = ()  # absolute paths that must not exist afterwards
    max_seconds: float | None = None
    group: str = ""
    check: Callable[[Path], str | None] | None = None  # a last check of the folder; returns a problem or None


@dataclass
class Outcome:
    case: Case
    status: int | None
    seconds: float
    problems: list[str] = field(default_factory=list)
    loaded: str = ""
    line: str = ""


CASES: list[Case] = []


def add(name: str, setup, status=2, expect: str = "", **kwargs) -> None:
    CASES.append(Case(name, setup, status, expect, **kwargs))


EDIT = ["edit", "--model", "bundled", "--quiet"]


def edit_json(doc: dict | None = None, *, text=None, extra=(), image=True, region=True, out="out.png",
              before: Callable[[Path], None] | None = None):
    """A case setup: write req.json (and its PNGs) and edit it into ``out``."""
    def setup(folder: Path) -> list[str]:
        path = request_folder(folder, doc=doc, text=text, image=image, region=region)
        if before is not None:
            before(folder)
        return [*EDIT, str(path), "-o", str(folder / out), *extra]
    return setup


# An input that passes every check reaches the settings; a bad --seed then stops it before any model loads, so
# "the odd input was accepted" shows as this message (no model, no output).
ACCEPT = ("--seed", "-1")
ACCEPTED = "--seed: -1"


def doc_with(**changes) -> dict:
    document = {"image": "image.png", "operations": [op()]}
    document.update(changes)
    return document


# ---- instruction files: what they are, not what they say
def _instruction_file_cases() -> None:
    g = "instructions-file"
    add("instructions missing", lambda f: [*EDIT, str(f / "none.json"), "-o", str(f / "o.png")],
        expect="does not exist", group=g)

    def fifo(f: Path):
        os.mkfifo(f / "req.json")
        return [*EDIT, str(f / "req.json"), "-o", str(f / "o.png")]
    add("instructions FIFO", fifo, expect="named pipe", group=g)
    add("instructions /dev/zero", lambda f: [*EDIT, "/dev/zero", "-o", str(f / "o.png")], expect="device", group=g)

    def loop(f: Path):
        os.symlink("b.json", f / "a.json")
        os.symlink("a.json", f / "b.json")
        return [*EDIT, str(f / "a.json"), "-o", str(f / "o.png")]
    add("instructions symlink loop", loop, expect="a.json", group=g)

    def dangling(f: Path):
        os.symlink("/nonexistent/x.json", f / "a.json")
        return [*EDIT, str(f / "a.json"), "-o", str(f / "o.png")]
    add("instructions dangling symlink", dangling, expect="does not exist", group=g)
    add("instructions not JSON", edit_json(text="this is not json"), expect="not valid JSON", group=g)
    add("instructions empty file", edit_json(text=""), expect="not valid JSON", group=g)
    add("instructions non-UTF-8", edit_json(text=b'{"image": "\xff\xfe.png", "operations": []}'),
        expect="UTF-8", group=g)
    add("instructions UTF-16", edit_json(text=json.dumps(doc_with()).encode("utf-16")), expect="JSON", group=g)
    add("instructions BOM accepted", edit_json(text=b"\xef\xbb\xbf" + json.dumps(doc_with()).encode(),
                                               extra=ACCEPT), expect=ACCEPTED, group=g)
    add("instructions duplicate key", edit_json(text='{"image": "image.png", "image": "x.png", "operations": []}'),
        expect="duplicate key", group=g)
    add("instructions top-level list", edit_json(text="[1, 2]"), expect="JSON object", group=g)
    add("instructions null", edit_json(text="null"), expect="JSON object", group=g)
    add("instructions depth 10000 arrays", edit_json(text="[" * 10000 + "]" * 10000), expect="JSON", group=g)
    add("instructions depth 100000 objects",
        edit_json(text='{"a":' * 100000 + "1" + "}" * 100000), expect="JSON", group=g)
    add("instructions 17 MiB", edit_json(text=" " * (17 * 1024 * 1024) + "{}"), expect="limit", group=g)
    add("instructions 5000-digit integer",
        edit_json(text='{"image": "image.png", "operations": [{"type": "translate", "region": "region.png", '
                       '"handle": [' + "9" * 5000 + ', 1], "target": [1, 1]}]}'),
        expect="digits", group=g)
    add("instructions unknown top key", edit_json(doc_with(hack=1)), expect="unknown key", group=g)
    add("instructions a million unknown keys",
        edit_json(text=json.dumps({f"k{i}": 0 for i in range(200000)})), expect="unknown keys", group=g)
    add("instructions missing image", edit_json({"operations": [op()]}), expect="image", group=g)
    add("instructions missing operations", edit_json({"image": "image.png"}), expect="operations", group=g)
    add("instructions operations not a list", edit_json(doc_with(operations={"a": 1})), expect="operations", group=g)
    add("instructions no operations", edit_json(doc_with(operations=[])), expect="operation", group=g)
    add("instructions 65 operations", edit_json(doc_with(operations=[op()] * 65)), expect="64", group=g)
    add("instructions 200000 operations", edit_json(doc_with(operations=[{}] * 200000)), expect="64", group=g)
    add("instructions prompt not a string", edit_json(doc_with(prompt=["a"])), expect="prompt", group=g)
    add("instructions 1 MB prompt accepted", edit_json(doc_with(prompt="a" * 1_000_000), extra=ACCEPT),
        expect=ACCEPTED, group=g)

    add("instructions name 300 characters", lambda f: [*EDIT, str(f / ("a" * 300 + ".json")), "-o", str(f / "o.png")],
        expect="too long", group=g)
    add("instructions name with a newline", lambda f: [*EDIT, str(f / "no\nne.json"), "-o", str(f / "o.png")],
        expect="does not exist", group=g)

    def newline_invalid(f: Path):
        (f / "x\ny.json").write_text("{")
        return [*EDIT, str(f / "x\ny.json"), "-o", str(f / "o.png")]
    add("instructions invalid, name with a newline", newline_invalid, expect="not valid JSON", group=g)

    def folder_named_json(f: Path):
        (f / "x.json").mkdir()
        return [*EDIT, str(f / "x.json"), "-o", str(f / "o.png")]
    add("instructions folder named x.json", folder_named_json, expect="instruction files", group=g)


# ---- operations: points, types, degenerate drags
def _operation_cases() -> None:
    g = "operations"
    bad_points = {
        "NaN literal": "[NaN, 1]", "Infinity literal": "[Infinity, 1]", "-Infinity": "[-Infinity, 1]",
        "1e308": "[1e308, 1]", "-1e308": "[-1e308, 5]", "1e400 (inf)": "[1e400, 1]",
        "400-digit integer": "[" + "9" * 400 + ", 1]", "three numbers": "[1, 2, 3]", "booleans": "[true, false]",
        "strings": '["1", "2"]', "nested": "[[1, 2]]", "null": "null", "object": '{"x": 1, "y": 2}',
        "off the image": "[700, 20]", "negative": "[-1, 20]",
    }
    for label, point in bad_points.items():
        text = ('{"image": "image.png", "operations": [{"type": "translate", "region": "region.png", '
                f'"handle": {point}, "target": [30, 20]}}]}}')
        add(f"handle {label}", edit_json(text=text), expect="handle", group=g)
    add("type unknown", edit_json(doc_with(operations=[op("shear")])), expect="type", group=g)
    add("type a number", edit_json(doc_with(operations=[{**op(), "type": 3}])), expect="type", group=g)
    add("unknown operation key", edit_json(doc_with(operations=[{**op(), "speed": 3}])), expect="unknown key",
        group=g)
    add("operation not an object", edit_json(doc_with(operations=[[1, 2]])), expect="operations[0]", group=g)
    add("handle equals target", edit_json(doc_with(operations=[op(target=(20, 20))])), expect="operations[0]",
        group=g)
    add("handle equals target by 1e-9", edit_json(doc_with(operations=[op(target=(20 + 1e-9, 20))])),
        expect="operations[0]", group=g)
    add("rotate without center", edit_json(doc_with(operations=[op("rotate")])), expect="center", group=g)
    add("rotate 0 degrees", edit_json(doc_with(operations=[op("rotate", handle=(20, 20), target=(24, 24),
                                                             center=(16, 16))])), expect="operations[0]", group=g)
    add("rotate 0.1 degrees", edit_json(doc_with(operations=[op("rotate", handle=(30, 16), target=(30, 16.0244),
                                                               center=(16, 16))])), expect="operations[0]", group=g)
    add("scale x1", edit_json(doc_with(operations=[op("scale", handle=(30, 16), target=(16, 30), center=(16, 16))])),
        expect="operations[0]", group=g)
    add("scale centre on the handle",
        edit_json(doc_with(operations=[op("scale", handle=(20, 20), target=(30, 20), center=(20, 20))])),
        expect="operations[0]", group=g)
    add("scale x1000", edit_json(doc_with(operations=[op("scale", handle=(20.01, 20), target=(30, 20),
                                                        center=(20, 20))])), expect="operations[0]", group=g)
    add("scale through the centre (negative)",
        edit_json(doc_with(operations=[op("scale", handle=(24, 20), target=(16, 20), center=(20, 20))])),
        expect="operations[0]", group=g)
    add("center off the image", edit_json(doc_with(operations=[op("rotate", center=(1e9, 0))])),
        expect="center", group=g)
    add("polygon collinear",
        edit_json(doc_with(operations=[op(region={"polygon": [[10, 10], [20, 20], [30, 30]]})])),
        expect="polygon", group=g)
    add("polygon repeated point",
        edit_json(doc_with(operations=[op(region={"polygon": [[10, 10], [10, 10], [10, 10]]})])),
        expect="polygon", group=g)
    add("polygon 1e308 vertex",
        edit_json(doc_with(operations=[op(region={"polygon": [[10, 10], [1e308, 10], [10, 40]]})])),
        expect="polygon", group=g)
    add("polygon 5000 points",
        edit_json(doc_with(operations=[op(region={"polygon": [[10 + i % 30, 10 + i // 200] for i in range(5000)]})])),
        expect="4096", group=g)
    add("polygon 2 points", edit_json(doc_with(operations=[op(region={"polygon": [[1, 1], [9, 9]]})])),
        expect="polygon", group=g)
    add("polygon string points", edit_json(doc_with(operations=[op(region={"polygon": ["ab", "cd", "ef"]})])),
        expect="polygon", group=g)
    add("polygon extra key", edit_json(doc_with(operations=[op(region={"polygon": [[1, 1], [9, 1], [9, 9]], "x": 1})])),
        expect="unknown key", group=g)
    add("region a number", edit_json(doc_with(operations=[op(region=5)])), expect="region", group=g)
    add("4096-point polygon accepted",
        edit_json(doc_with(operations=[op(region={"polygon": [
            [32 + 20 * np.cos(t), 32 + 20 * np.sin(t)] for t in np.linspace(0, 6.28, 4096, endpoint=False)]})]),
            extra=ACCEPT), expect=ACCEPTED, group=g)


# ---- images and masks named in the file
def _image_cases() -> None:
    g = "images"

    def with_image(make: Callable[[Path], object], doc=None, extra=()):
        def before(folder: Path) -> None:
            make(folder)
        return edit_json(doc or doc_with(), image=False, before=before, extra=extra)

    add("image text file named .png", with_image(lambda f: (f / "image.png").write_text("hello")),
        expect="not an image", group=g)
    add("image empty file", with_image(lambda f: (f / "image.png").write_bytes(b"")), expect="image", group=g)
    add("image folder named image.png", with_image(lambda f: (f / "image.png").mkdir()), expect="folder", group=g)
    add("image FIFO", with_image(lambda f: os.mkfifo(f / "image.png")), expect="named pipe", group=g)
    add("image /dev/zero", edit_json(doc_with(image="/dev/zero")), expect="device", group=g)
    add("image symlink to /dev/zero", with_image(lambda f: os.symlink("/dev/zero", f / "image.png")),
        expect="device", group=g)
    add("image symlink loop", with_image(lambda f: (os.symlink("image.png", f / "image2.png"),
                                                    os.symlink("image2.png", f / "image.png"))),
        expect="image", group=g)
    add("image missing", with_image(lambda f: None), expect="does not exist", group=g)
    add("image path empty", edit_json(doc_with(image="")), expect="image", group=g)
    add("image path NUL", edit_json(doc_with(image="a\u0000b.png")), expect="image", group=g)
    add("image path a number", edit_json(doc_with(image=7)), expect="image", group=g)
    add("image /etc/passwd", edit_json(doc_with(image="/etc/passwd")), expect="not an image", group=g)
    add("image /proc/self/mem", edit_json(doc_with(image="/proc/self/mem")), expect="image", group=g)
    add("image /proc/self/environ", edit_json(doc_with(image="/proc/self/environ")), expect="image", group=g)
    add("image /dev/stdin", edit_json(doc_with(image="/dev/stdin")), expect="image", group=g)
    add("image is the JSON itself", edit_json(doc_with(image="req.json")), expect="not an image", group=g)
    add("image path 5000 characters", edit_json(doc_with(image="a" * 5000 + ".png")), expect="image", group=g)

    def truncated(f: Path):
        data = io.BytesIO()
        Image.fromarray(picture()).save(data, "PNG")
        (f / "image.png").write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    add("image truncated PNG", with_image(truncated), expect="image", group=g)

    def truncated_jpeg(f: Path):
        data = io.BytesIO()
        Image.fromarray(picture()).save(data, "JPEG")
        (f / "image.png").write_bytes(data.getvalue()[:300])
    add("image truncated JPEG", with_image(truncated_jpeg), expect="image", group=g)
    add("image zero width", with_image(lambda f: png_header_only(f / "image.png", 0, 64)), expect="image", group=g)
    add("image 9600x9600 real PNG", with_image(lambda f: real_bomb(f / "image.png", 9600)), expect="8192", group=g)
    add("image 13000x13000 header", with_image(lambda f: png_header_only(f / "image.png", 13000, 13000)),
        expect="image", group=g)
    add("image 100000x100000 header", with_image(lambda f: png_header_only(f / "image.png", 100000, 100000)),
        expect="image", group=g)
    add("image 8000x8000 header (pixel limit)", with_image(lambda f: png_header_only(f / "image.png", 8000, 8000)),
        expect="pixel limit", group=g)
    add("image 2^31 side header", with_image(lambda f: png_header_only(f / "image.png", 2**31 - 1, 1)),
        expect="image", group=g)

    def ico(f: Path):
        Image.fromarray(picture()).save(f / "image.png", format="ICO")
    add("image ICO format", with_image(ico), expect="not an image", group=g)

    def psd_like(f: Path):
        (f / "image.png").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n")
    add("image PostScript", with_image(psd_like), expect="not an image", group=g)

    # odd but valid pictures: accepted (then --seed -1 stops the command before any model)
    odd = {
        "16-bit grey": lambda f: Image.fromarray(picture()[..., 0].astype(np.uint16) * 257).save(
            f / "image.png"),
        "float TIFF": lambda f: Image.fromarray(picture()[..., 0].astype(np.float32) / 255, "F").save(
            f / "image.png", format="TIFF"),
        "palette": lambda f: Image.fromarray(picture()).convert("P").save(f / "image.png"),
        "1-bit": lambda f: Image.fromarray(picture()).convert("1").save(f / "image.png"),
        "CMYK JPEG": lambda f: Image.fromarray(picture()).convert("CMYK").save(f / "image.png", format="JPEG"),
        "grey+alpha": lambda f: Image.fromarray(picture()).convert("LA").save(f / "image.png"),
        "RGBA": lambda f: Image.fromarray(picture()).convert("RGBA").save(f / "image.png"),
        "animated GIF": lambda f: Image.fromarray(picture()).save(
            f / "image.png", format="GIF", save_all=True, append_images=[Image.new("RGB", (64, 64))]),
    }
    for label, make in odd.items():
        add(f"image {label} accepted", with_image(make, extra=ACCEPT), expect=ACCEPTED, group=g)

    def with_mask(make: Callable[[Path], object], doc=None, extra=()):
        def before(folder: Path) -> None:
            make(folder)
        return edit_json(doc or doc_with(), region=False, before=before, extra=extra)

    add("mask empty", with_mask(lambda f: png(f / "region.png", np.zeros((64, 64), np.uint8))), expect="empty",
        group=g)
    add("mask wrong size", with_mask(lambda f: png(f / "region.png", square_mask(32))), expect="region", group=g)
    add("mask 6000x6000 named 64 times",
        with_mask(lambda f: png(f / "region.png", np.zeros((6000, 6000), np.uint8)),
                  doc=doc_with(operations=[op()] * 64)), expect="region", group=g)
    add("mask bomb 13000 header", with_mask(lambda f: png_header_only(f / "region.png", 13000, 13000)),
        expect="region", group=g)
    add("mask text file", with_mask(lambda f: (f / "region.png").write_text("no")), expect="region", group=g)
    add("mask FIFO", with_mask(lambda f: os.mkfifo(f / "region.png")), expect="named pipe", group=g)
    odd_masks = {
        "alpha-only": lambda f: png(f / "region.png", np.dstack([np.zeros((64, 64, 3), np.uint8), square_mask()])),
        "16-bit": lambda f: Image.fromarray(square_mask().astype(np.uint16) * 257).save(f / "region.png"),
        "1-bit": lambda f: Image.fromarray(square_mask()).convert("1").save(f / "region.png"),
        "palette": lambda f: Image.fromarray(square_mask()).convert("P").save(f / "region.png"),
    }
    for label, make in odd_masks.items():
        add(f"mask {label} accepted", with_mask(make, extra=ACCEPT), expect=ACCEPTED, group=g)

    def editable(mask: np.ndarray):
        return edit_json(doc_with(editable_mask="editable.png"),
                         before=lambda f: png(f / "editable.png", mask))
    far = np.zeros((64, 64), np.uint8)
    far[50:60, 50:60] = 255
    add("editable mask excludes the region", editable(far), expect="editable", group=g)
    add("editable mask empty", editable(np.zeros((64, 64), np.uint8)), expect="editable", group=g)
    add("editable mask wrong size", editable(np.full((65, 64), 255, np.uint8)), expect="editable", group=g)


# ---- outputs
def _output_cases() -> None:
    g = "outputs"

    def out(path: str | Callable[[Path], str], *extra: str, before: Callable[[Path], object] | None = None):
        def setup(folder: Path) -> list[str]:
            req = request_folder(folder)
            if before is not None:
                before(folder)
            target = path(folder) if callable(path) else path
            return [*EDIT, str(req), "-o", target, *extra]
        return setup

    add("-o /proc/x.png", out("/proc/x.png"), expect="-o", outside=("/proc/x.png",), group=g)
    add("-o /sys/x.png", out("/sys/x.png"), expect="-o", outside=("/sys/x.png",), group=g)
    add("-o names the input image", out(lambda f: str(f / "image.png")), expect="input", group=g)
    add("-o names the region mask", out(lambda f: str(f / "region.png")), expect="input", group=g)
    add("-o names the input via ./..", out(lambda f: str(f / "x" / ".." / "image.png"),
                                         before=lambda f: (f / "x").mkdir()), expect="input", group=g)
    add("-o hard link to the input", out(lambda f: str(f / "link.png"),
                                         before=lambda f: os.link(f / "image.png", f / "link.png")),
        expect="input", group=g)
    add("-o symlink to the input", out(lambda f: str(f / "link.png"),
                                       before=lambda f: os.symlink("image.png", f / "link.png")),
        expect="input", group=g)
    add("-o unknown suffix .jpg", out(lambda f: str(f / "o.jpg")), expect=".png", group=g)
    add("-o no suffix", out(lambda f: str(f / "o")), expect=".png", group=g)
    add("-o names the JSON", out(lambda f: str(f / "req.json")), expect=".png", group=g)
    add("-o folder missing, name with a newline", out(lambda f: str(f / "new\nline" / "o.png")),
        expect="does not exist", group=g)
    add("-o folder missing", out(lambda f: str(f / "new" / "sub" / "o.png")), expect="does not exist", group=g)
    add("-o folder is a file", out(lambda f: str(f / "image.png" / "o.png")), expect="-o", group=g)
    add("-o existing folder x.png", out(lambda f: str(f / "x.png"), before=lambda f: (f / "x.png").mkdir()),
        expect="folder", group=g)
    add("-o FIFO", out(lambda f: str(f / "o.png"), before=lambda f: os.mkfifo(f / "o.png")),
        expect="not a regular file", group=g)
    add("-o 300-character name", out(lambda f: str(f / ("a" * 300 + ".png"))), expect="-o", group=g)
    if os.geteuid() != 0:  # root writes anywhere the permission bits forbid
        add("-o read-only folder", out(lambda f: str(f / "ro" / "o.png"),
                                       before=lambda f: ((f / "ro").mkdir(), os.chmod(f / "ro", 0o555))),
            expect="-o", group=g)
    add("--preview equals -o", out(lambda f: str(f / "o.png"), "--preview", "PREVIEW"), expect="--preview", group=g)
    add("--preview names the input", out(lambda f: str(f / "o.png"), "--preview", "INPUT"), expect="input", group=g)
    add("--preview unknown suffix", out(lambda f: str(f / "o.png"), "--preview", "PREVIEW.gif"), expect="--preview",
        group=g)
    add("--previews without a batch", out(lambda f: str(f / "o.png"), "--previews"), expect="--previews", group=g)

    def demo(path: str | Callable[[Path], str], before=None):
        def setup(folder: Path) -> list[str]:
            if before is not None:
                before(folder)
            return ["demo", "--quiet", "-o", path(folder) if callable(path) else path]
        return setup
    add("demo -o new/sub/x.jpg", demo(lambda f: str(f / "new" / "sub" / "x.jpg")), expect=".png", group=g)
    add("demo -o /proc/x.png", demo("/proc/x.png"), expect="-o", outside=("/proc/x.png",), group=g)
    add("demo -o existing folder", demo(lambda f: str(f / "d.png"), before=lambda f: (f / "d.png").mkdir()),
        expect="folder", group=g)
    add("demo -o under a file", demo(lambda f: str(f / "file" / "new" / "x.png"),
                                     before=lambda f: (f / "file").write_text("x")), expect="-o", group=g)
    add("demo --device meta", lambda f: ["demo", "--quiet", "--device", "meta", "-o", str(f / "new" / "d.png")],
        expect="--device", group=g)


def _fixup_preview(argv: list[str], folder: Path) -> list[str]:
    out = argv[argv.index("-o") + 1] if "-o" in argv else ""
    mapping = {"PREVIEW": out, "INPUT": str(folder / "image.png"), "PREVIEW.gif": str(folder / "p.gif")}
    return [mapping.get(a, a) for a in argv]


# ---- settings and the model
def _settings_cases() -> None:
    g = "settings"
    sys.path.insert(0, str(SOURCE))
    import dataclasses

    from dragnext.config import EditConfig

    def edit(*extra: str):
        def setup(folder: Path) -> list[str]:
            return [*EDIT, str(request_folder(folder)), "-o", str(folder / "o.png"), *extra]
        return setup

    default = EditConfig()
    for f in dataclasses.fields(EditConfig):
        value = getattr(default, f.name)
        if isinstance(value, bool):
            add(f"--set {f.name}=maybe", edit("--set", f"{f.name}=maybe"), expect=f.name, group=g)
            continue
        if isinstance(value, (int, float)) or value is None and "int" in str(f.type) or "float" in str(f.type):
            for raw in ("nan", "inf", "-inf", "1e309", "-1", "1" + "0" * 400):
                add(f"--set {f.name}={raw[:8]}", edit("--set", f"{f.name}={raw}"), expect=f.name, group=g)
    add("--set unknown key", edit("--set", "guidance=7"), expect="--set", group=g)
    add("--set no equals", edit("--set", "num_steps"), expect="--set", group=g)
    add("--set empty", edit("--set", ""), expect="--set", group=g)
    add("--set num_steps=1.5", edit("--set", "num_steps=1.5"), expect="num_steps", group=g)
    add("--set feature_blocks=", edit("--set", "feature_blocks="), expect="feature_blocks", group=g)
    add("--set feature_blocks=no.such.block", edit("--set", "feature_blocks=no.such.block"), expect="feature_blocks",
        group=g)
    add("--set mutual_attention_start_layer=1000", edit("--set", "mutual_attention_start_layer=1000"),
        expect="mutual_attention_start_layer", group=g)
    add("--steps 100000", edit("--steps", "100000"), expect="steps", group=g)

    def short_schedule(folder: Path) -> list[str]:
        """A model folder whose scheduler was trained on 100 steps (the bundled UNet, linked): 200 steps cannot run."""
        model = folder / "model"
        (model / "scheduler").mkdir(parents=True)
        os.symlink(REPO / "src" / "dragnext" / "models" / "bundled" / "unet", model / "unet")
        config = json.loads((REPO / "src/dragnext/models/bundled/scheduler/scheduler_config.json").read_text())
        (model / "scheduler" / "scheduler_config.json").write_text(json.dumps({**config, "num_train_timesteps": 100}))
        return ["edit", "--quiet", str(request_folder(folder / "req")), "-o", str(folder / "o.png"), "--model",
                str(model), "--steps", "200"]
    add("--steps above the model's training steps", short_schedule, expect="steps", group=g)
    add("--steps 0", edit("--steps", "0"), expect="steps", group=g)
    add("--strength nan", edit("--strength", "nan"), expect="strength", group=g)
    add("--lr inf", edit("--lr", "inf"), expect="learning_rate", group=g)
    add("--seed 2^63", edit("--seed", str(2**63)), expect="--seed", group=g)
    add("--seed -1", edit("--seed", "-1"), expect="--seed", group=g)
    add("--seed 2^64", edit("--seed", str(2**64)), expect="--seed", group=g)
    add("--seed 1.5", edit("--seed", "1.5"), expect="--seed", form="argparse", group=g)
    add("--device meta", edit("--device", "meta"), expect="--device", group=g)
    add("--device garbage", edit("--device", "garbage!"), expect="--device", group=g)
    add("--device cuda:x", edit("--device", "cuda:x"), expect="--device", group=g)
    add("--device cuda:99", edit("--device", "cuda:99"), expect="--device", group=g)
    add("--device empty (auto) accepted", edit("--device", "", *ACCEPT), expect=ACCEPTED, group=g)
    add("--preset unknown", edit("--preset", "fast"), expect="--preset", form="argparse", group=g)

    bundled = REPO / "src" / "dragnext" / "models" / "bundled"

    def copy_with_unet(text: str | None):
        def make(folder: Path) -> None:
            shutil.copytree(bundled, folder / "model", ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
            config = folder / "model" / "unet" / "config.json"
            if text is None:
                config.unlink()
            else:
                config.write_text(text)
        return make

    for label, text in (("unet config []", "[]"), ("unet config string", '"unet"'), ("unet config missing", None),
                        ("unet config not JSON", "{"), ("unet config deep", "[" * 100000),
                        ("unet config NaN", '{"sample_size": NaN}')):
        model_case = copy_with_unet(text)

        def setup(folder: Path, make=model_case) -> list[str]:
            req = request_folder(folder / "req")
            make(folder)
            return ["edit", "--quiet", str(req), "-o", str(folder / "o.png"), "--model", str(folder / "model")]
        add(f"model {label}", setup, status=(1, 2), allowed_new=("model",), group=g)
    add("model empty folder",
        lambda f: (f.joinpath("model").mkdir(), ["edit", "--quiet", str(request_folder(f / "req")), "-o",
                                                 str(f / "o.png"), "--model", str(f / "model")])[1],
        status=(1, 2), group=g)
    add("model a file", lambda f: (f.joinpath("model").write_text("x"),
                                   ["edit", "--quiet", str(request_folder(f / "req")), "-o", str(f / "o.png"),
                                    "--model", str(f / "model")])[1], status=(1, 2), group=g)
    add("model FIFO", lambda f: (os.mkfifo(f / "model"),
                                 ["edit", "--quiet", str(request_folder(f / "req")), "-o", str(f / "o.png"),
                                  "--model", str(f / "model")])[1], status=(1, 2), group=g)


# ---- region and batch and bench
def _other_command_cases() -> None:
    g = "region"

    def region(*args: str, image: Callable[[Path], object] | None = None, out: str = "m.png"):
        def setup(folder: Path) -> list[str]:
            if image is None:
                png(folder / "image.png", picture())
            else:
                image(folder)
            mapped = [str(folder / "image.png") if a == "IMAGE" else a for a in args]
            return ["region", str(folder / "image.png"), *mapped, "-o", str(folder / out) if out else "IMAGE"]
        return setup

    add("region click outside", region("--click", "500,5"), expect="click", group=g)
    add("region click nan", region("--click", "nan,nan"), expect="click", group=g)
    add("region click inf", region("--click", "inf,0"), expect="click", group=g)
    add("region click 1e308", region("--click", "1e308,1"), expect="click", group=g)
    add("region click letters", region("--click", "a,b"), expect="--click", form="argparse", group=g)
    add("region tolerance nan", region("--click", "5,5", "--tolerance", "nan"), expect="tolerance", group=g)
    add("region tolerance -1", region("--click", "5,5", "--tolerance", "-1"), expect="tolerance", group=g)
    add("region tolerance inf", region("--click", "5,5", "--tolerance", "inf"), expect="tolerance", group=g)
    add("region -o the input", region("--click", "5,5", out="image.png"), expect="input", group=g)
    add("region -o .jpg", region("--click", "5,5", out="m.jpg"), expect=".png", group=g)
    add("region image bomb", region("--click", "5,5", image=lambda f: real_bomb(f / "image.png", 9600)),
        expect="8192", group=g)
    add("region image FIFO", region("--click", "5,5", image=lambda f: os.mkfifo(f / "image.png")),
        expect="named pipe", group=g)
    add("region image text", region("--click", "5,5", image=lambda f: (f / "image.png").write_text("x")),
        expect="not an image", group=g)
    add("region -o /proc/x.png", lambda f: (png(f / "image.png", picture()),
                                            ["region", str(f / "image.png"), "--click", "5,5", "-o", "/proc/x.png"])[1],
        expect="-o", outside=("/proc/x.png",), group=g)

    g = "batch"
    add("batch empty folder", lambda f: ((f / "in").mkdir(), [*EDIT, str(f / "in"), "-o", str(f / "out/")])[1],
        expect="instruction files", group=g)
    add("batch glob matching nothing", lambda f: [*EDIT, str(f / "*.json"), "-o", str(f / "out/")],
        expect="no file matches", group=g)
    add("batch -o is a file", lambda f: ((f / "in").mkdir(), request_folder(f / "in"), (f / "o").write_text("x"),
                                         [*EDIT, str(f / "in"), "-o", str(f / "o")])[3],
        expect="-o", group=g)
    add("batch two files same stem", lambda f: (request_folder(f / "a"), request_folder(f / "b"),
                                                [*EDIT, str(f / "a" / "req.json"), str(f / "b" / "req.json"),
                                                 "-o", str(f / "out/")])[2], expect="req.png", group=g)
    add("batch --preview", lambda f: [*EDIT, str(request_folder(f / "a")), str(f / "x.json"), "-o", str(f / "out/"),
                                      "--preview", str(f / "p.png")], expect="--preview", group=g)
    add("batch bad --seed", lambda f: [*EDIT, str(request_folder(f / "a")), str(request_folder(f / "b", name="c.json")),
                                       "-o", str(f / "out/"), "--seed", "-1"], expect="--seed", group=g)

    g = "bench"
    add("bench missing suite folder", lambda f: ["bench", "--suite", str(f / "nope"), "--out", str(f / "out"),
                                                 "--limit", "1", "--quiet"], expect="suite", group=g)
    add("bench --limit 0", lambda f: ["bench", "--suite", "synthetic", "--out", str(f / "out"), "--limit", "0",
                                      "--quiet"], expect="--limit", group=g)
    add("bench --seed -1", lambda f: ["bench", "--suite", "synthetic", "--out", str(f / "out"), "--limit", "1",
                                      "--seed", "-1", "--quiet"], expect="--seed", group=g)
    add("bench --set nan", lambda f: ["bench", "--suite", "synthetic", "--out", str(f / "out"), "--limit", "1",
                                      "--set", "strength=nan", "--quiet"], expect="strength", group=g)
    add("bench unknown method", lambda f: ["bench", "--suite", "synthetic", "--out", str(f / "out"), "--limit", "1",
                                           "--methods", "nope", "--quiet"], expect="nope", group=g)
    add("bench --set unknown", lambda f: ["bench", "--suite", "synthetic", "--out", str(f / "out"), "--limit", "1",
                                          "--set", "zzz=1", "--quiet"], expect="--set", group=g)


# ---- convert
class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def _pickle_dict(prompt="", points=((20, 20), (30, 20)), mask=None, **extra) -> bytes:
    data = {"prompt": prompt, "points": [list(p) for p in points] if isinstance(points, tuple) else points,
            "mask": np.full((64, 64), 1, np.uint8) if mask is None else mask, **extra}
    return pickle.dumps(data, protocol=4)


def _nested_points_pickle(depth: int) -> bytes:
    """{"prompt": "", "points": [[[...]]] (depth deep), "mask": 0} built from opcodes (pickle.dumps would recurse)."""
    def text(value: str) -> bytes:
        raw = value.encode()
        return b"\x8c" + bytes([len(raw)]) + raw
    nested = b"]" * depth + b"a" * (depth - 1)
    return (b"\x80\x04}(" + text("prompt") + text("") + text("points") + nested + text("mask") + b"K\x00" + b"u.")


def dragbench_sample(folder: Path, meta: bytes | Callable[[Path], object] | None = None,
                     image: Callable[[Path], object] | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if image is None:
        png(folder / "original_image.png", picture())
    else:
        image(folder / "original_image.png")
    if callable(meta):
        meta(folder / "meta_data.pkl")
    else:
        (folder / "meta_data.pkl").write_bytes(_pickle_dict() if meta is None else meta)


BAD_DRAGBENCH = {
    "os.system pickle": pickle.dumps({"prompt": "", "points": [], "mask": _Evil()}),
    "persistent id": b"\x80\x04P0\n.",
    "truncated pickle": _pickle_dict()[:40],
    "not a pickle": b"hello world",
    "empty pickle": b"",
    "pickle of a list": pickle.dumps([1, 2]),
    "missing mask": pickle.dumps({"prompt": "", "points": [[1, 2], [3, 4]]}),
    "odd points": _pickle_dict(points=((20, 20), (30, 20), (40, 40))),
    "point off image": _pickle_dict(points=((20, 20), (300, 20))),
    "handle equals target": _pickle_dict(points=((20, 20), (20, 20))),
    "nan point": _pickle_dict(points=((float("nan"), 20), (30, 20))),
    "inf point": _pickle_dict(points=((float("inf"), 20), (30, 20))),
    "400-digit point": _pickle_dict(points=((10**400, 20), (30, 20))),
    "negative 400-digit point": _pickle_dict(points=((-(10**400), 20), (30, 20))),
    "boolean point": _pickle_dict(points=((True, False), (30, 20))),
    "nested points 10000": _nested_points_pickle(10000),
    "nested points 200000": _nested_points_pickle(200000),
    "mask wrong size": _pickle_dict(mask=np.ones((32, 32), np.uint8)),
    "mask 3-D": _pickle_dict(mask=np.ones((64, 64, 3), np.uint8)),
    "mask of objects": _pickle_dict(mask=np.array([[None]], dtype=object)),
    "mask empty": _pickle_dict(mask=np.zeros((64, 64), np.uint8)),
    "prompt not a string": _pickle_dict(prompt=5),
    "huge prompt list": _pickle_dict(prompt=["x"] * 10),
}


def _convert_cases() -> None:
    g = "convert"
    for label, meta in BAD_DRAGBENCH.items():
        def setup(folder: Path, meta=meta) -> list[str]:
            dragbench_sample(folder / "data" / "bad", meta)
            return ["convert", "dragbench", str(folder / "data"), "-o", str(folder / "out")]
        add(f"convert dragbench {label}", setup, status=2, form="convert:1", allowed_new=("out",), group=g)

    others = {
        "meta FIFO": dict(meta=lambda p: os.mkfifo(p)),
        "meta 50 MB sparse": dict(meta=lambda p: os.truncate(p.touch() or p, 50 * 1024 * 1024)),
        "image bomb": dict(image=lambda p: real_bomb(p, 9600)),
        "image header 13000": dict(image=lambda p: png_header_only(p, 13000, 13000)),
        "image text": dict(image=lambda p: p.write_text("x")),
        "image missing": dict(image=lambda p: None),
        "image FIFO": dict(image=lambda p: os.mkfifo(p)),
    }
    for label, kwargs in others.items():
        def setup(folder: Path, kwargs=kwargs) -> list[str]:
            dragbench_sample(folder / "data" / "bad", **kwargs)
            return ["convert", "dragbench", str(folder / "data"), "-o", str(folder / "out")]
        add(f"convert dragbench {label}", setup, status=2, form="convert:1", allowed_new=("out",), group=g)

    def mixed(folder: Path) -> list[str]:
        dragbench_sample(folder / "data" / "a_good")
        for index, meta in enumerate(BAD_DRAGBENCH.values()):
            dragbench_sample(folder / "data" / f"bad_{index:02d}", meta)
        dragbench_sample(folder / "data" / "bad_fifo", meta=lambda p: os.mkfifo(p))
        dragbench_sample(folder / "data" / "bad\nnewline")
        (folder / "data" / "bad\nnewline" / "meta_data.pkl").write_bytes(b"junk")
        return ["convert", "dragbench", str(folder / "data"), "-o", str(folder / "out")]
    add("convert dragbench mixed: the run goes on", mixed, status=3, form=f"convert:{len(BAD_DRAGBENCH) + 2}",
        allowed_new=("out",), max_seconds=15, group=g)

    def drag100(points_text: str | bytes, mask=True):
        def setup(folder: Path) -> list[str]:
            sample = folder / "data" / "s"
            sample.mkdir(parents=True)
            png(sample / "original.jpg", picture()) if False else Image.fromarray(picture()).save(
                sample / "original.jpg", format="JPEG")
            if mask:
                png(sample / "mask.png", np.full((64, 64), 255, np.uint8))
            (sample / "points.json").write_bytes(points_text.encode() if isinstance(points_text, str) else points_text)
            return ["convert", "drag100", str(folder / "data"), "-o", str(folder / "out")]
        return setup
    for label, text in {
        "nested 10000": '{"points": ' + "[" * 10000 + "]" * 10000 + "}",
        "nested 100000": '{"points": ' + "[" * 100000 + "]" * 100000 + "}",
        "400-digit": '{"points": [[' + "9" * 400 + ", 1], [2, 2]]}",
        "5000-digit": '{"points": [[' + "9" * 5000 + ", 1], [2, 2]]}",
        "NaN": '{"points": [[NaN, 1], [2, 2]]}',
        "1e308": '{"points": [[1e308, 1], [2, 2]]}',
        "non-UTF-8": b'{"points": "\xff"}',
        "not an object": "[1, 2]",
        "strings": '{"points": [["a", "b"], ["c", "d"]]}',
    }.items():
        add(f"convert drag100 {label}", drag100(text), status=2, form="convert:1", allowed_new=("out",), group=g)
    add("convert drag100 no mask", drag100('{"points": [[20, 20], [30, 20]]}', mask=False), status=2,
        form="convert:1", allowed_new=("out",), group=g)

    def meta_folder(folder: Path) -> list[str]:
        dragbench_sample(folder / "data" / "bad", meta=lambda p: p.mkdir())
        return ["convert", "dragbench", str(folder / "data"), "-o", str(folder / "out")]
    add("convert dragbench meta a folder (no sample)", meta_folder, expect="no DragBench", group=g)

    def stale(folder: Path) -> list[str]:
        dragbench_sample(folder / "data" / "s")
        leftovers = folder / "out" / "dragbench"
        (leftovers / ".s.0123456789abcdef.partial").mkdir(parents=True)
        (leftovers / ".s.0123456789abcdef.partial" / "image.png").write_bytes(b"half")
        (leftovers / ".failed.csv.fedcba9876543210.partial").write_text("sample")
        (leftovers / ".keep.me.partial").write_text("not ours")
        for path in leftovers.iterdir():
            os.utime(path, (time.time() - 600, time.time() - 600))
        return ["convert", "dragbench", str(folder / "data"), "-o", str(folder / "out")]

    def stale_gone(folder: Path) -> str | None:
        names = sorted(p.name for p in (folder / "out" / "dragbench").iterdir())
        if names != [".keep.me.partial", "failed.csv", "s"]:
            return f"left {names}"
        return None
    add("convert removes stale .partial of a killed run", stale, status=0, form="none", allowed_new=("out",),
        check=stale_gone, group=g)

    add("convert root missing", lambda f: ["convert", "dragbench", str(f / "nope"), "-o", str(f / "out")],
        expect="not a folder", group=g)
    add("convert root empty", lambda f: ((f / "data").mkdir(), ["convert", "dragbench", str(f / "data"), "-o",
                                                                  str(f / "out")])[1], expect="no DragBench", group=g)
    add("convert -o a file", lambda f: (dragbench_sample(f / "data" / "s"), (f / "out").write_text("x"),
                                        ["convert", "dragbench", str(f / "data"), "-o", str(f / "out")])[2],
        expect="out", group=g)
    add("convert -o /proc", lambda f: (dragbench_sample(f / "data" / "s"),
                                       ["convert", "dragbench", str(f / "data"), "-o", "/proc/x"])[1],
        expect="/proc", outside=("/proc/x",), group=g)
    for radius in ("nan", "inf", "-1", "0", "1e308"):
        add(f"convert --radius {radius}",
            lambda f, r=radius: (dragbench_sample(f / "data" / "s"),
                                 ["convert", "dragbench", str(f / "data"), "-o", str(f / "out"), "--radius", r])[1],
            expect="radius", group=g)


def build_cases() -> None:
    _instruction_file_cases()
    _operation_cases()
    _image_cases()
    _output_cases()
    _settings_cases()
    _other_command_cases()
    _convert_cases()


# ---------------------------------------------------------------------------------------------------- running


def snapshot(folder: Path) -> dict[str, tuple]:
    state = {}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = os.lstat(path)
            state[str(path.relative_to(folder))] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return state


def check_stderr(case: Case, err: str, outcome: Outcome) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    if "Traceback" in err:
        outcome.problems.append("traceback")
    if case.form == "none":
        outcome.line = lines[0] if lines else ""
        if lines:
            outcome.problems.append(f"stderr: {len(lines)} lines")
        return
    if case.form == "any":
        outcome.line = lines[-1] if lines else ""
        return
    if case.form.startswith("convert:"):
        wanted = int(case.form.split(":")[1])
        failed = [line for line in lines if line.startswith("failed ")]
        other = [line for line in lines if not line.startswith("failed ")]
        outcome.line = failed[0] if failed else (lines[0] if lines else "")
        if len(failed) != wanted or other:
            outcome.problems.append(f"stderr: {len(failed)} 'failed' lines (want {wanted}), {len(other)} other")
        return
    if case.form == "argparse":
        last = lines[-1] if lines else ""
        outcome.line = last
        if not (last.startswith("dragnext ") and ": error: " in last):
            outcome.problems.append("stderr: no argparse error line")
    else:
        outcome.line = lines[0] if lines else ""
        if len(lines) != 1:
            outcome.problems.append(f"stderr: {len(lines)} lines")
        elif not lines[0].startswith("dragnext: error: "):
            outcome.problems.append("stderr: not 'dragnext: error:'")
    if case.expect and case.expect not in outcome.line:
        outcome.problems.append(f"line lacks {case.expect!r}")


def run_case(case: Case, folder: Path, probe_dir: Path, max_seconds: float, timeout: float) -> Outcome:
    folder.mkdir(parents=True)
    argv = case.setup(folder)
    if any(a in ("PREVIEW", "INPUT", "PREVIEW.gif") for a in argv):
        argv = _fixup_preview(argv, folder)
    before = snapshot(folder)
    outside_before = {p: os.path.lexists(p) for p in case.outside}
    probe = probe_dir / f"{id(case)}.txt"
    env = {**os.environ, "PYTHONPATH": f"{probe_dir}{os.pathsep}{SOURCE}", "HOSTILE_PROBE": str(probe),
           "HF_HUB_OFFLINE": "1",
           "COLUMNS": "120"}
    start = time.perf_counter()
    try:
        done = subprocess.run([str(DRAGNEXT), *argv], cwd=folder, env=env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, errors="replace")
        status, err = done.returncode, done.stderr
    except subprocess.TimeoutExpired as expired:
        status, err = None, (expired.stderr or b"").decode(errors="replace") if isinstance(expired.stderr, bytes) \
            else (expired.stderr or "")
    seconds = time.perf_counter() - start
    outcome = Outcome(case, status, seconds)
    outcome.loaded = probe.read_text() if probe.exists() else ""
    wanted = case.status if isinstance(case.status, tuple) else (case.status,)
    if status is None:
        outcome.problems.append(f"hang (> {timeout:.0f} s)")
    elif status not in wanted:
        outcome.problems.append(f"status {status}, want {'/'.join(map(str, wanted))}")
    check_stderr(case, err, outcome)
    after = snapshot(folder)
    changed = [p for p in after if before.get(p) != after[p] and not p.startswith(case.allowed_new)]
    removed = [p for p in before if p not in after and not p.startswith(case.allowed_new)]
    if changed or removed:
        outcome.problems.append(f"wrote {(changed + removed)[:3]}")
    for path, existed in outside_before.items():
        if os.path.lexists(path) and not existed:
            outcome.problems.append(f"created {path}")
    if status == 2 and any(m in outcome.loaded for m in BACKBONE_MODULES[:3]):
        outcome.problems.append("a model was loaded")
    if seconds > (case.max_seconds or max_seconds):
        outcome.problems.append(f"{seconds:.1f} s")
    if case.form.startswith("convert:") and status in (2, 3):
        failed_csv = folder / "out" / "dragbench" / "failed.csv"
        if not failed_csv.exists():
            failed_csv = folder / "out" / "drag100" / "failed.csv"
        if not failed_csv.exists():
            outcome.problems.append("no failed.csv")
        elif "PWNED" in os.listdir(folder):
            outcome.problems.append("the pickle ran code")
    if case.check is not None and (problem := case.check(folder)):
        outcome.problems.append(problem)
    if outcome.problems:
        outcome.problems.append("stderr: " + " | ".join(err.strip().splitlines()[-3:])[:300])
    return outcome


# ---------------------------------------------------------------------------------------------------- UI restore


def ui_cases(root: Path) -> list[tuple[str, list[str]]]:
    """(name, problems) of each restore case through the UI's Python API."""
    sys.path.insert(0, str(SOURCE))
    from dragnext.ui.uploads import UIError, read_instruction_upload

    secret = root / "secret"
    secret.mkdir()
    png(secret / "secret.png", picture())
    results: list[tuple[str, list[str]]] = []

    def restore(name: str, files: Callable[[Path], list[Path]], expect: str = "", ok: bool = False) -> str | None:
        folder = root / f"ui-{len(results):02d}"
        uploads, work = folder / "uploads", folder / "work"
        uploads.mkdir(parents=True)
        work.mkdir()
        paths = files(uploads)
        before_secret, before_work = snapshot(secret), snapshot(work)
        problems: list[str] = []
        message = None
        start = time.perf_counter()
        try:
            read_instruction_upload(paths, work)
            if not ok:
                problems.append("accepted")
        except UIError as error:
            message = str(error)
            if ok:
                problems.append(f"refused: {message}")
        except Exception as error:  # noqa: BLE001
            problems.append(f"{type(error).__name__}: {error}"[:200])
        seconds = time.perf_counter() - start
        if message is not None:
            if "\n" in message:
                problems.append("message has several lines")
            if str(work) in message or str(uploads) in message:  # the server's own folders, never the user's value
                problems.append("message shows a server folder")
            if expect and expect not in message:
                problems.append(f"message lacks {expect!r}: {message[:120]}")
        if snapshot(secret) != before_secret or snapshot(work) != before_work:
            problems.append("wrote files")
        if seconds > 1.0:
            problems.append(f"{seconds:.1f} s")
        results.append((name, problems))
        return message

    def json_upload(doc: dict | str, *extra: tuple[str, Callable[[Path], object]]):
        def files(folder: Path) -> list[Path]:
            (folder / "instructions.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))
            png(folder / "image.png", picture())
            png(folder / "region.png", square_mask())
            made = [folder / "instructions.json", folder / "image.png", folder / "region.png"]
            for name, make in extra:
                make(folder / name)
                made.append(folder / name)
            return made
        return files

    def zip_upload(members: list[tuple[str, bytes]], links: tuple[tuple[str, str], ...] = ()):
        def files(folder: Path) -> list[Path]:
            path = folder / "upload.zip"
            with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
                for name, data in members:
                    bundle.writestr(name, data)
                for name, target in links:
                    info = zipfile.ZipInfo(name)
                    info.external_attr = (0o120777 << 16)
                    bundle.writestr(info, target)
            return [path]
        return files

    def png_bytes(array: np.ndarray) -> bytes:
        data = io.BytesIO()
        Image.fromarray(array).save(data, "PNG")
        return data.getvalue()

    valid_doc = {"image": "image.png", "operations": [op()]}
    restore("valid JSON + PNGs", json_upload(valid_doc), ok=True)
    abs_msg = restore("JSON names an absolute path", json_upload(doc_with(image=str(secret / "secret.png"))),
                      expect="outside")
    missing_msg = restore("JSON names a missing absolute path",
                          json_upload(doc_with(image=str(secret / "missing.png"))), expect="outside")
    if abs_msg and missing_msg and abs_msg.replace("secret.png", "X") != missing_msg.replace("missing.png", "X"):
        results.append(("existing and missing paths give the same message", ["messages differ"]))
    restore("JSON names /etc/passwd", json_upload(doc_with(image="/etc/passwd")), expect="outside")
    restore("JSON names ../", json_upload(doc_with(image="../../secret/secret.png")), expect="outside")
    restore("JSON names a/../../", json_upload(doc_with(image="a/../../x.png")), expect="outside")
    restore("JSON names a mask outside", json_upload(doc_with(operations=[op(region=str(secret / "secret.png"))])),
            expect="outside")
    restore("JSON names ~", json_upload(doc_with(image="~/x.png")), expect="")
    restore("JSON names /dev/zero", json_upload(doc_with(image="/dev/zero")), expect="outside")
    restore("JSON names /proc/self/environ", json_upload(doc_with(image="/proc/self/environ")), expect="outside")
    restore("JSON names its folder", json_upload(doc_with(image=".")), expect="")
    restore("JSON depth 10000", json_upload("[" * 10000 + "]" * 10000), expect="")
    restore("JSON 3 MB", json_upload(" " * (3 * 1024 * 1024) + "{}"), expect="")
    restore("JSON 17 operations", json_upload(doc_with(operations=[op()] * 17)), expect="16")
    good = [("r/instructions.json", json.dumps(valid_doc).encode()), ("r/image.png", png_bytes(picture())),
            ("r/region.png", png_bytes(square_mask()))]
    restore("zip valid", zip_upload(good), ok=True)
    restore("zip member ../", zip_upload([*good, ("../evil.png", b"x")]), expect="unsafe")
    restore("zip member absolute", zip_upload([*good, ("/tmp/evil.png", b"x")]), expect="")
    restore("zip member symlink to a secret", zip_upload(
        [("r/instructions.json", json.dumps(doc_with(image="link.png")).encode()), ("r/region.png",
                                                                                    png_bytes(square_mask()))],
        links=(("r/link.png", str(secret / "secret.png")),)), expect="link")
    restore("zip image 13000x13000", zip_upload([
        ("r/instructions.json", json.dumps(valid_doc).encode()),
        ("r/image.png", png_header_only(root / "h13000.png", 13000, 13000).read_bytes()),
        ("r/region.png", png_bytes(square_mask()))]), expect="")
    big = root / "bomb13000.png"
    if not big.exists():
        Image.new("1", (13000, 13000)).save(big)
    restore("zip real 13000x13000 PNG", zip_upload([
        ("r/instructions.json", json.dumps(valid_doc).encode()), ("r/image.png", big.read_bytes()),
        ("r/region.png", png_bytes(square_mask()))]), expect="")
    restore("zip mask 13000 x 13000", zip_upload([
        ("r/instructions.json", json.dumps(valid_doc).encode()), ("r/image.png", png_bytes(picture())),
        ("r/region.png", big.read_bytes())]), expect="")
    restore("zip 200 members", zip_upload([*good, *((f"r/x{i}.png", b"") for i in range(200))]), expect="")
    restore("zip bomb member", zip_upload([*good, ("r/zeros.bin", b"\x00" * (200 * 1024 * 1024))]), expect="")
    restore("zip not a zip", lambda f: [(f / "u.zip", f.joinpath("u.zip").write_text("nope"))[0]], expect="zip")
    restore("zip two JSON, one instructions.json", zip_upload([*good, ("r/other.json", b"{}")]), ok=True)
    restore("zip two JSON, neither instructions.json", zip_upload([
        ("r/a.json", json.dumps(valid_doc).encode()), ("r/b.json", b"{}"), *good[1:]]), expect="several")
    inside_missing = restore("JSON names a missing file inside", json_upload(doc_with(image="nope.png")),
                             expect="does not exist")
    outside_existing = restore("JSON names an existing file outside", json_upload(doc_with(image="/etc/hostname")),
                               expect="outside")
    if inside_missing and outside_existing and "outside" in inside_missing:
        results.append(("a missing inside file reads as missing", ["said outside"]))
    restore("upload FIFO", lambda f: [(f / "x.json", os.mkfifo(f / "x.json"))[0]], expect="")
    return results


# ---------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", default="", help="only the cases whose name contains this")
    parser.add_argument("--max-seconds", type=float, default=2.0, help="fail a case slower than this (default 2)")
    parser.add_argument("--timeout", type=float, default=30.0, help="a case running longer hangs (default 30 s)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--no-ui", action="store_true", help="skip the UI restore cases")
    parser.add_argument("--src", type=Path, help="run the dragnext package under this folder (default: src/)")
    args = parser.parse_args(argv)
    global SOURCE
    if args.src is not None:
        SOURCE = args.src.resolve()

    build_cases()
    root = Path(tempfile.mkdtemp(prefix="hostile-"))
    probe_dir = root / "probe"
    probe_dir.mkdir()
    (probe_dir / "sitecustomize.py").write_text(PROBE)
    selected = [c for c in CASES if args.k.lower() in c.name.lower()]
    outcomes: list[Outcome] = []
    ui: list[tuple[str, list[str]]] = []
    try:
        for index, case in enumerate(selected):
            outcome = run_case(case, root / f"case-{index:03d}", probe_dir, args.max_seconds, args.timeout)
            outcomes.append(outcome)
            mark = "FAIL" if outcome.problems else ("slow" if outcome.seconds > SLOW_SECONDS else "ok")
            status = "-" if outcome.status is None else outcome.status
            loaded = "model" if any(m in outcome.loaded for m in BACKBONE_MODULES[:3]) else (
                "torch" if "torch" in outcome.loaded else "")
            print(f"{mark:4} {status!s:>3} {outcome.seconds:5.2f}s {loaded:5} {case.group:17} {case.name[:48]:48} "
                  f"{outcome.line[:110]}", flush=True)
            for problem in outcome.problems:
                print(f"{'':14}-> {problem}", flush=True)
        ui = [] if args.no_ui or args.k else ui_cases(root)
        for name, problems in ui:
            print(f"{'FAIL' if problems else 'ok':4}  ui {'':14} {name}", flush=True)
            for problem in problems:
                print(f"{'':14}-> {problem}", flush=True)
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            for dirpath, dirnames, _ in os.walk(root):
                for name in dirnames:
                    os.chmod(Path(dirpath) / name, 0o755)
            shutil.rmtree(root, ignore_errors=True)
    failed = [o for o in outcomes if o.problems]
    failed_ui = [name for name, problems in ui if problems]
    slow = [o for o in outcomes if o.seconds > SLOW_SECONDS]
    total = len(outcomes) + len(ui)
    print(f"\n{total - len(failed) - len(failed_ui)} of {total} cases pass ({len(outcomes)} CLI, {len(ui)} UI); "
          f"{len(failed) + len(failed_ui)} fail; {len(slow)} CLI cases over {SLOW_SECONDS:g} s")
    return 1 if failed or failed_ui else 0


if __name__ == "__main__":
    sys.exit(main())
