"""A deform's reach read from the picture (support.py) and how it flows through geometry and the editor."""

import dataclasses

import numpy as np
import pytest

from dragnext import geometry
from dragnext.instructions import DragRequest, make_operation, polygon_mask
from dragnext.support import MIN_DRAG_LENGTHS, OWN_CORNER_RADIUS, deform_support, image_corners, with_supports

TRIANGLE = [(12.0, 50.0), (40.0, 14.0), (54.0, 52.0)]


def triangle_image() -> np.ndarray:
    image = np.full((64, 64, 3), 230, dtype=np.uint8)
    image[polygon_mask(TRIANGLE, 64, 64)] = (200, 40, 40)
    return image


def disc(center, radius: float = 4.0) -> np.ndarray:
    rows, cols = np.mgrid[0:64, 0:64]
    return np.hypot(cols - center[0], rows - center[1]) <= radius


def vertex_drag(image, vertex: int = 1, offset=(0.0, -6.0)):
    handle = TRIANGLE[vertex]
    target = (handle[0] + offset[0], handle[1] + offset[1])
    return make_operation("deform", disc(handle), handle, target)


def test_the_corners_of_a_triangle_are_found():
    corners = image_corners(triangle_image())
    for vertex in TRIANGLE:
        assert np.linalg.norm(corners - np.asarray(vertex), axis=1).min() < 3.0, vertex


def test_a_flat_picture_has_no_corners():
    assert len(image_corners(np.full((32, 32, 3), 128, dtype=np.uint8))) == 0


def test_the_support_of_a_vertex_drag_ends_at_the_nearest_other_vertex():
    image = triangle_image()
    op = vertex_drag(image, vertex=1)
    nearest = min(np.linalg.norm(np.subtract(TRIANGLE[i], TRIANGLE[1])) for i in (0, 2))
    assert deform_support(image, op) == pytest.approx(nearest, abs=3.0)
    # and it is more than the region's own rule gives (a 4 px disc, 1.25 drag lengths)
    assert deform_support(image, op) > geometry.deformation_radius(op.region, op.handle, op.target) + 10


def test_the_support_never_falls_under_the_invertible_reach():
    image = triangle_image()
    op = vertex_drag(image, vertex=1, offset=(0.0, -36.0))  # 1.25 drag lengths (45 px) > the nearest edge (40 px)
    assert deform_support(image, op) == pytest.approx(MIN_DRAG_LENGTHS * 36.0)
    # so the field stays invertible: the inverse maps the target back onto the handle
    source = geometry.deformation_source(np.asarray([op.target]), op.handle, op.target, deform_support(image, op))
    np.testing.assert_allclose(source[0], op.handle, atol=1e-4)


def test_without_corners_the_region_rule_holds():
    image = np.full((64, 64, 3), 128, dtype=np.uint8)
    op = make_operation("deform", disc((30, 30), 6), (30, 30), (34, 30))
    assert deform_support(image, op) == geometry.deformation_radius(op.region, op.handle, op.target)


def test_the_handles_own_corner_does_not_count():
    image = triangle_image()
    op = vertex_drag(image, vertex=1)
    corners = image_corners(image)
    own = np.linalg.norm(corners - np.asarray(op.handle), axis=1).min()
    assert own <= OWN_CORNER_RADIUS  # the dragged vertex is itself a corner ...
    assert deform_support(image, op, corners) > 3 * OWN_CORNER_RADIUS  # ... that does not end the support


def test_with_supports_sets_deforms_only_and_keeps_given_ones():
    image = triangle_image()
    translate = make_operation("translate", disc((20, 20)), (20, 20), (24, 20))
    deform = vertex_drag(image)
    given = dataclasses.replace(vertex_drag(image, vertex=2), support=7.5)
    request = with_supports(DragRequest(image=image, operations=(translate, deform, given)))
    assert request.operations[0].support is None
    assert request.operations[1].support == pytest.approx(deform_support(image, deform))
    assert request.operations[2].support == 7.5
    only_translations = DragRequest(image=image, operations=(translate,))
    assert with_supports(only_translations) is only_translations


def test_region_motion_honours_the_support():
    op = make_operation("deform", disc((32, 32)), (32, 32), (36, 32))
    for support in (8.0, 20.0):
        moved, grid = geometry.region_motion(op.region, "deform", op.handle, op.target, None, 1.0, (64, 64), (64, 64),
                                             support=support)
        rows, cols = np.nonzero(moved.numpy() > 0)
        reach = np.hypot(cols - 32, rows - 32).max()
        assert support - 1.5 <= reach <= support + 0.5
        identity = geometry.inverse_grid(np.eye(3), (64, 64), (64, 64))
        outside = ~(moved.numpy() > 0)
        np.testing.assert_allclose(grid[0].numpy()[outside], identity[0].numpy()[outside], atol=1e-5)


def test_the_working_size_copy_scales_the_support():
    from dragnext.editor import _supports_from, _to_working_size

    image = np.repeat(np.repeat(triangle_image(), 2, axis=0), 2, axis=1)  # 128 px
    op = make_operation("deform", disc((80, 28)).repeat(2, 0).repeat(2, 1)[:128, :128], (80, 28), (80, 16))
    request = DragRequest(image=image, operations=(dataclasses.replace(op, support=40.0),))
    work = _to_working_size(request, (96, 96))  # 128 px -> 96 px
    assert work.operations[0].support == pytest.approx(30.0)
    found = with_supports(_to_working_size(DragRequest(image=image, operations=(op,)), (96, 96)))
    back = _supports_from(found, DragRequest(image=image, operations=(op,)))
    assert back.operations[0].support == pytest.approx(found.operations[0].support * 128 / 96)
