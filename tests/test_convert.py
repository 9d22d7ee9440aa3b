"""Tests for the benchmark converters (DragBench, Drag100 -> instruction folders) and the restricted unpickler.

The round trips over the real data in ``../shared/data`` are skipped when it is absent; the synthetic tests
below them run everywhere. The full Drag100 loop (100 samples, ~20 s) is slow: it runs with ``--runslow``;
the default suite converts every DragBench sample and a subset of Drag100.
"""

from __future__ import annotations

import argparse
import builtins
import json
import math
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dragnext.bench.convert import (
    ALLOWED_GLOBALS,
    ConversionError,
    ConversionReport,
    UnsafePickleError,
    add_convert_parser,
    convert,
    convert_drag100,
    convert_dragbench,
    default_radius,
    find_samples,
    load_dragbench_meta,
)
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


def _runslow(request: pytest.FixtureRequest) -> None:
    if not request.config.getoption("--runslow", default=False):
        pytest.skip("slow: run with --runslow")


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
    assert {name for name, _ in report.skipped} == expected_skips
    assert all("equals the handle" in reason for _, reason in report.skipped)
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
    assert report.skipped == []
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
def test_every_drag100_sample_round_trips(tmp_path, request):
    _runslow(request)
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
    assert len(report.skipped) == 1 and report.skipped[0][0] == "cat/evil"
    assert "refusing to load global" in report.skipped[0][1]
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


def test_allowed_globals_are_the_numpy_array_builders():
    assert set(ALLOWED_GLOBALS) == {
        "numpy.core.multiarray._reconstruct",
        "numpy._core.multiarray._reconstruct",
        "numpy.ndarray",
        "numpy.dtype",
        "numpy.core.numeric._frombuffer",
        "numpy._core.numeric._frombuffer",
    }


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
    with pytest.raises(ConversionError, match="cannot read"):
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


def test_regions_are_discs_clipped_to_the_editable_mask_when_that_leaves_something(tmp_path):
    mask = np.zeros((30, 40), bool)
    mask[:, :20] = True  # left half editable
    points = [[18, 10], [25, 12], [35, 20], [30, 25], [0, 29], [3, 20]]  # straddles, far outside, on the border
    _write_drag100_sample(tmp_path / "src" / "s", points, mask)
    report = convert_drag100(tmp_path / "src", tmp_path / "out", radius=3)
    assert report.skipped == []
    request = load_instructions(report.converted[0])
    sidecar = json.loads((report.converted[0].parent / "conversion.json").read_text())
    assert sidecar["region"] == {
        "kind": "disc", "radius": 3, "radius_from": "given", "intersected_with_editable": [True, False, True],
    }
    first, second, third = (op.region for op in request.operations)
    assert np.array_equal(first, _disc((30, 40), (18, 10), 3) & mask)
    assert np.array_equal(second, _disc((30, 40), (35, 20), 3))  # disc & mask is empty: the whole disc
    assert np.array_equal(third, _disc((30, 40), (0, 29), 3) & mask)
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
def test_unconvertible_samples_are_reported_and_skipped(tmp_path, points, reason):
    _write_drag100_sample(tmp_path / "src" / "bad", points)
    _write_drag100_sample(tmp_path / "src" / "good", [[0, 0], [39, 29]])  # handle and target on the border
    report = convert_drag100(tmp_path / "src", tmp_path / "out")
    assert [p.parent.name for p in report.converted] == ["good"]
    assert [name for name, _ in report.skipped] == ["bad"]
    assert reason in report.skipped[0][1]
    assert not (tmp_path / "out" / "drag100" / "bad").exists()


def test_broken_files_are_reported_and_skipped(tmp_path):
    _write_drag100_sample(tmp_path / "src" / "size", [[1, 1], [5, 5]], mask=np.ones((10, 10), bool))
    _write_drag100_sample(tmp_path / "src" / "json", [[1, 1], [5, 5]])
    (tmp_path / "src" / "json" / "points.json").write_text("{")
    _write_drag100_sample(tmp_path / "src" / "noimage", [[1, 1], [5, 5]])
    (tmp_path / "src" / "noimage" / "original.jpg").unlink()
    _write_drag100_sample(tmp_path / "src" / "empty", [[1, 1], [5, 5]], mask=np.zeros((30, 40), bool))
    report = convert_drag100(tmp_path / "src", tmp_path / "out")
    reasons = dict(report.skipped)
    assert report.converted == []
    assert "mask is 10x10 but the image is 40x30" in reasons["size"]
    assert "points.json: not valid JSON" in reasons["json"]
    assert "original.jpg: missing" in reasons["noimage"]
    assert "editable_mask: mask is empty" in reasons["empty"]


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
    assert args.run(args) == 0
    captured = capsys.readouterr()
    assert captured.out.count("\n") == 1
    assert "Drag100: converted 1 of 2 samples" in captured.out and "skipped 1: odd" in captured.out
    assert "skipped odd: points: 1 points is an odd number" in captured.err
    assert (tmp_path / "out" / "drag100" / "good" / "instructions.json").exists()

    args = _parser().parse_args(["convert", "dragbench", str(tmp_path / "src"), "-o", str(tmp_path / "out")])
    assert args.run(args) == 2
    assert "dragnext: error:" in capsys.readouterr().err

    args = _parser().parse_args(
        ["convert", "drag100", str(tmp_path / "src"), "-o", str(tmp_path / "o2"), "--radius", "2.5"]
    )
    assert args.run(args) == 0
    assert "radius 2.5 px" in capsys.readouterr().out
    sidecar = json.loads((tmp_path / "o2" / "drag100" / "good" / "conversion.json").read_text())
    assert sidecar["region"]["radius"] == 2.5


def test_report_summary_names_the_default_rule():
    report = ConversionReport(converted=[Path("a")], skipped=[], dataset="dragbench", out=Path("o"))
    assert report.summary() == (
        "DragBench: converted 1 of 1 samples into o (translate of a disc around each handle, "
        "radius max(8, round(0.04 * min(H, W))) px)"
    )
