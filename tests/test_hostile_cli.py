"""The most telling cases of ``scripts/hostile_catalogue.py`` (issue #10), kept fast: one line and exit status 2, no
traceback, nothing written, no model loaded (``load_model`` is replaced by a failure), and bounded work."""

from __future__ import annotations

import json
import math
import os
import pickle
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dragnext.batch import instruction_files
from dragnext.bench.convert import convert
from dragnext.bench.convert.regions import MAX_RADIUS, check_radius
from dragnext.bench.convert.samples import remove_stale_staging
from dragnext.cli import main
from dragnext.instructions import InstructionError, json_format, load_instructions
from dragnext.limits import one_line, read_image

SIZE = 64
LONG_NAME = "a" * 300 + ".png"  # longer than any file system's name limit (255 bytes)


@pytest.fixture(autouse=True)
def no_model(monkeypatch):
    """Any command that reaches the model fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")
    monkeypatch.setattr("dragnext.cli.common.load_model", refuse)


def picture() -> np.ndarray:
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    return np.stack([x * 4, y * 4, (x + y) * 2], -1).astype(np.uint8)


def square(size: int = SIZE) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[12:28, 12:28] = 255
    return mask


def header_only_png(path: Path, width: int, height: int) -> Path:
    """A PNG that declares ``width x height`` but holds a few bytes of pixels: decoding it fails."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 8))
                     + chunk(b"IEND", b""))
    return path


def request(folder: Path, operations: list | None = None, region: np.ndarray | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture()).save(folder / "image.png")
    Image.fromarray(square() if region is None else region).save(folder / "region.png")
    op = {"type": "translate", "region": "region.png", "handle": [20, 20], "target": [30, 20]}
    path = folder / "req.json"
    path.write_text(json.dumps({"image": "image.png", "operations": operations or [op]}))
    return path


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def refused(capsys, argv: list[str], expected: str, status: int = 2) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == status, err
    assert len(lines) == 1 and lines[0].startswith("dragnext: error: "), err
    assert expected in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------------------------------ the contract, in-process


def _text(text: str):
    return lambda folder: (folder / "req.json").write_text(text)


def _op(**changes) -> dict:
    return {"type": "translate", "region": "region.png", "handle": [20, 20], "target": [30, 20], **changes}


def _doc(**changes):
    return lambda folder: (folder / "req.json").write_text(json.dumps({"image": "image.png", "operations": [_op()],
                                                                         **changes}))


# (id, change to the request folder, extra arguments, what the one line says)
CONTRACT = [
    ("json-fifo", lambda f: ((f / "req.json").unlink(), os.mkfifo(f / "req.json")), [], "named pipe"),
    ("json-symlink-loop", lambda f: ((f / "req.json").unlink(), os.symlink("req.json", f / "req.json")), [],
     "Too many levels"),
    ("json-depth-10000", _text("[" * 10000 + "]" * 10000), [], "nested too deeply"),
    ("json-not-utf8", lambda f: (f / "req.json").write_bytes(b'{"image": "\xff"}'), [], "not UTF-8"),
    ("json-duplicate-key", _text('{"image": "a.png", "image": "b.png", "operations": []}'), [], "duplicate key"),
    ("json-nan", _doc(operations=[_op(handle=[math.nan, 1])]), [], "handle"),
    ("json-1e308", _doc(operations=[_op(target=[1e308, 1])]), [], "target"),
    ("json-65-operations", _doc(operations=[_op()] * 65), [], "more than the limit of 64"),
    ("json-5000-point-polygon", _doc(operations=[_op(region={"polygon": [[1, 1]] * 5000})]), [], "4096"),
    ("collinear-polygon", _doc(operations=[_op(region={"polygon": [[1, 1], [5, 5], [9, 9]]})]), [], "polygon"),
    ("scale-centre-on-handle", _doc(operations=[_op(type="scale", center=[20, 20])]), [], "operations[0]"),
    ("image-dev-zero", _doc(image="/dev/zero"), [], "a device"),
    ("image-text", lambda f: (f / "image.png").write_text("text"), [], "not an image file"),
    ("image-folder", lambda f: ((f / "image.png").unlink(), (f / "image.png").mkdir()), [], "a folder"),
    ("image-bomb-header", lambda f: header_only_png(f / "image.png", 13000, 13000), [], "8192 px per side"),
    ("mask-empty", lambda f: Image.new("L", (SIZE, SIZE)).save(f / "region.png"), [], "mask is empty"),
    ("output-is-input", lambda f: None, ["-o", "{f}/image.png"], "is an input of this edit"),
    ("output-suffix", lambda f: None, ["-o", "{f}/o.jpg"], "must end in .png"),
    ("preview-is-output", lambda f: None, ["--preview", "{o}"], "--preview: must differ"),
    ("seed-2-63", lambda f: None, ["--seed", str(2**63)], "--seed"),
    ("set-nan", lambda f: None, ["--set", "strength=nan"], "strength"),
    ("set-unknown", lambda f: None, ["--set", "guidance=7"], "--set"),
    ("device-meta", lambda f: None, ["--device", "meta"], "--device meta"),
]


@pytest.mark.parametrize(("change", "extra", "expected"), [c[1:] for c in CONTRACT], ids=[c[0] for c in CONTRACT])
def test_hostile_input_is_one_line_exit_2_nothing_written_no_model(tmp_path, capsys, change, extra, expected):
    folder = tmp_path / "req"
    request(folder)
    change(folder)
    before = files_in(tmp_path)
    argv = ["edit", str(folder / "req.json"), "-o", str(tmp_path / "o.png"), "--model", "bundled", "--quiet"]
    start = time.perf_counter()
    extra = [a.replace("{f}", str(folder)).replace("{o}", str(tmp_path / "o.png")) for a in extra]
    refused(capsys, [*argv, *extra], expected)
    assert time.perf_counter() - start < 1.0
    assert files_in(tmp_path) == before


# ------------------------------------------------------------------------------------------ masks: bounded work


def test_a_mask_of_the_wrong_size_is_refused_from_its_header(tmp_path):
    """A mask that declares 100x100 beside a 64x64 image is refused by its size, not by a failed decode: the
    pixels were never read."""
    header_only_png(tmp_path / "mask.png", 100, 100)
    with pytest.raises(InstructionError, match="mask is 100x100 but the image is 64x64"):
        read_image(tmp_path / "mask.png", "region", "L", size=(SIZE, SIZE))


def test_a_huge_mask_named_64_times_is_refused_at_once(tmp_path, capsys):
    folder = tmp_path / "req"
    op = {"type": "translate", "region": "region.png", "handle": [20, 20], "target": [30, 20]}
    path = request(folder, [op] * 64)
    Image.new("L", (6000, 6000)).save(folder / "region.png")
    before = files_in(tmp_path)
    start = time.perf_counter()
    refused(capsys, ["edit", str(path), "-o", str(tmp_path / "o.png"), "--model", "bundled"],
            "operations[0].region: mask is 6000x6000 but the image is 64x64")
    assert time.perf_counter() - start < 1.0  # decoding it 64 times took 24 s
    assert files_in(tmp_path) == before


def test_a_mask_named_many_times_is_decoded_once(tmp_path, monkeypatch):
    op = {"type": "translate", "region": "region.png", "handle": [20, 20], "target": [30, 20]}
    document = {"image": "image.png", "editable_mask": "./region.png", "operations": [op] * 10}
    path = request(tmp_path, [op])
    path.write_text(json.dumps(document))
    decoded = []
    real = json_format.read_image
    monkeypatch.setattr(json_format, "read_image", lambda *a, **k: decoded.append(a[0]) or real(*a, **k))
    loaded = load_instructions(path)
    assert len(decoded) == 2  # the image, then the mask once (also as the editable mask, spelled otherwise)
    assert len(loaded.operations) == 10
    assert all(np.array_equal(o.region, square() > 127) for o in loaded.operations)
    assert np.array_equal(loaded.editable_mask, square() > 127)


# ------------------------------------------------------------------------------------------ outputs


@pytest.mark.parametrize("command", ["region", "demo"])
def test_an_output_name_too_long_is_one_line(tmp_path, capsys, command):
    Image.fromarray(picture()).save(tmp_path / "image.png")
    argv = (["region", str(tmp_path / "image.png"), "--click", "5,5"] if command == "region" else ["demo"])
    refused(capsys, [*argv, "-o", str(tmp_path / LONG_NAME)], "File name too long")
    assert files_in(tmp_path) == ["image.png"]


@pytest.mark.parametrize(("output", "expected"), [
    ("new/sub/x.jpg", "must end in .png"),
    ("/proc/x.png", "cannot write in folder '/proc'"),
    ("file/new/x.png", "is not a folder"),
])
def test_demo_refuses_an_output_and_creates_nothing(tmp_path, capsys, monkeypatch, output, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("x")
    refused(capsys, ["demo", "-o", output], expected)
    assert files_in(tmp_path) == ["file"]
    assert not os.path.exists("/proc/x.png")


def test_demo_refuses_before_importing_torch(tmp_path):
    """The refusal comes before ``dragnext.demo`` (and so torch) is imported: a second, not seven."""
    code = ("import sys; from dragnext.cli import main; status = main(['demo', '--device', 'meta', '-o', 'x.jpg']); "
            "print(status, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["2", "False"], done.stderr
    assert done.stderr.strip().count("\n") == 0 and "must end in .png" in done.stderr


def test_a_batch_argument_too_long_for_the_file_system_is_a_file_not_a_crash():
    assert instruction_files([LONG_NAME]) == [Path(LONG_NAME)]


# ------------------------------------------------------------------------------------------ convert


@pytest.mark.parametrize("radius", [float("nan"), float("inf"), 0.5, 1e308, 10**400, MAX_RADIUS + 1, True, "3"])
def test_check_radius_refuses_what_no_disc_can_be(radius):
    with pytest.raises(InstructionError, match=r"radius: must be a number of pixels in \[1, 16384\]") as caught:
        check_radius(radius)
    assert len(str(caught.value)) < 120


def test_convert_radius_1e308_is_refused_before_any_sample(tmp_path, capsys):
    sample = tmp_path / "data" / "s"
    sample.mkdir(parents=True)
    refused(capsys, ["convert", "dragbench", str(tmp_path / "data"), "-o", str(tmp_path / "out"),
                     "--radius", "1e308"], "radius")
    assert not (tmp_path / "out").exists()


def _dragbench_sample(folder: Path) -> None:
    folder.mkdir(parents=True)
    Image.fromarray(picture()).save(folder / "original_image.png")
    meta = {"prompt": "", "points": [[20, 20], [30, 20]], "mask": np.ones((SIZE, SIZE), np.uint8)}
    (folder / "meta_data.pkl").write_bytes(pickle.dumps(meta))


def test_convert_removes_the_staging_left_by_a_killed_run_and_nothing_else(tmp_path):
    _dragbench_sample(tmp_path / "data" / "cat" / "s")
    target = tmp_path / "out" / "dragbench"
    (target / "cat").mkdir(parents=True)
    old = time.time() - 600
    stale = [target / "cat" / ".s.0123456789abcdef.partial", target / "cat" / ".s.0123456789abcdef.old"]
    for folder in stale:
        folder.mkdir()
        (folder / "image.png").write_bytes(b"half")
    stale.append(target / ".failed.csv.0123456789abcdef.partial")
    stale[-1].write_text("sample")
    kept = [target / ".s.partial",  # not our name
            target / "cat" / ".s.0123456789ABCDEF.partial",  # not our name (upper-case hex)
            target / ".fresh.0123456789abcdef.partial"]  # ours, but newer than the run: another run's
    for path in kept[:2]:
        path.write_text("someone else's")
    kept[2].mkdir()
    for path in [*stale, *kept[:2]]:
        os.utime(path, (old, old))
    os.utime(kept[2], (time.time() + 60, time.time() + 60))
    link = target / ".link.0123456789abcdef.partial"
    os.symlink(tmp_path / "data", link)
    os.utime(link, (old, old), follow_symlinks=False)

    report = convert("dragbench", tmp_path / "data", tmp_path / "out")

    assert [p.parent.name for p in report.converted] == ["s"] and not report.failed
    assert not any(os.path.lexists(p) for p in stale)
    assert all(os.path.lexists(p) for p in [*kept, link])
    assert (tmp_path / "data" / "cat" / "s" / "meta_data.pkl").exists()  # the link was not followed


def test_remove_stale_staging_leaves_what_is_newer_than_the_run(tmp_path):
    (tmp_path / ".s.0123456789abcdef.partial").mkdir()
    assert remove_stale_staging(tmp_path, time.time() - 60) == []
    assert remove_stale_staging(tmp_path, time.time() + 60) == [tmp_path / ".s.0123456789abcdef.partial"]


# ------------------------------------------------------------------------------------------ one_line


@pytest.mark.parametrize(("value", "limit", "expected"), [
    ("a\nb\r\n\tc  d", None, "a b c d"),
    (ValueError("line one\nline two"), None, "line one line two"),
    (KeyError(), None, "KeyError"),
    (RuntimeError(""), None, "RuntimeError"),
    ("x" * 50, 10, "xxxxxxx..."),
    ("short", 10, "short"),
    (None, None, "None"),
])
def test_one_line(value, limit, expected):
    assert one_line(value, limit) == expected
