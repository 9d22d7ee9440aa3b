"""Where ``dragnext edit`` and ``dragnext demo`` write: checked before any model loads, never an input file,
output and preview written together or not at all, and no folder created by a command that is refused."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dragnext.cli import common, main, outputs
from dragnext.cli.common import CliError
from dragnext.config import EditConfig
from dragnext.demo import example_edits, run_demo
from dragnext.editor import EditResult, PassCounts
from dragnext.instructions import save_instructions

# A model that does not exist: a command that got as far as loading it would exit 1, not 2.
NO_MODEL = "/nonexistent/model/folder"
FEW_STEPS = ["--steps", "4", "--pbsi-timesteps", "1", "--iterations", "1"]  # a bundled-model edit in a few seconds


def write_request(folder: Path, name: str = "instructions.json") -> Path:
    """A bundled-model scene (64 x 64) with a region mask and an editable mask: four input files."""
    request = example_edits()[0].request
    editable = np.ones(request.image.shape[:2], dtype=bool)
    editable[:2] = False
    return save_instructions(dataclasses.replace(request, editable_mask=editable), folder / name)


@pytest.fixture
def instructions(tmp_path: Path) -> Path:
    return write_request(tmp_path / "request")


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_refused(capsys, status: int, expected: str) -> None:
    err = capsys.readouterr().err
    assert status == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dragnext: error: ")
    assert expected in lines[0], lines[0]


# (id, output arguments with {out}, {req} and {tmp} filled in, text the one-line message must contain)
BAD_OUTPUTS = [
    ("suffix-jpg", ["-o", "{out}/edited.jpg"], "-o/--output: '{out}/edited.jpg' must end in .png"),
    ("no-suffix", ["-o", "{out}/edited"], "must end in .png"),
    ("folder-missing", ["-o", "{tmp}/no/such/edited.png"], "-o/--output: folder '{tmp}/no/such' does not exist"),
    ("is-a-folder", ["-o", "{out}/folder.png"], "is a folder"),
    ("a-fifo", ["-o", "{out}/fifo.png"], "exists and is not a regular file"),
    ("the-image", ["-o", "{req}/image.png"], "-o/--output: '{req}/image.png' is an input of this edit"),
    ("the-region", ["-o", "{req}/region_0.png"], "is an input of this edit"),
    ("the-editable-mask", ["-o", "{req}/editable.png"], "is an input of this edit"),
    ("the-image-spelled-otherwise", ["-o", "{req}/../request/./image.png"], "is an input of this edit"),
    ("preview-is-the-image", ["-o", "{out}/edited.png", "--preview", "{req}/image.png"],
     "--preview: '{req}/image.png' is an input of this edit"),
    ("preview-is-the-output", ["-o", "{out}/edited.png", "--preview", "{out}/./edited.png"],
     "--preview: must differ from the output path"),
    ("preview-suffix", ["-o", "{out}/edited.png", "--preview", "{out}/preview.gif"], "--preview: "),
    ("preview-folder-missing", ["-o", "{out}/edited.png", "--preview", "{tmp}/nowhere/preview.png"], "--preview: "),
]
if sys.platform.startswith("linux"):  # root may write anywhere by the permission bits, yet nothing into /proc
    BAD_OUTPUTS.append(("proc", ["-o", "/proc/edited.png"], "-o/--output: cannot write in folder '/proc'"))


@pytest.mark.parametrize(("arguments", "expected"), [case[1:] for case in BAD_OUTPUTS],
                         ids=[case[0] for case in BAD_OUTPUTS])
def test_a_bad_output_exits_2_before_the_model_loads_and_writes_nothing(instructions, out_dir, tmp_path, capsys,
                                                                       arguments, expected):
    (out_dir / "folder.png").mkdir()
    os.mkfifo(out_dir / "fifo.png")
    before_inputs, before_outputs = snapshot(instructions.parent), sorted(out_dir.iterdir())
    places = {"out": out_dir, "req": instructions.parent, "tmp": tmp_path}
    argv = [argument.format(**places) for argument in arguments]
    status = main(["edit", str(instructions), *argv, "--model", NO_MODEL, "--quiet"])
    assert_refused(capsys, status, expected.format(**places))
    assert snapshot(instructions.parent) == before_inputs
    assert sorted(out_dir.iterdir()) == before_outputs  # no output, no preview, no staged .partial file
    assert not (tmp_path / "no").exists() and not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("link", [os.symlink, os.link], ids=["symbolic", "hard"])
def test_an_output_linked_to_the_input_image_is_refused(instructions, out_dir, capsys, link):
    image = instructions.parent / "image.png"
    link(image, out_dir / "edited.png")
    before = image.read_bytes()
    status = main(["edit", str(instructions), "-o", str(out_dir / "edited.png"), "--model", NO_MODEL, "--quiet"])
    assert_refused(capsys, status, "is an input of this edit")
    assert image.read_bytes() == before


def test_the_instruction_file_itself_is_refused_as_output(tmp_path, capsys):
    """An instruction file may have any name; a .png one must not be overwritten by its own edit."""
    instructions = write_request(tmp_path / "request", name="request.png")
    before = instructions.read_bytes()
    status = main(["edit", str(instructions), "-o", str(instructions), "--model", NO_MODEL, "--quiet"])
    assert_refused(capsys, status, "is an input of this edit")
    assert instructions.read_bytes() == before


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write in any folder")
def test_a_read_only_folder_is_refused(instructions, tmp_path, capsys):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        status = main(["edit", str(instructions), "-o", str(folder / "edited.png"), "--model", NO_MODEL, "--quiet"])
    finally:
        folder.chmod(0o700)
    assert_refused(capsys, status, "cannot write in folder")
    assert list(folder.iterdir()) == []


# ------------------------------------------------------------------------------------------ written together


def pictures(folder: Path) -> dict[Path, np.ndarray]:
    return {folder / "edited.png": np.full((4, 5, 3), 10, dtype=np.uint8),
            folder / "preview.png": np.full((4, 9, 3), 20, dtype=np.uint8)}


def fail_when_moving_to(name: str, monkeypatch) -> None:
    real_replace = os.replace

    def replace(source, destination):
        if Path(destination).name == name:
            raise OSError(28, "No space left on device", str(destination))
        return real_replace(source, destination)

    monkeypatch.setattr(outputs.os, "replace", replace)


def test_output_and_preview_are_both_written(out_dir):
    outputs.write_pngs_together(pictures(out_dir))
    assert sorted(p.name for p in out_dir.iterdir()) == ["edited.png", "preview.png"]
    assert np.asarray(Image.open(out_dir / "preview.png")).shape == (4, 9, 3)


def test_when_the_second_move_fails_the_first_is_undone(out_dir, monkeypatch):
    fail_when_moving_to("preview.png", monkeypatch)
    with pytest.raises(OSError, match="No space left"):
        outputs.write_pngs_together(pictures(out_dir))
    assert list(out_dir.iterdir()) == []  # no output, no staged or kept files


def test_when_the_second_move_fails_a_previous_output_is_restored(out_dir, monkeypatch):
    (out_dir / "edited.png").write_bytes(b"the previous edit")
    fail_when_moving_to("preview.png", monkeypatch)
    with pytest.raises(OSError):
        outputs.write_pngs_together(pictures(out_dir))
    assert [p.name for p in out_dir.iterdir()] == ["edited.png"]
    assert (out_dir / "edited.png").read_bytes() == b"the previous edit"


def test_when_staging_the_second_fails_nothing_is_written(out_dir, tmp_path):
    chosen = pictures(out_dir)
    preview = next(p for p in chosen if p.name == "preview.png")
    chosen[tmp_path / "gone" / "preview.png"] = chosen.pop(preview)
    with pytest.raises(OSError):
        outputs.write_pngs_together(chosen)
    assert list(out_dir.iterdir()) == []


def test_an_edit_whose_preview_cannot_be_written_leaves_no_output(instructions, out_dir, monkeypatch, capsys):
    """End to end on the bundled model: a failing preview must not leave the output written."""
    output, preview = out_dir / "edited.png", out_dir / "preview.png"
    fail_when_moving_to("preview.png", monkeypatch)
    status = main(["edit", str(instructions), "-o", str(output), "--preview", str(preview), "--model", "bundled",
                   "--device", "cpu", *FEW_STEPS, "--quiet"])
    err = capsys.readouterr().err
    assert status == 1, err
    assert len(err.strip().splitlines()) == 1 and "could not write the output" in err and "nothing was written" in err
    assert list(out_dir.iterdir()) == []


# ------------------------------------------------------------------------------------------ demo


def test_demo_refuses_a_bad_suffix_without_creating_folders(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status = main(["demo", "-o", "new/sub/x.jpg", "--quiet"])
    assert_refused(capsys, status, "-o/--output: 'new/sub/x.jpg' must end in .png")
    assert list(tmp_path.iterdir()) == []


def test_demo_refuses_a_folder_under_a_file(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("a file")
    status = main(["demo", "-o", str(tmp_path / "notes.txt" / "sub" / "demo.png"), "--quiet"])
    assert_refused(capsys, status, f"folder '{tmp_path / 'notes.txt'}' is not a folder")


def test_demo_creates_no_folder_when_it_fails_later(tmp_path, monkeypatch, capsys):
    """A missing folder is accepted (the README's out/demo.png from a fresh clone) but created only to write."""
    def no_model(*args, **kwargs):
        raise CliError("the model could not be loaded")

    monkeypatch.setattr(common, "load_model", no_model)
    status = main(["demo", "-o", str(tmp_path / "out" / "demo.png"), "--quiet"])
    assert status == 1, capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_run_demo_checks_the_suffix_before_editing():
    with pytest.raises(ValueError, match="must end in .png"):
        run_demo(object(), Path("demo.jpg"))  # no backbone needed: refused before any edit


def test_run_demo_creates_the_missing_folder_and_writes(tmp_path, monkeypatch):
    import dragnext.demo

    class CopyingEditor:  # the edits are not what this test is about: the output is the input
        def __init__(self, backbone):
            pass

        def __call__(self, request, progress=None):
            return EditResult(image=request.image, config=EditConfig(), timings={"edit": 0.0}, passes=PassCounts())

    monkeypatch.setattr(dragnext.demo, "DragEditor", CopyingEditor)
    output = tmp_path / "out" / "sub" / "demo.png"
    report = run_demo(object(), output, examples=(("translate", 3),))
    assert report.startswith(f"wrote {output}")
    assert sorted(p.name for p in output.parent.iterdir()) == ["demo.png"]
    with Image.open(output) as picture:
        assert picture.format == "PNG"
