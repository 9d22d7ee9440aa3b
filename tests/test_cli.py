"""``dragnext edit`` in-process on the tiny SD model, and every kind of bad input it must refuse up front."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dragnext.cli import main
from dragnext.instructions import DragRequest, make_operation, save_instructions

HEIGHT, WIDTH = 30, 42
SMALL_FLAGS = ["--steps", "6", "--strength", "0.5", "--pbsi-timesteps", "2", "--iterations", "2",
               "--set", "lora_steps=1", "--set", "feature_blocks=up_blocks.0,up_blocks.1",
               "--set", "mutual_attention_start_layer=2", "--quiet"]


def box(rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[rows, cols] = True
    return mask


def write_instructions(folder: Path) -> Path:
    """A valid file: translate + rotate on a 42 x 30 image with an editable mask (region PNGs beside it)."""
    image = np.random.default_rng(11).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    operations = (
        make_operation("translate", box(slice(5, 12), slice(5, 12)), (8, 8), (14, 10)),
        make_operation("rotate", box(slice(15, 25), slice(24, 34)), (33, 20), (29, 25), center=(29, 20)),
    )
    request = DragRequest(image=image, operations=operations, editable_mask=box(slice(2, 28), slice(2, 37)))
    return save_instructions(request, folder / "instructions.json")


@pytest.fixture
def instructions(tmp_path: Path) -> Path:
    return write_instructions(tmp_path / "request")


@pytest.mark.slow
def test_edit_writes_the_output_and_the_preview(tiny_sd, instructions, out_dir, capsys):
    output, preview = out_dir / "edited.png", out_dir / "preview.png"
    status = main(["edit", str(instructions), "-o", str(output), "--preview", str(preview),
                   "--model", str(tiny_sd.folder), *SMALL_FLAGS])
    assert status == 0, capsys.readouterr().err
    assert sorted(p.name for p in out_dir.iterdir()) == ["edited.png", "preview.png"]  # no .partial left
    with Image.open(output) as picture:
        assert picture.format == "PNG" and picture.size == (WIDTH, HEIGHT)
        edited = np.asarray(picture.convert("RGB"))
    with Image.open(preview) as picture:
        assert picture.format == "PNG" and picture.width > WIDTH and picture.height >= HEIGHT
    source = np.asarray(Image.open(instructions.parent / "image.png").convert("RGB"))
    editable = np.asarray(Image.open(instructions.parent / "editable.png")) > 127
    assert np.array_equal(edited[~editable], source[~editable])
    assert not np.array_equal(edited, source)


# ------------------------------------------------------------------------------------------ bad input

def _set(doc: dict, path: tuple, value) -> None:
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


def edit_json(path: tuple, value) -> Callable[[Path, dict], None]:
    return lambda folder, doc: _set(doc, path, value)


def delete_key(path: tuple) -> Callable[[Path, dict], None]:
    def change(folder: Path, doc: dict) -> None:
        target = doc
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return change


def write_file(name: str, write: Callable[[Path], None], path: tuple) -> Callable[[Path, dict], None]:
    def change(folder: Path, doc: dict) -> None:
        write(folder / name)
        _set(doc, path, name)

    return change


def mask_png(height: int, width: int, value: int) -> Callable[[Path], None]:
    return lambda path: Image.fromarray(np.full((height, width), value, dtype=np.uint8)).save(path)


def copy_center_to_handle(folder: Path, doc: dict) -> None:
    doc["operations"][1]["handle"] = list(doc["operations"][1]["center"])


# (id, change to the instruction folder/JSON, extra argv, text the one-line message must contain)
BAD_INPUTS = [
    ("missing-image", edit_json(("image",), "missing.png"), [], "image: 'missing.png' does not exist"),
    ("image-not-an-image", write_file("fake.png", lambda p: p.write_text("not a picture"), ("image",)), [],
     "image: 'fake.png' is not an image"),
    ("region-other-size", write_file("small.png", mask_png(20, 20, 255), ("operations", 0, "region")), [],
     "operations[0].region: mask is 20x20 but the image is 42x30"),
    ("empty-region", write_file("empty.png", mask_png(HEIGHT, WIDTH, 0), ("operations", 0, "region")), [],
     "operations[0].region: mask is empty"),
    ("point-outside", edit_json(("operations", 0, "handle"), [100, 5]), [], "operations[0].handle"),
    ("handle-equals-target", edit_json(("operations", 0, "target"), [8, 8]), [], "operations[0].target"),
    ("unknown-type", edit_json(("operations", 0, "type"), "slide"), [], "operations[0].type"),
    ("unknown-key", edit_json(("colour",), "red"), [], "'colour'"),
    ("unknown-operation-key", edit_json(("operations", 0, "angle"), 30), [], "operations[0]: unknown key 'angle'"),
    ("rotate-without-center", delete_key(("operations", 1, "center")), [], "operations[1].center"),
    ("handle-on-center", copy_center_to_handle, [], "operations[1].handle"),
    ("non-numeric-coordinate", edit_json(("operations", 0, "handle"), ["8", 8]), [], "operations[0].handle"),
    ("zero-operations", edit_json(("operations",), []), [], "operations"),
    ("output-folder-missing", None, ["-o", "{tmp}/no/such/folder/edited.png"], "-o/--output"),
    ("preview-folder-missing", None, ["--preview", "{tmp}/nowhere/preview.png"], "--preview"),
    ("bad-set-key", None, ["--set", "colour=red"], "--set"),
    ("bad-set-value", None, ["--set", "iterations=many"], "--set iterations"),
]


@pytest.mark.parametrize(("change", "extra", "expected"), [case[1:] for case in BAD_INPUTS],
                         ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tiny_sd, instructions, out_dir, tmp_path, capsys,
                                                            change, extra, expected):
    if change is not None:
        doc = json.loads(instructions.read_text())
        change(instructions.parent, doc)
        instructions.write_text(json.dumps(doc))
    output = out_dir / "edited.png"
    argv = ["edit", str(instructions), "-o", str(output), "--model", str(tiny_sd.folder), *SMALL_FLAGS]
    argv += [arg.format(tmp=tmp_path) for arg in extra]
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dragnext: error: ")
    assert expected in lines[0]
    assert not output.exists()
    assert list(out_dir.iterdir()) == []


def test_a_file_that_is_not_json_exits_2(tiny_sd, tmp_path, out_dir, capsys):
    path = tmp_path / "instructions.json"
    path.write_text("{'image': 'image.png',")
    status = main(["edit", str(path), "-o", str(out_dir / "edited.png"), "--model", str(tiny_sd.folder), "--quiet"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("dragnext: error: ")
    assert "is not valid JSON" in err and "instructions.json" in err
    assert list(out_dir.iterdir()) == []


def test_validation_runs_before_any_model_is_resolved(tmp_path):
    """A bad file with a hub id that cannot be fetched: refused at once, without even importing torch."""
    folder = tmp_path / "request"
    path = write_instructions(folder)
    doc = json.loads(path.read_text())
    doc["operations"][0]["handle"] = [100, 5]
    path.write_text(json.dumps(doc))
    output = tmp_path / "edited.png"
    code = (
        "import sys\n"
        "from dragnext.cli import main\n"
        f"status = main(['edit', {str(path)!r}, '-o', {str(output)!r}, '--model', 'some-org/some-model'])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'diffusers' not in sys.modules, 'diffusers was imported'\n"
        "sys.exit(status)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # if the order ever breaks, fail fast rather than go online
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    seconds = time.monotonic() - start
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("dragnext: error: operations[0].handle: ")
    assert done.stderr.count("\n") == 1
    assert seconds < 3.0, f"refusing a bad file took {seconds:.1f} s"
    assert not output.exists()


def test_missing_model_folder_exits_1_without_traceback(instructions, out_dir, capsys):
    output = out_dir / "edited.png"
    status = main(["edit", str(instructions), "-o", str(output), "--model", "/nonexistent/folder", "--quiet"])
    err = capsys.readouterr().err
    assert status == 1, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dragnext: error: ") and "/nonexistent/folder" in lines[0]
    assert not output.exists()


def test_a_bad_setting_is_refused_before_the_model_is_resolved(instructions, out_dir, capsys):
    status = main(["edit", str(instructions), "-o", str(out_dir / "edited.png"), "--model", "/nonexistent/folder",
                   "--strength", "2", "--quiet"])
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.startswith("dragnext: error: ") and "strength" in err


def test_a_feature_block_the_model_lacks_exits_2(instructions, out_dir, tiny_sd, capsys):
    output = out_dir / "edited.png"
    status = main(["edit", str(instructions), "-o", str(output), "--model", str(tiny_sd.folder),
                   "--set", "feature_blocks=up_blocks.9", "--quiet"])
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.startswith("dragnext: error: feature_blocks") and len(err.strip().splitlines()) == 1
    assert not output.exists()


# ------------------------------------------------------------------------------------------------ batch edits


def test_a_batch_edits_each_file_into_the_folder_and_reports_what_it_reused(tiny_sd, tmp_path, capsys):
    first = write_instructions(tmp_path / "one")
    second = tmp_path / "one" / "again.json"  # the same picture, other points
    document = json.loads(first.read_text())
    document["operations"][0]["target"] = [12, 12]
    second.write_text(json.dumps(document))
    other = write_instructions(tmp_path / "two")
    other = other.rename(other.with_name("other.json"))
    out = tmp_path / "out"
    status = main(["edit", str(first), str(second), str(other), "-o", f"{out}/", "--previews",
                   "--model", str(tiny_sd.folder), *SMALL_FLAGS[:-1]])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert sorted(p.name for p in out.iterdir()) == ["again-preview.png", "again.png", "failed.csv",
                                                     "instructions-preview.png", "instructions.png",
                                                     "other-preview.png", "other.png"]
    assert f"reused the inversion and lora of {first}" in captured.out
    assert "3 files edited" in captured.out


def test_a_batch_goes_on_past_a_file_that_fails_and_exits_3(tiny_sd, tmp_path, capsys):
    good = write_instructions(tmp_path / "good")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    out = tmp_path / "out"
    status = main(["edit", str(tmp_path / "*" / "*.json"), str(broken), "-o", str(out), "--model",
                   str(tiny_sd.folder), *SMALL_FLAGS])
    captured = capsys.readouterr()
    assert status == 3
    assert f"dragnext: {str(broken)!r}:" in captured.err and "1 failed" in captured.err
    assert (out / f"{good.stem}.png").is_file()
    assert str(broken) in (out / "failed.csv").read_text()


@pytest.mark.parametrize("extra, message", [
    (["--preview", "p.png"], "--preview: a batch writes one preview per file; use --previews"),
    (["-o", "FILE"], "is a file; a batch writes into a folder"),
])
def test_a_batch_refuses_what_cannot_work_before_loading_the_model(tmp_path, capsys, extra, message):
    one, two = write_instructions(tmp_path / "a"), write_instructions(tmp_path / "b")
    two = two.rename(two.with_name("b.json"))
    (tmp_path / "FILE").write_text("")
    extra = [str(tmp_path / "FILE") if item == "FILE" else item for item in extra]
    output = [] if "-o" in extra else ["-o", str(tmp_path / "out")]
    status = main(["edit", str(one), str(two), *output, *extra, "--model", "/nonexistent/folder", "--quiet"])
    assert status == 2 and message in capsys.readouterr().err


def test_previews_are_for_a_batch(instructions, out_dir, capsys):
    status = main(["edit", str(instructions), "-o", str(out_dir / "x.png"), "--previews", "--quiet"])
    assert status == 2 and "--previews: only for a batch" in capsys.readouterr().err
