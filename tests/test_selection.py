"""Region from clicks (selection.py): known answers on drawn pictures, and the synthetic scenes' measurement."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from dragnext.instructions import InstructionError
from dragnext.metrics import iou
from dragnext.selection import select_region

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from measure_selection import clicks_on_shapes  # noqa: E402


def two_squares() -> np.ndarray:
    """A grey gradient with a red square (rows/cols 8-19) and a blue one (rows 8-19, cols 40-51)."""
    image = np.repeat(np.linspace(90, 160, 64)[None, :, None], 64, axis=0).repeat(3, axis=2)
    image[8:20, 8:20] = (220, 30, 30)
    image[8:20, 40:52] = (30, 30, 220)
    return np.round(image).astype(np.uint8)


def square(rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros((64, 64), dtype=bool)
    mask[rows, cols] = True
    return mask


def test_a_click_selects_the_shape_under_it_and_nothing_else():
    mask = select_region(two_squares(), [(12, 15)])
    assert np.array_equal(mask, square(slice(8, 20), slice(8, 20)))


def test_two_clicks_take_both_shapes_and_an_unclick_takes_one_away():
    both = select_region(two_squares(), [(12, 15), (45, 10)])
    assert np.array_equal(both, square(slice(8, 20), slice(8, 20)) | square(slice(8, 20), slice(40, 52)))
    one = select_region(two_squares(), [(12, 15), (45, 10)], unclicks=[(41, 19)])
    assert np.array_equal(one, square(slice(8, 20), slice(8, 20)))


def test_holes_come_with_the_object():
    image = two_squares()
    image[12:15, 12:15] = (250, 250, 250)  # a white detail inside the red square
    assert np.array_equal(select_region(image, [(9, 9)]), square(slice(8, 20), slice(8, 20)))


def test_an_antialiased_edge_is_split_where_it_is_half_covered():
    image = two_squares()
    red, grey = np.array([220, 30, 30]), image[30, 20].astype(float)
    image[8:20, 20] = np.round(0.7 * red + 0.3 * grey)  # column 20: 70% covered, belongs to the shape
    image[8:20, 21] = np.round(0.2 * red + 0.8 * grey)  # column 21: 20% covered, does not
    mask = select_region(image, [(12, 15)])
    assert mask[8:20, 20].all() and not mask[:, 21].any()


def test_a_wider_tolerance_takes_similar_neighbours():
    image = two_squares()
    image[8:20, 20:26] = (200, 50, 40)  # a slightly different red next to the square
    narrow = select_region(image, [(12, 15)], tolerance=3)
    wide = select_region(image, [(12, 15)], tolerance=25)
    assert not narrow[:, 22:26].any() and wide[8:20, 20:26].all()


@pytest.mark.parametrize("call, message", [
    (lambda im: select_region(im, []), "at least one click"),
    (lambda im: select_region(im, [(64, 3)]), "click: point (64, 3) lies outside the 64x64 image"),
    (lambda im: select_region(im, [(float("nan"), 3)]), "click: coordinates must be finite numbers"),
    (lambda im: select_region(im, [("a", 3)]), "click: expected [x, y] with two numbers"),
    (lambda im: select_region(im, [(3, 3)], tolerance=float("inf")), "tolerance"),
    (lambda im: select_region(im, [(3, 3)], tolerance=-1), "tolerance"),
    (lambda im: select_region(im, [(12, 15)], unclicks=[(13, 16)]), "take away everything"),
    (lambda im: select_region(im[..., 0], [(3, 3)]), "H x W x 3 uint8"),
])
def test_bad_clicks_and_settings_are_one_line_errors(call, message):
    with pytest.raises(InstructionError, match=None) as caught:
        call(two_squares())
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_click_inside_a_synthetic_shape_selects_it_on_at_least_95_percent_of_scenes():
    # the measurement of scripts/measure_selection.py (issue #12's target), on its default scenes
    cases = clicks_on_shapes(100, 7000)
    scores = np.array([iou(select_region(image, [click]), truth) for image, click, truth in cases])
    assert len(scores) > 150
    assert np.mean(scores >= 0.9) >= 0.95, np.mean(scores >= 0.9)


def test_the_region_command_writes_the_selected_mask(tmp_path, capsys):
    from PIL import Image

    from dragnext.cli import main

    Image.fromarray(two_squares()).save(tmp_path / "picture.png")
    status = main(["region", str(tmp_path / "picture.png"), "--click", "12,15", "--click", "45,10",
                   "--unclick", "41,19", "-o", str(tmp_path / "mask.png")])
    assert status == 0 and "144 pixels" in capsys.readouterr().out
    written = np.asarray(Image.open(tmp_path / "mask.png")) > 127
    assert np.array_equal(written, square(slice(8, 20), slice(8, 20)))


@pytest.mark.parametrize("arguments, message", [
    (["--click", "99,1"], "click: point (99, 1) lies outside the 64x64 image"),
    (["--click", "3,3", "-o", "{tmp}/picture.png"], "is an input"),
    (["--click", "3,3", "-o", "{tmp}/mask.jpg"], "must end in .png"),
    (["--click", "3,3", "--tolerance", "nan"], "tolerance"),
])
def test_the_region_command_refuses_bad_input_in_one_line_and_writes_nothing(tmp_path, capsys, arguments, message):
    from PIL import Image

    from dragnext.cli import main

    Image.fromarray(two_squares()).save(tmp_path / "picture.png")
    arguments = [a.replace("{tmp}", str(tmp_path)) for a in arguments]
    if "-o" not in arguments:
        arguments += ["-o", str(tmp_path / "mask.png")]
    assert main(["region", str(tmp_path / "picture.png"), *arguments]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["picture.png"]
