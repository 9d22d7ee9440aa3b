"""The page's click tools (ui/selecting.py, Session.select): a click selects the shape under it, an unclick takes
it away, painted and erased pixels survive later clicks, and the region reaches "Add operation" as painted."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from scipy import ndimage

from dragnext.metrics import iou
from dragnext.scenes import random_scene, render, visible_mask
from dragnext.selection import DEFAULT_TOLERANCE
from dragnext.ui.coordinates import display_size, layers_to_mask
from dragnext.ui.selecting import MAX_TOLERANCE, SELECT, UNSELECT, check_tolerance
from dragnext.ui.session import Session
from dragnext.ui.uploads import UIError

SIZE = 64
ZOOM = display_size(SIZE, SIZE)[0] // SIZE


def display_click(x: float, y: float) -> list[int]:
    """The display pixel at the centre of image pixel (x, y), as Gradio reports a click on it."""
    return [int(x) * ZOOM + ZOOM // 2, int(y) * ZOOM + ZOOM // 2]


def shapes_to_click(seed: int, count: int = 3):
    """(image, click (x, y), true mask) for shapes at least 60% visible, clicked at a pixel well inside them
    (as ``scripts/measure_selection.py`` does)."""
    scene = random_scene(seed)
    image = np.round(render(scene) * 255).astype(np.uint8)
    found = []
    for index in range(len(scene.shapes)):
        coverage = visible_mask(scene, index)
        truth = coverage >= 0.5
        inside = ndimage.binary_erosion(coverage >= 0.999, iterations=2)
        if truth.sum() < 40 or not inside.any():
            continue
        rows, cols = np.nonzero(inside)
        middle = len(rows) // 2
        found.append((image, (int(cols[middle]), int(rows[middle])), truth))
    return found[:count]


CASES = [case for seed in (7000, 7001, 7002) for case in shapes_to_click(seed)]
SCENE = shapes_to_click(7001)  # three shapes of one scene


def session_of(image: np.ndarray) -> Session:
    session = Session()
    session.load_image(image, "scene")
    return session


@pytest.mark.parametrize("case", range(len(CASES)))
def test_a_click_inside_a_shape_selects_it(case):
    image, click, truth = CASES[case]
    session = session_of(image)
    region, message = session.select(display_click(*click), SELECT, None, DEFAULT_TOLERANCE)
    assert region is not None and iou(region, truth) >= 0.9, f"IoU {iou(region, truth):.3f}"
    assert message.startswith(f"Selected at ({click[0]}, {click[1]}): region {int(region.sum())} px (1 click)")


def test_an_unclick_takes_the_selection_away():
    image, click, truth = CASES[0]
    session = session_of(image)
    region, _ = session.select(display_click(*click), SELECT, None, DEFAULT_TOLERANCE)
    region, message = session.select(display_click(*click), UNSELECT, region, DEFAULT_TOLERANCE)
    assert region is None and "the region is empty" in message
    assert session.selection.clicks == [click] and session.selection.unclicks == [click]


def test_an_unclick_also_takes_away_painted_pixels_of_its_area():
    image, click, truth = CASES[0]
    session = session_of(image)
    region, _ = session.select(display_click(*click), UNSELECT, truth, DEFAULT_TOLERANCE)
    assert region is None or iou(region, truth) < 0.1


@pytest.mark.parametrize("index", [[-1, 5], [5, 10_000], None, [3]])
def test_a_click_outside_the_image_is_a_one_line_message_and_changes_nothing(index):
    image, click, _ = CASES[0]
    session = session_of(image)
    with pytest.raises(UIError) as error:
        session.select(index, SELECT, None, DEFAULT_TOLERANCE)
    assert "\n" not in str(error.value) and ("outside" in str(error.value) or "inside" in str(error.value))
    assert session.selection.clicks == [] and session.selection.selected is None


def test_a_click_after_painting_keeps_the_painted_pixels():
    image, click, truth = CASES[0]
    session = session_of(image)
    painted = np.zeros(truth.shape, bool)
    painted[:4, :4] = True  # a corner painted by hand before the click
    assert not (painted & truth).any()
    region, _ = session.select(display_click(*click), SELECT, painted, DEFAULT_TOLERANCE)
    assert region[painted].all()
    assert iou(region & ~painted, truth) >= 0.9


def test_pixels_erased_from_a_selection_stay_erased_at_the_next_click():
    (image, click, truth), (_, other_click, _), _ = SCENE
    session = session_of(image)
    region, _ = session.select(display_click(*click), SELECT, None, DEFAULT_TOLERANCE)
    erased = region.copy()
    erased[: click[1]] = False  # the brush's eraser took the upper half away
    again, _ = session.select(display_click(*other_click), SELECT, region & ~erased, DEFAULT_TOLERANCE)
    assert not again[erased].any()
    assert again[region & ~erased].all()


def test_clearing_forgets_the_clicks():
    (image, click, truth), (_, other_click, other_truth), _ = SCENE
    session = session_of(image)
    session.select(display_click(*click), SELECT, None, DEFAULT_TOLERANCE)
    session.clear_region()
    assert session.selection.clicks == [] and session.selection.selected is None
    region, _ = session.select(display_click(*other_click), SELECT, None, DEFAULT_TOLERANCE)
    assert not (region & truth & ~other_truth).any()  # the first shape is not selected again


def test_a_selected_region_becomes_the_operation_and_the_next_operation_starts_afresh():
    image, click, truth = CASES[0]
    session = session_of(image)
    region, _ = session.select(display_click(*click), SELECT, None, DEFAULT_TOLERANCE)
    session.click(display_click(*click), "translate")
    session.click(display_click(click[0] + 3, click[1]), "translate")
    operation = session.add_operation("translate", region)
    assert np.array_equal(operation.region, region)
    assert session.selection.clicks == [] and session.selection.selected is None


def test_another_tolerance_recomputes_the_same_clicks():
    image, click, truth = CASES[0]
    session = session_of(image)
    assert session.reselect(None, 5) is None  # no click yet: nothing to redo
    region, _ = session.select(display_click(*click), SELECT, None, DEFAULT_TOLERANCE)
    wide, message = session.reselect(region, MAX_TOLERANCE)
    assert "Selected again at tolerance 50" in message
    assert wide.sum() >= region.sum() and session.selection.clicks == [click]


@pytest.mark.parametrize("value", [-1, MAX_TOLERANCE + 1, float("nan"), "x", None])
def test_a_bad_tolerance_is_a_message(value):
    with pytest.raises(UIError, match="Tolerance"):
        check_tolerance(value)


def test_the_page_puts_a_selection_on_the_editors_layer_and_adds_it(tmp_path):
    """The handlers as a tab calls them: the selection comes back as the region editor's layer, which "Add
    operation" reads like painted strokes."""
    pytest.importorskip("gradio")
    from dragnext.config import BUNDLED
    from dragnext.ui.app import build_app
    from dragnext.ui.runner import EditRunner

    image, click, truth = CASES[0]
    app = build_app(EditRunner(None, BUNDLED, editor=lambda *a, **k: None), examples=[("Scene", image)],
                    workdir=str(tmp_path))
    handlers = {function.name: function.fn for function in app.fns.values()}
    tab = SimpleNamespace(session_hash="tab")
    session = Session()
    handlers["load_example"](session, "translate", tab)
    session_out, editor, view, points, status = handlers["select"](
        session, "Click to select", DEFAULT_TOLERANCE, "translate", None, SimpleNamespace(index=display_click(*click)),
        tab)
    assert status.startswith("Selected at") and isinstance(view, str) and isinstance(points, str)
    (layer,) = editor["layers"]
    assert iou(layers_to_mask(editor, image.shape), truth) >= 0.9
    with pytest.warns(UserWarning, match="Choose Click to select"):  # gr.Warning outside a request
        outputs = handlers["select"](session, "Brush", DEFAULT_TOLERANCE, "translate", editor,
                                     SimpleNamespace(index=display_click(*click)), tab)
    assert "Choose Click to select" in outputs[-1]
    session.click(display_click(*click), "translate")
    session.click(display_click(click[0] + 3, click[1]), "translate")
    *_, status = handlers["add_operation"](session, "translate", editor, tab)
    assert status.startswith("Added operation 1") and iou(session.operations[0].region, truth) >= 0.9
