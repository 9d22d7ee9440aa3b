"""Tests for the benchmark converters (DragBench, Drag100 -> instruction folders) and the restricted unpickler.

The round trips over the real data in ``../shared/data`` are skipped when it is absent; the synthetic tests
below them run everywhere. The full Drag100 loop (100 samples, ~20 s) is slow: it runs with ``--runslow``;
the default suite converts every DragBench sample and a subset of Drag100.
"""

from __future__ import annotations

import argparse
import builtins
import csv
import io
import json
import math
import os
import pickle
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dragnext.bench.convert import (
    ALLOWED_GLOBALS,
    ConversionError,
    ConversionReport,
    UnsafePickleError,
    convert,
    convert_drag100,
    convert_dragbench,
    default_radius,
    find_samples,
    load_dragbench_meta,
)
from dragnext.bench.convert import conversion as conversion_module
from dragnext.bench.convert import samples as samples_module
from dragnext.cli.common import EXIT_SOME_FAILED
from dragnext.cli.convert import add_convert_parser
from dragnext.instructions import InstructionError, load_instructions

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# Drag100 samples of the default suite: every 10th, plus those whose handles lie just outside the editable mask
# (cat_6, nature_11) and the one with a zero-length pair (plants_3).
DRAG100_SUBSET_EXTRA = ("cat_6", "nature_11", "plants_3")


def _data(name: str) -> Path:
    folder = DATA / name
    if not folder.is_dir():
        pytest.skip("../shared/data not present")
    return folder


def _disc(shape: tuple[int, int], center: tuple[float, float], radius: float) -> np.ndarray:
    ys, xs = np.mgrid[: shape[0], : shape[1]]
    return (xs - center[0]) ** 2 + (ys - center[1]) ** 2 <= radius**2


def _has_zero_length_pair(points: list) -> bool:
    return any(math.dist(h, t) < 1e-6 for h, t in zip(points[0::2], points[1::2], strict=True))


def check_sample(instructions: Path, points: list, mask: np.ndarray, image: np.ndarray, dataset: str) -> None:
    """What a converted sample must satisfy, checked against the source arrays read independently."""
    request = load_instructions(instructions)
    assert len(request.operations) == len(points) // 2
    assert [op.handle for op in request.operations] == [tuple(map(float, p)) for p in points[0::2]]
    assert [op.target for op in request.operations] == [tuple(map(float, p)) for p in points[1::2]]
    assert request.editable_mask is not None and np.array_equal(request.editable_mask, mask)
    assert np.array_equal(request.image, image)

    sidecar = json.loads((instructions.parent / "conversion.json").read_text())
    assert sidecar["dataset"] == dataset
    assert Path(sidecar["source"]).is_dir()
    assert sidecar["points"] == points
    assert "translate of a disc" in sidecar["note"]
    region = sidecar["region"]
    height, width = mask.shape
    assert region["kind"] == "disc" and region["radius"] == default_radius(height, width)
    assert len(region["intersected_with_editable"]) == len(request.operations)
    for operation, intersected in zip(request.operations, region["intersected_with_editable"], strict=True):
        assert operation.type == "translate"
        disc = _disc(mask.shape, operation.handle, region["radius"])
        expected = disc & mask if intersected else disc
        assert np.array_equal(operation.region, expected)
        assert intersected == bool((disc & mask).any())


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An independent reader of the source pickles for the round trip (resolves names the standard way)."""

    def find_class(self, module, name):
        assert module.split(".")[0] == "numpy", (module, name)
        return super().find_class(module, name)


def _dragbench_source(folder: Path) -> tuple[list, np.ndarray, np.ndarray]:
    with open(folder / "meta_data.pkl", "rb") as stream:
        meta = _NumpyOnlyUnpickler(stream).load()
    assert meta["mask"].dtype == np.uint8 and set(np.unique(meta["mask"])) <= {0, 1}
    image = np.asarray(Image.open(folder / "original_image.png").convert("RGB"))
    return meta["points"], meta["mask"] == 1, image


def _drag100_source(folder: Path) -> tuple[list, np.ndarray, np.ndarray]:
    points = json.loads((folder / "points.json").read_text())["points"]
    mask = np.asarray(Image.open(folder / "mask.png").convert("L")) > 127
    image = np.asarray(Image.open(folder / "original.jpg").convert("RGB"))
    return points, mask, image


def _check_drag100(root: Path, out: Path) -> None:
    report = convert_drag100(root, out)
    samples = find_samples(root, "drag100")
    expected_skips = {s.name for s in samples if _has_zero_length_pair(_drag100_source(s)[0])}
    assert {name for name, _ in report.failed} == expected_skips
    assert all("equals the handle" in reason for _, reason in report.failed)
    assert len(report.converted) == len(samples) - len(expected_skips)
    for folder in samples:
        if folder.name in expected_skips:
            assert not (out / "drag100" / folder.name).exists()
            continue
        points, mask, image = _drag100_source(folder)
        check_sample(out / "drag100" / folder.name / "instructions.json", points, mask, image, "drag100")


# --------------------------------------------------------------------------------------------------------
# The real benchmarks


def test_every_dragbench_sample_round_trips(tmp_path):
    root = _data("dragbench")
    report = convert_dragbench(root, tmp_path)
    samples = find_samples(root, "dragbench")
    assert len(samples) == 20
    assert report.failed == []
    assert len(report.converted) == len(samples)
    for folder in samples:
        points, mask, image = _dragbench_source(folder)
        relative = folder.relative_to(root)  # <category>/<sample>
        check_sample(tmp_path / "dragbench" / relative / "instructions.json", points, mask, image, "dragbench")
        meta = load_dragbench_meta(folder / "meta_data.pkl")
        assert meta["points"] == points and np.array_equal(meta["mask"] == 1, mask)
        assert load_instructions(tmp_path / "dragbench" / relative / "instructions.json").prompt == meta["prompt"]


def test_drag100_subset_round_trips(tmp_path):
    source = _data("drag100")
    names = sorted(p.name for p in source.iterdir() if p.is_dir())
    subset = sorted(set(names[::10]) | {n for n in DRAG100_SUBSET_EXTRA if n in names})
    root = tmp_path / "drag100"
    for name in subset:
        shutil.copytree(source / name, root / name)
    _check_drag100(root, tmp_path / "out")


@pytest.mark.slow
def test_every_drag100_sample_round_trips(tmp_path):
    root = _data("drag100")
    assert len(find_samples(root, "drag100")) == 100
    _check_drag100(root, tmp_path)


# --------------------------------------------------------------------------------------------------------
# The restricted unpickler


class _Call:
    """Pickles as a call of ``function(*args)``: what a malicious meta_data.pkl would contain."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def _meta(mask=None, **changes):
    mask = np.zeros((4, 5), np.uint8) if mask is None else mask
    meta = {"prompt": "a photo", "points": [[1, 2], [3, 4]], "mask": mask}
    meta.update(changes)
    return meta


@pytest.mark.parametrize(
    ("call", "refused"),
    [
        ("os.system", r"(posix|nt)\.system"),
        ("builtins.eval", r"builtins\.eval"),
        ("numpy.ones", r"numpy(\.\w+)*\.ones"),  # harmless, but the list is exact, not "numpy.*"
    ],
)
def test_unpickler_refuses_function_calls_and_runs_nothing(tmp_path, call, refused):
    marker = tmp_path / "pwned"
    payload = {
        "os.system": _Call(os.system, f"echo pwned > {marker}"),
        "builtins.eval": _Call(builtins.eval, f"__import__('pathlib').Path({str(marker)!r}).touch()"),
        "numpy.ones": _Call(np.ones, (2,)),
    }[call]
    path = tmp_path / "meta_data.pkl"
    path.write_bytes(pickle.dumps(_meta(mask=payload)))
    with pytest.raises(UnsafePickleError, match=rf"meta_data\.pkl: refusing to load global '{refused}'") as caught:
        load_dragbench_meta(path)
    assert isinstance(caught.value, InstructionError) and isinstance(caught.value, ValueError)
    assert not marker.exists()


def test_unpickler_refuses_a_malicious_sample_without_stopping_the_rest(tmp_path):
    marker = tmp_path / "pwned"
    root = tmp_path / "bench"
    _write_dragbench_sample(root / "cat" / "good", _meta(mask=np.ones((30, 40), np.uint8), points=[[5, 5], [9, 9]]))
    evil = _meta(mask=_Call(os.system, f"touch {marker}"))
    _write_dragbench_sample(root / "cat" / "evil", evil, size=(40, 30))
    report = convert_dragbench(root, tmp_path / "out")
    assert [p.parent.name for p in report.converted] == ["good"]
    assert len(report.failed) == 1 and report.failed[0][0] == "cat/evil"
    assert "refusing to load global" in report.failed[0][1]
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_unpickler_accepts_a_legit_meta_dict(tmp_path, protocol):
    mask = np.zeros((6, 7), np.uint8)
    mask[2:4, 3:6] = 1
    path = tmp_path / "meta_data.pkl"
    path.write_bytes(pickle.dumps(_meta(mask=mask, points=[[1, 2], [3.5, 4]]), protocol=protocol))
    meta = load_dragbench_meta(path)
    assert meta["prompt"] == "a photo" and meta["points"] == [[1, 2], [3.5, 4]]
    assert meta["mask"].dtype == np.uint8 and np.array_equal(meta["mask"], mask)


class _RecordingUnpickler(pickle.Unpickler):
    """The standard unpickler, noting every global a (trusted) pickle names."""

    def __init__(self, stream):
        super().__init__(stream)
        self.globals = set()

    def find_class(self, module, name):
        self.globals.add(f"{module}.{name}")
        return super().find_class(module, name)


def _pickled_global(dotted: str) -> bytes:
    """A protocol-0 pickle whose whole content is one global (the GLOBAL opcode): it is admitted or refused."""
    module, _, name = dotted.rpartition(".")
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n."


def test_the_globals_that_dragbench_pickles_name_are_all_allowed(tmp_path):
    """What the real files (when present) and this numpy's own pickles of a meta dict reference must be
    admitted; otherwise real samples would be refused as unsafe."""
    sources = [pickle.dumps(_meta(mask=np.eye(5, 6, dtype=np.uint8)), protocol=p) for p in (3, 4, 5)]
    if DATA.is_dir():
        sources += [path.read_bytes() for path in sorted((DATA / "dragbench").rglob("meta_data.pkl"))]
    named = set()
    for index, content in enumerate(sources):
        recorder = _RecordingUnpickler(io.BytesIO(content))
        recorder.load()
        named |= recorder.globals
        path = tmp_path / f"{index}.pkl"
        path.write_bytes(content)
        load_dragbench_meta(path)  # the restricted unpickler loads them all
    assert named and named <= set(ALLOWED_GLOBALS)


@pytest.mark.parametrize("dotted", ALLOWED_GLOBALS)
def test_every_allowed_global_is_admitted(tmp_path, dotted):
    path = tmp_path / "meta_data.pkl"
    path.write_bytes(_pickled_global(dotted))
    with pytest.raises(ConversionError, match="expected a pickled dict, got") as caught:  # loaded, not refused
        load_dragbench_meta(path)
    assert not isinstance(caught.value, UnsafePickleError)


@pytest.mark.parametrize(
    "dotted",
    ["os.system", "posix.system", "builtins.eval", "builtins.getattr", "subprocess.Popen", "pickle.loads",
     "numpy.load", "numpy.frombuffer", "numpy.core.multiarray.scalar", "numpy.ndarray.__reduce__",
     "numpy.core.multiarray._reconstruct.__globals__"],
)
def test_any_other_global_is_refused(tmp_path, dotted):
    path = tmp_path / "meta_data.pkl"
    path.write_bytes(_pickled_global(dotted))
    with pytest.raises(UnsafePickleError, match="refusing to load global"):
        load_dragbench_meta(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (pickle.dumps([1, 2]), "expected a pickled dict, got list"),
        (pickle.dumps({"prompt": "p", "points": []}), "missing key(s) 'mask'"),
        (pickle.dumps(_meta(prompt=3)), "'prompt' must be a string"),
        (pickle.dumps(_meta(points=[[1, 2], [3]])), "points[1] must be [x, y]"),
        (pickle.dumps(_meta(mask=[[0, 1]])), "'mask' must be an H x W numeric array, got list"),
        (pickle.dumps(_meta(mask=np.zeros(3, np.uint8))), "'mask' must be an H x W numeric array"),
        (b"not a pickle at all", "not a readable pickle"),
        (pickle.dumps(_meta())[:40], "not a readable pickle"),
    ],
)
def test_load_dragbench_meta_reports_bad_content_in_one_line(tmp_path, content, message):
    path = tmp_path / "meta_data.pkl"
    path.write_bytes(content)
    with pytest.raises(ConversionError) as caught:
        load_dragbench_meta(path)
    assert message in str(caught.value) and str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_load_dragbench_meta_missing_file(tmp_path):
    with pytest.raises(InstructionError, match="nope.pkl' does not exist"):
        load_dragbench_meta(tmp_path / "nope.pkl")


# --------------------------------------------------------------------------------------------------------
# Synthetic samples: regions, skips, radius, stale files, CLI


def _write_dragbench_sample(folder: Path, meta: dict, size: tuple[int, int] | None = None) -> None:
    folder.mkdir(parents=True)
    (folder / "meta_data.pkl").write_bytes(pickle.dumps(meta))
    height, width = size[::-1] if size else meta["mask"].shape
    Image.fromarray(np.full((height, width, 3), 90, np.uint8)).save(folder / "original_image.png")


def _write_drag100_sample(folder: Path, points, mask: np.ndarray | None = None, size=(40, 30)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    width, height = size
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(folder / "original.jpg")
    mask = np.ones((height, width), bool) if mask is None else mask
    Image.fromarray(mask.astype(np.uint8) * 255).save(folder / "mask.png")
    (folder / "points.json").write_text(json.dumps({"points": points}))


def test_regions_are_discs_clipped_to_the_editable_mask(tmp_path):
    mask = np.zeros((30, 40), bool)
    mask[:, :20] = True  # left half editable
    points = [[18, 10], [25, 12], [0, 29], [3, 20]]  # straddles the mask's edge, on the image border
    _write_drag100_sample(tmp_path / "src" / "s", points, mask)
    _write_drag100_sample(tmp_path / "src" / "t", [*points, [35, 20], [30, 25]], mask)  # + a disc outside the mask
    report = convert_drag100(tmp_path / "src", tmp_path / "out", radius=3)
    assert report.failed == [("t", "points[4] (handle of pair 2): the 3 px disc around (35, 20) lies entirely "
                                   "outside the editable mask, so nothing in it may change")]
    request = load_instructions(report.converted[0])
    sidecar = json.loads((report.converted[0].parent / "conversion.json").read_text())
    assert sidecar["region"] == {
        "kind": "disc", "radius": 3, "radius_from": "given", "intersected_with_editable": [True, True],
    }
    first, second = (op.region for op in request.operations)
    assert np.array_equal(first, _disc((30, 40), (18, 10), 3) & mask)
    assert np.array_equal(second, _disc((30, 40), (0, 29), 3) & mask)
    assert int(_disc((30, 40), (10, 10), 3).sum()) == 29  # pixel centres within 3 px


def test_default_radius_rule():
    assert default_radius(512, 512) == 20
    assert default_radius(288, 512) == 12
    assert default_radius(30, 40) == 8
    assert default_radius(1024, 2048) == 41


@pytest.mark.parametrize(
    ("points", "reason"),
    [
        ([[1, 1], [5, 5], [7, 7]], "3 points is an odd number"),
        ([], "no points"),
        ([[5, 5], [5, 5]], "points[1] (target of pair 0): equals the handle (5, 5); nothing to drag"),
        ([[40, 5], [5, 5]], "points[0] (handle of pair 0): point (40, 5) lies outside the 40x30 image"),
        ([[5, 5], [5, -1]], "points[1] (target of pair 0): point (5, -1) lies outside the 40x30 image"),
        ([[5, 5], ["a", 3]], "points[1] (target of pair 0): expected [x, y] with two numbers"),
        ([[5, 5], [True, 3]], "expected [x, y] with two numbers"),
    ],
)
def test_unconvertible_samples_fail_alone(tmp_path, points, reason):
    _write_drag100_sample(tmp_path / "src" / "bad", points)
    _write_drag100_sample(tmp_path / "src" / "good", [[0, 0], [39, 29]])  # handle and target on the border
    report = convert_drag100(tmp_path / "src", tmp_path / "out")
    assert [p.parent.name for p in report.converted] == ["good"]
    assert [name for name, _ in report.failed] == ["bad"]
    assert reason in report.failed[0][1]
    assert not (tmp_path / "out" / "drag100" / "bad").exists()


def test_broken_files_fail_alone(tmp_path):
    _write_drag100_sample(tmp_path / "src" / "size", [[1, 1], [5, 5]], mask=np.ones((10, 10), bool))
    _write_drag100_sample(tmp_path / "src" / "json", [[1, 1], [5, 5]])
    (tmp_path / "src" / "json" / "points.json").write_text("{")
    _write_drag100_sample(tmp_path / "src" / "noimage", [[1, 1], [5, 5]])
    (tmp_path / "src" / "noimage" / "original.jpg").unlink()
    _write_drag100_sample(tmp_path / "src" / "empty", [[1, 1], [5, 5]], mask=np.zeros((30, 40), bool))
    report = convert_drag100(tmp_path / "src", tmp_path / "out")
    reasons = dict(report.failed)
    assert report.converted == []
    assert "mask is 10x10 but the image is 40x30" in reasons["size"]
    assert "points.json: not valid JSON" in reasons["json"]
    assert "image: 'original.jpg' does not exist" in reasons["noimage"]
    assert reasons["empty"] == "mask: the editable mask is empty, so nothing may change"


def test_bad_arguments(tmp_path):
    _write_drag100_sample(tmp_path / "src" / "s", [[1, 1], [5, 5]])
    for radius in (0, -2, float("nan"), "3"):
        with pytest.raises(ConversionError, match="radius"):
            convert_drag100(tmp_path / "src", tmp_path / "out", radius=radius)
    with pytest.raises(ConversionError, match="not a folder"):
        convert_drag100(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(ConversionError, match=r"no DragBench samples \(folders with meta_data.pkl\)"):
        convert_dragbench(tmp_path / "src", tmp_path / "out")
    with pytest.raises(ConversionError, match="not one of dragbench, drag100"):
        convert("dragbench2", tmp_path / "src", tmp_path / "out")


def test_reconverting_removes_stale_files(tmp_path):
    folder = tmp_path / "src" / "s"
    _write_drag100_sample(folder, [[5, 5], [9, 9], [20, 20], [25, 25]])
    out = tmp_path / "out"
    convert("drag100", tmp_path / "src", out)
    converted = out / "drag100" / "s"
    assert (converted / "region_1.png").exists()
    _write_drag100_sample(folder, [[5, 5], [9, 9]])
    convert("drag100", tmp_path / "src", out)
    assert not (converted / "region_1.png").exists()
    assert len(load_instructions(converted / "instructions.json").operations) == 1
    _write_drag100_sample(folder, [[5, 5], [5, 5]])  # now unconvertible: the old conversion must not linger
    report = convert("drag100", tmp_path / "src", out)
    assert report.converted == [] and not (converted / "instructions.json").exists()


def test_find_samples(tmp_path):
    _write_drag100_sample(tmp_path / "b", [[1, 1], [5, 5]])
    _write_drag100_sample(tmp_path / "a", [[1, 1], [5, 5]])
    _write_dragbench_sample(tmp_path / "cat" / "x", _meta())
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "points.json").write_text("{}")
    assert find_samples(tmp_path, "drag100") == [tmp_path / "a", tmp_path / "b"]
    assert find_samples(tmp_path, "dragbench") == [tmp_path / "cat" / "x"]
    assert find_samples(tmp_path) == [tmp_path / "a", tmp_path / "b", tmp_path / "cat" / "x"]
    # a single sample folder given as the root converts under its own name
    report = convert_drag100(tmp_path / "a", tmp_path / "out")
    assert report.converted == [tmp_path / "out" / "drag100" / "a" / "instructions.json"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dragnext")
    add_convert_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli(tmp_path, capsys):
    _write_drag100_sample(tmp_path / "src" / "good", [[1, 1], [5, 5]])
    _write_drag100_sample(tmp_path / "src" / "odd", [[1, 1]])
    args = _parser().parse_args(["convert", "drag100", str(tmp_path / "src"), "-o", str(tmp_path / "out")])
    assert args.run(args) == EXIT_SOME_FAILED
    captured = capsys.readouterr()
    assert captured.out.count("\n") == 1
    failed_csv = tmp_path / "out" / "drag100" / "failed.csv"
    assert "Drag100: converted 1 of 2 samples" in captured.out and f"1 failed, listed in {failed_csv}" in captured.out
    assert captured.err == "failed odd: points: 1 points is an odd number; expected handle, target pairs\n"
    assert (tmp_path / "out" / "drag100" / "good" / "instructions.json").exists()
    assert _failed_rows(tmp_path / "out" / "drag100") == [["odd", "points: 1 points is an odd number; expected "
                                                           "handle, target pairs"]]

    args = _parser().parse_args(["convert", "dragbench", str(tmp_path / "src"), "-o", str(tmp_path / "out")])
    assert args.run(args) == 2
    assert "dragnext: error:" in capsys.readouterr().err

    args = _parser().parse_args(
        ["convert", "drag100", str(tmp_path / "src"), "-o", str(tmp_path / "o2"), "--radius", "2.5"]
    )
    (tmp_path / "src" / "odd" / "points.json").write_text(json.dumps({"points": [[1, 1], [2, 2]]}))
    assert args.run(args) == 0
    assert "radius 2.5 px" in capsys.readouterr().out
    assert _failed_rows(tmp_path / "o2" / "drag100") == []
    sidecar = json.loads((tmp_path / "o2" / "drag100" / "good" / "conversion.json").read_text())
    assert sidecar["region"]["radius"] == 2.5


def test_report_summary_names_the_default_rule():
    report = ConversionReport(converted=[Path("a")], failed=[], dataset="dragbench", out=Path("o"))
    assert report.summary() == (
        "DragBench: converted 1 of 1 samples into o (translate of a disc around each handle, "
        "radius max(8, round(0.04 * min(H, W))) px)"
    )


# --------------------------------------------------------------------------------------------------------
# Hostile samples: each fails alone, listed in failed.csv; the good ones convert; nothing half-written remains


def _failed_rows(folder: Path) -> list[list[str]]:
    with open(folder / "failed.csv", newline="", encoding="utf-8") as stream:
        header, *rows = csv.reader(stream)
    assert header == ["sample", "reason"]
    return rows


def _leftovers(out: Path) -> list[Path]:
    """Staging or retired folders a conversion must never leave behind."""
    return [p for p in out.rglob(".*") if p.name.endswith((".partial", ".old"))]


def _nested_list(depth: int) -> bytes:
    """Pickle opcodes of a list nested ``depth`` deep (``pickle.dumps`` itself would hit the recursion limit)."""
    return b"]" * depth + b"a" * (depth - 1)


def _meta_with_raw_points(points_opcodes: bytes, mask: np.ndarray) -> bytes:
    """A protocol-4 meta_data.pkl whose 'points' value is given as raw pickle opcodes."""
    head = pickle.dumps({"prompt": "p", "mask": mask}, protocol=4)
    assert head.endswith(b"u.") or head.endswith(b"s.")
    key = b"X\x06\x00\x00\x00points"  # BINUNICODE of the 6-character key
    return head[:-1] + key + points_opcodes + b"s."  # the dict stays on the stack; SETITEM adds the key


def _run_with_timeout(function, seconds: float = 60.0, unblock: tuple[Path, ...] = ()):
    """Run ``function`` in a thread: a regression that blocks (on a FIFO, say) fails the test instead of hanging
    it. The FIFOs in ``unblock`` are then opened for writing once, which releases a reader stuck on them."""
    outcome = {}

    def target():
        try:
            outcome["value"] = function()
        except BaseException as error:  # re-raised in the test's thread
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        for fifo in unblock:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(5)
        pytest.fail(f"still running after {seconds} s: a source file blocked the conversion")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _hostile_dragbench(root: Path) -> tuple[list[str], dict[str, str], tuple[Path, ...]]:
    """Good samples mixed with hostile ones: (good names, {bad name: expected reason}, FIFOs made)."""
    mask = np.ones((30, 40), np.uint8)
    good = _meta(mask=mask, points=[[5, 5], [9, 9]])
    _write_dragbench_sample(root / "cat" / "a_good", good)
    nested = root / "cat" / "b_nested"
    _write_dragbench_sample(nested, good)
    (nested / "meta_data.pkl").write_bytes(_meta_with_raw_points(_nested_list(10_000), mask))
    _write_dragbench_sample(root / "cat" / "c_huge_int", _meta(mask=mask, points=[[10**399, 5], [9, 9]]))
    fifo_meta = root / "cat" / "d_fifo_meta"
    _write_dragbench_sample(fifo_meta, good)
    (fifo_meta / "meta_data.pkl").unlink()
    os.mkfifo(fifo_meta / "meta_data.pkl")
    fifo_image = root / "cat" / "e_fifo_image"
    _write_dragbench_sample(fifo_image, good)
    (fifo_image / "original_image.png").unlink()
    os.mkfifo(fifo_image / "original_image.png")
    truncated = root / "cat" / "f_truncated"
    _write_dragbench_sample(truncated, good)
    data = (truncated / "original_image.png").read_bytes()
    (truncated / "original_image.png").write_bytes(data[: len(data) // 2])
    _write_dragbench_sample(root / "dog" / "g_good", good)
    bad = {
        "cat/b_nested": "points[0] must be [x, y] with two numbers, got [[[[...]]]]",
        "cat/c_huge_int": "coordinates must be finite numbers, got [<integer of about 400 digits>, 5]",
        "cat/d_fifo_meta": "meta_data.pkl' is a named pipe (FIFO), not a regular file",
        "cat/e_fifo_image": "image: 'original_image.png' is a named pipe (FIFO), not a regular file",
        "cat/f_truncated": "image: cannot read 'original_image.png': image file is truncated",
    }
    fifos = (fifo_meta / "meta_data.pkl", fifo_image / "original_image.png")
    return ["cat/a_good", "dog/g_good"], bad, fifos


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")
def test_hostile_dragbench_samples_fail_alone_and_the_good_ones_convert(tmp_path, capsys):
    good, bad, fifos = _hostile_dragbench(tmp_path / "src")
    out = tmp_path / "out"
    args = _parser().parse_args(["convert", "dragbench", str(tmp_path / "src"), "-o", str(out)])
    status = _run_with_timeout(lambda: args.run(args), unblock=fifos)

    assert status == EXIT_SOME_FAILED
    captured = capsys.readouterr()
    assert captured.out.count("\n") == 1 and "converted 2 of 7 samples" in captured.out
    assert f"5 failed, listed in {out / 'dragbench' / 'failed.csv'}" in captured.out
    lines = captured.err.splitlines()
    assert [line.split(":")[0] for line in lines] == [f"failed {name}" for name in bad]
    rows = _failed_rows(out / "dragbench")
    assert [name for name, _ in rows] == list(bad)
    for (name, reason), line in zip(rows, lines, strict=True):
        assert bad[name] in reason and line == f"failed {name}: {reason}"
    for name in good:
        assert len(load_instructions(out / "dragbench" / name / "instructions.json").operations) == 1
    for name in bad:
        assert not (out / "dragbench" / name).exists()
    assert _leftovers(out) == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")
def test_hostile_drag100_samples_fail_alone_and_the_good_ones_convert(tmp_path):
    src = tmp_path / "src"
    _write_drag100_sample(src / "a_good", [[1, 1], [5, 5]])
    _write_drag100_sample(src / "b_nested", [])
    (src / "b_nested" / "points.json").write_text('{"points": ' + "[" * 10_000 + "]" * 10_000 + "}")
    _write_drag100_sample(src / "c_huge_int", [[1, 10**399], [5, 5]])
    _write_drag100_sample(src / "d_many_digits", [])
    (src / "d_many_digits" / "points.json").write_text('{"points": [[' + "7" * 5000 + ", 1], [5, 5]]}")
    _write_drag100_sample(src / "e_fifo", [[1, 1], [5, 5]])
    (src / "e_fifo" / "points.json").unlink()
    os.mkfifo(src / "e_fifo" / "points.json")
    _write_drag100_sample(src / "f_fifo_mask", [[1, 1], [5, 5]])
    (src / "f_fifo_mask" / "mask.png").unlink()
    os.mkfifo(src / "f_fifo_mask" / "mask.png")
    _write_drag100_sample(src / "g_good", [[2, 2], [6, 6]])
    fifos = (src / "e_fifo" / "points.json", src / "f_fifo_mask" / "mask.png")

    report = _run_with_timeout(lambda: convert_drag100(src, tmp_path / "out"), unblock=fifos)

    assert [p.parent.name for p in report.converted] == ["a_good", "g_good"]
    reasons = dict(_failed_rows(tmp_path / "out" / "drag100"))
    assert reasons == dict(report.failed)
    assert reasons["b_nested"] == "points.json: not valid JSON: nested too deeply"
    assert "got [1, <integer of about 400 digits>]" in reasons["c_huge_int"]
    assert "points.json: not valid JSON: Exceeds the limit (4300 digits)" in reasons["d_many_digits"]
    assert reasons["e_fifo"] == "points: 'points.json' is a named pipe (FIFO), not a regular file"
    assert reasons["f_fifo_mask"] == "mask: 'mask.png' is a named pipe (FIFO), not a regular file"
    assert all("\n" not in reason for reason in reasons.values())
    assert sorted(p.name for p in (tmp_path / "out" / "drag100").iterdir()) == ["a_good", "failed.csv", "g_good"]
    assert _leftovers(tmp_path / "out") == []


def test_an_unforeseen_exception_fails_its_sample_only(tmp_path, monkeypatch):
    _write_drag100_sample(tmp_path / "src" / "a", [[1, 1], [5, 5]])
    _write_drag100_sample(tmp_path / "src" / "b", [[2, 2], [6, 6]])
    build = conversion_module.build_request

    def build_or_fail(image, editable, points, prompt, radius):
        if points[0] == [1, 1]:
            raise ZeroDivisionError("something\nunforeseen")
        return build(image, editable, points, prompt, radius)

    monkeypatch.setattr(conversion_module, "build_request", build_or_fail)
    report = convert_drag100(tmp_path / "src", tmp_path / "out")
    assert report.failed == [("a", "unexpected ZeroDivisionError: something unforeseen")]
    assert [p.parent.name for p in report.converted] == ["b"]


def test_a_write_that_fails_leaves_no_partial_sample_folder(tmp_path, monkeypatch, capsys):
    for name in ("a", "b", "c"):
        _write_drag100_sample(tmp_path / "src" / name, [[1, 1], [5, 5]])
    out = tmp_path / "out"
    convert_drag100(tmp_path / "src", out)  # an earlier, complete conversion of every sample
    before = {p: p.read_bytes() for p in (out / "drag100" / "b").iterdir()}
    _write_drag100_sample(tmp_path / "src" / "b", [[2, 2], [9, 9], [20, 20], [25, 25]])
    save = samples_module.save_instructions

    def save_then_fail(request, path):
        save(request, path)
        if len(request.operations) == 2:  # sample b, after its PNGs and JSON are in the staging folder
            raise OSError(28, "No space left on device", str(path))
        return path

    monkeypatch.setattr(samples_module, "save_instructions", save_then_fail)
    args = _parser().parse_args(["convert", "drag100", str(tmp_path / "src"), "-o", str(out)])
    assert args.run(args) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in (out / "drag100" / "b").iterdir()} == before  # the earlier conversion
    assert _leftovers(out) == []
    assert (out / "drag100" / "failed.csv").is_file()


def test_an_interrupt_keeps_the_finished_samples_and_leaves_no_partial_folder(tmp_path, monkeypatch):
    for name in ("a", "b", "c"):
        _write_drag100_sample(tmp_path / "src" / name, [[1, 1], [5, 5]])
    _write_drag100_sample(tmp_path / "src" / "a0", [[1, 1]])  # fails before the interrupt
    written = []
    write_text = samples_module.write_text_atomic

    def interrupt_on_second_sample(path, text):
        if path.name == "conversion.json" and written:
            raise KeyboardInterrupt
        written.append(path)
        return write_text(path, text)

    monkeypatch.setattr(samples_module, "write_text_atomic", interrupt_on_second_sample)
    with pytest.raises(KeyboardInterrupt):
        convert_drag100(tmp_path / "src", tmp_path / "out")
    out = tmp_path / "out" / "drag100"
    assert load_instructions(out / "a" / "instructions.json").operations
    assert not (out / "b").exists() and not (out / "c").exists()
    assert _leftovers(tmp_path / "out") == []
    assert [name for name, _ in _failed_rows(out)] == ["a0"]


def test_a_folder_holding_other_files_is_not_replaced(tmp_path):
    _write_drag100_sample(tmp_path / "src" / "a", [[1, 1], [5, 5]])
    _write_drag100_sample(tmp_path / "src" / "b", [[1, 1], [5, 5]])
    mine = tmp_path / "out" / "drag100" / "a"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    report = convert_drag100(tmp_path / "src", tmp_path / "out")
    assert [p.parent.name for p in report.converted] == ["b"]
    assert report.failed == [("a", f"{mine}: holds files this converter did not write (notes.txt); not replaced")]
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_the_failure_list_is_rewritten_by_each_run(tmp_path):
    _write_drag100_sample(tmp_path / "src" / "a", [[1, 1], [5, 5]])
    _write_drag100_sample(tmp_path / "src" / "b", [[1, 1]])
    convert_drag100(tmp_path / "src", tmp_path / "out")
    assert [name for name, _ in _failed_rows(tmp_path / "out" / "drag100")] == ["b"]
    _write_drag100_sample(tmp_path / "src" / "b", [[1, 1], [3, 3]])
    report = convert_drag100(tmp_path / "src", tmp_path / "out")
    assert len(report.converted) == 2 and _failed_rows(tmp_path / "out" / "drag100") == []


def test_every_sample_failing_is_bad_input(tmp_path, capsys):
    _write_drag100_sample(tmp_path / "src" / "a", [[1, 1]])
    args = _parser().parse_args(["convert", "drag100", str(tmp_path / "src"), "-o", str(tmp_path / "out")])
    assert args.run(args) == 2
    assert "converted 0 of 1 samples" in capsys.readouterr().out
    assert [name for name, _ in _failed_rows(tmp_path / "out" / "drag100")] == ["a"]


def test_a_sample_name_that_is_not_printable_stays_on_one_line(tmp_path, capsys):
    _write_drag100_sample(tmp_path / "src" / "new\nline", [[1, 1]])
    _write_drag100_sample(tmp_path / "src" / "ok", [[1, 1], [5, 5]])
    args = _parser().parse_args(["convert", "drag100", str(tmp_path / "src"), "-o", str(tmp_path / "out")])
    assert args.run(args) == EXIT_SOME_FAILED
    expected = "failed 'new\\nline': points: 1 points is an odd number; expected handle, target pairs\n"
    assert capsys.readouterr().err == expected
