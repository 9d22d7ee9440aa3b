"""Batch edits (batch.py): one model, many instruction files, shared inversions, failures recorded."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_editor_sd import SMALL, box, random_image

from dragnext.batch import FAILED, edit_files, instruction_files
from dragnext.editor import DragEditor
from dragnext.instructions import DragRequest, load_instructions, make_operation, save_instructions
from dragnext.limits import InputError


def write_request(path: Path, image: np.ndarray, dx: int) -> Path:
    operation = make_operation("translate", box(32, 32, slice(8, 16), slice(8, 16)), (12, 12), (12 + dx, 12))
    return save_instructions(DragRequest(image=image, operations=(operation,)), path)


@pytest.fixture
def three_files(tmp_path: Path) -> list[Path]:
    """Two edits of one picture (in two folders) and one of another picture."""
    shared = random_image(32, 32, seed=601)
    return [write_request(tmp_path / "a" / "first.json", shared, 6),
            write_request(tmp_path / "b" / "second.json", shared, 3),
            write_request(tmp_path / "c" / "third.json", random_image(32, 32, seed=602), 4)]


def test_a_batch_writes_one_output_per_file_and_reuses_a_shared_pictures_inversion(tiny_sd, three_files, tmp_path):
    out = tmp_path / "out"
    seen = []
    report = edit_files(tiny_sd.backbone, three_files, out, SMALL, previews=True, on_file=seen.append)
    assert [o.file for o in seen] == three_files and not report.failed
    assert sorted(p.name for p in out.iterdir()) == [FAILED, "first-preview.png", "first.png", "second-preview.png",
                                                     "second.png", "third-preview.png", "third.png"]
    first, second, third = (o.result for o in report.outcomes)
    assert first.reused == () and third.reused == ()
    assert second.reused == ("inversion", "lora") and report.outcomes[1].shared_with == three_files[0]
    assert first.passes.forward - second.passes.forward == SMALL.inversion_steps + SMALL.lora_steps
    # the reused edit is the edit a fresh editor makes of that file
    fresh = DragEditor(tiny_sd.backbone, SMALL)(load_instructions(three_files[1]))
    np.testing.assert_array_equal(second.image, fresh.image)
    assert list(csv.reader((out / FAILED).open())) == [["file", "reason"]]


def test_a_file_that_fails_is_recorded_and_the_run_goes_on(tiny_sd, three_files, tmp_path):
    (three_files[0].parent / "image.png").unlink()  # the first file's picture is gone
    out = tmp_path / "out"
    report = edit_files(tiny_sd.backbone, three_files, out, SMALL)
    assert [o.output is None for o in report.outcomes] == [True, False, False]
    rows = list(csv.DictReader((out / FAILED).open()))
    assert [Path(r["file"]) for r in rows] == [three_files[0]] and "image.png" in rows[0]["reason"]
    assert (out / "second.png").is_file() and (out / "third.png").is_file() and not (out / "first.png").exists()


def test_an_output_that_would_overwrite_an_input_is_refused(tiny_sd, tmp_path):
    picture = random_image(32, 32, seed=603)
    json_path = write_request(tmp_path / "image.json", picture, 5)  # its picture is tmp_path/image.png
    report = edit_files(tiny_sd.backbone, [json_path], tmp_path, SMALL)
    assert "a file this edit reads" in report.failed[0].reason
    with Image.open(tmp_path / "image.png") as kept:
        np.testing.assert_array_equal(np.asarray(kept.convert("RGB")), picture)


def test_instruction_files_from_folders_globs_and_paths(three_files, tmp_path):
    a, b, c = three_files
    assert instruction_files([str(a.parent), str(tmp_path / "*" / "second.json"), str(c), str(a)]) == [a, b, c]
    with pytest.raises(InputError, match="no file matches"):
        instruction_files([str(tmp_path / "*.nothing")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no instruction files"):
        instruction_files([str(tmp_path / "empty")])
    twin = write_request(tmp_path / "d" / "first.json", random_image(32, 32, seed=604), 2)
    with pytest.raises(InputError, match="both be written as 'first.png'"):
        instruction_files([str(a), str(twin)])
