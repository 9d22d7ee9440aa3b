import math

import numpy as np
import pytest

from dragnext.ground_truth import (
    GroundTruthEdit,
    deform_edit,
    random_edit,
    rotate_edit,
    rotation_matrix,
    scale_edit,
    shape_bounds,
    translate_edit,
)
from dragnext.planar import rotation_degrees
from dragnext.scenes import Circle, Polygon, Scene, random_scene, render, shape_coverage, visible_mask

OP_TYPES = ("translate", "rotate", "scale", "deform")


def _scene(*shapes) -> Scene:
    return Scene(size=64, color_start=(0.1, 0.2, 0.3), color_end=(0.3, 0.1, 0.2), gradient_angle=0.7, shapes=shapes)


def _rectangle(x0, y0, x1, y1, color=(0.9, 0.8, 0.1)) -> Polygon:
    return Polygon(vertices=((x0, y0), (x1, y0), (x1, y1), (x0, y1)), color=color, label="rectangle")


def _inside(point, size) -> bool:
    return 0 <= point[0] <= size - 1 and 0 <= point[1] <= size - 1


def test_random_scene_is_deterministic():
    assert random_scene(5) == random_scene(5)
    np.testing.assert_array_equal(render(random_scene(5)), render(random_scene(5)))
    assert random_scene(5) != random_scene(6)


def test_edit_fields_are_consistent():
    scene = _scene(_rectangle(20.3, 18.6, 34.3, 30.6))
    edit = translate_edit(scene, 0, (7, -5))
    assert isinstance(edit, GroundTruthEdit)
    assert edit.op_type == "translate" and edit.shape_index == 0 and edit.scene is scene
    np.testing.assert_array_equal(edit.request.image, np.round(render(scene) * 255).astype(np.uint8))
    assert edit.request.image.dtype == np.uint8
    assert len(edit.request.operations) == 1
    operation = edit.request.operations[0]
    assert operation.type == "translate" and operation.center is None
    assert operation.region.dtype == bool and operation.region.shape == (64, 64)
    # The region is the visible shape dilated by 2 px: it contains the shape and reaches 2 px further.
    assert operation.region[visible_mask(scene, 0) > 0].all()
    assert operation.region[30, 36] and not operation.region[30, 37]
    assert edit.expected_image.dtype == np.float32 and edit.expected_image.shape == (64, 64, 3)
    np.testing.assert_array_equal(edit.expected_mask, visible_mask(edit.expected_scene, 0))
    np.testing.assert_array_equal(edit.source_mask, visible_mask(scene, 0))


def test_translate_by_whole_pixels_is_a_roll():
    shape = _rectangle(20.3, 18.6, 34.3, 30.6)
    scene = _scene(shape)
    edit = translate_edit(scene, 0, (7, -5))
    operation = edit.request.operations[0]
    assert operation.handle == pytest.approx((27.3, 24.6))
    assert operation.target == pytest.approx((34.3, 19.6))
    moved = _rectangle(27.3, 13.6, 41.3, 25.6)
    np.testing.assert_allclose(edit.expected_scene.shapes[0].vertices, moved.vertices, atol=1e-12)
    np.testing.assert_array_equal(edit.expected_image, render(_scene(edit.expected_scene.shapes[0])))
    np.testing.assert_array_equal(edit.expected_image, render(_scene(moved)))
    rolled = np.roll(shape_coverage(shape, 64), (-5, 7), axis=(0, 1))
    np.testing.assert_array_equal(shape_coverage(edit.expected_scene.shapes[0], 64), rolled)
    np.testing.assert_array_equal(edit.expected_mask, rolled)


def test_rotation_convention_turns_x_toward_y():
    matrix = rotation_matrix(90, (0.0, 0.0))
    np.testing.assert_allclose(matrix[:, :2] @ [1.0, 0.0] + matrix[:, 2], [0.0, 1.0], atol=1e-12)
    assert rotation_degrees((1, 0), (0, 1), (0, 0)) == pytest.approx(90)
    assert rotation_degrees((1, 0), (0, -1), (0, 0)) == pytest.approx(-90)


def test_rotate_square_by_90_degrees_about_its_centre_gives_the_same_square():
    square = _rectangle(24.1, 22.7, 40.1, 38.7)
    edit = rotate_edit(_scene(square), 0, 90)
    operation = edit.request.operations[0]
    assert operation.center == pytest.approx((32.1, 30.7))
    assert rotation_degrees(operation.handle, operation.target, operation.center) == pytest.approx(90)
    assert math.dist(operation.handle, operation.center) >= 6
    np.testing.assert_allclose(shape_coverage(edit.expected_scene.shapes[0], 64), shape_coverage(square, 64), atol=1e-6)


def test_rotate_follows_the_points():
    triangle = Polygon(vertices=((30.0, 20.0), (40.0, 36.0), (22.0, 34.0)), color=(0.9, 0.1, 0.1))
    edit = rotate_edit(_scene(triangle), 0, 35, center=(31.0, 30.0))
    operation = edit.request.operations[0]
    angle = rotation_degrees(operation.handle, operation.target, operation.center)
    assert angle == pytest.approx(35)
    expected = triangle.transformed(rotation_matrix(35, (31.0, 30.0)))
    np.testing.assert_allclose(edit.expected_scene.shapes[0].vertices, expected.vertices, atol=1e-9)
    # The first vertex turns clockwise on screen (y down): from straight above the center toward +x.
    assert edit.expected_scene.shapes[0].vertices[0][0] > triangle.vertices[0][0]


@pytest.mark.parametrize("factor", [0.7, 1.5])
def test_scale_area_ratio_is_factor_squared(factor):
    for shape in (_rectangle(24.1, 22.7, 38.1, 34.7), Circle(center=(31.3, 30.2), radius=9.0, color=(0.9, 0.1, 0.1))):
        edit = scale_edit(_scene(shape), 0, factor)
        operation = edit.request.operations[0]
        ratio = math.dist(operation.target, operation.center) / math.dist(operation.handle, operation.center)
        assert ratio == pytest.approx(factor)
        before = shape_coverage(shape, 64).sum()
        after = shape_coverage(edit.expected_scene.shapes[0], 64).sum()
        assert after / before == pytest.approx(factor**2, rel=0.05)


def test_deform_moves_exactly_one_vertex():
    triangle = Polygon(vertices=((30.0, 20.0), (40.0, 36.0), (22.0, 34.0)), color=(0.9, 0.1, 0.1))
    edit = deform_edit(_scene(triangle), 0, 1, (5.0, 3.0))
    new = edit.expected_scene.shapes[0]
    assert new.vertices[0] == triangle.vertices[0] and new.vertices[2] == triangle.vertices[2]
    assert new.vertices[1] == (45.0, 39.0)
    operation = edit.request.operations[0]
    assert operation.type == "deform" and operation.handle == (40.0, 36.0) and operation.target == (45.0, 39.0)
    assert operation.region[36, 40] and operation.region[36, 44] and not operation.region[36, 45]
    assert 40 <= operation.region.sum() <= 60  # a disc of radius 4 px
    with pytest.raises(ValueError, match="polygon"):
        deform_edit(_scene(Circle(center=(30.0, 30.0), radius=8.0, color=(0.9, 0.1, 0.1))), 0, 0, (3.0, 0.0))


def test_occlusion_order_is_kept():
    bottom = _rectangle(10.0, 10.0, 30.0, 30.0, color=(0.9, 0.1, 0.1))
    top = Circle(center=(38.0, 20.0), radius=8.0, color=(0.1, 0.9, 0.1))
    scene = _scene(bottom, top)
    edit = translate_edit(scene, 0, (10.0, 0.0))
    assert edit.expected_scene.shapes[1] == top
    # The moved rectangle now passes under the circle, which still hides part of it.
    overlap = shape_coverage(top, 64) * shape_coverage(edit.expected_scene.shapes[0], 64)
    assert overlap.sum() > 10
    assert edit.expected_mask.sum() == pytest.approx(
        (shape_coverage(edit.expected_scene.shapes[0], 64) - overlap).sum(), rel=1e-5
    )
    np.testing.assert_allclose(edit.expected_image[20, 38], top.color, atol=1e-6)


@pytest.mark.parametrize("op_type", OP_TYPES)
@pytest.mark.parametrize("long", [False, True])
def test_random_edit_is_deterministic_and_valid(op_type, long):
    for seed in range(4):
        edit = random_edit(seed, op_type, long=long)
        again = random_edit(seed, op_type, long=long)
        assert edit.scene == again.scene and edit.expected_scene == again.expected_scene
        np.testing.assert_array_equal(edit.request.image, again.request.image)
        np.testing.assert_array_equal(edit.request.operations[0].region, again.request.operations[0].region)
        assert edit.request.operations[0].handle == again.request.operations[0].handle

        size = edit.scene.size
        operation = edit.request.operations[0]
        assert edit.op_type == operation.type == op_type
        assert operation.region.any()
        points = [operation.handle, operation.target]
        if op_type in ("rotate", "scale"):
            assert operation.center is not None
            points.append(operation.center)
            assert math.dist(operation.handle, operation.center) > 1
        assert all(_inside(p, size) for p in points)
        x0, y0, x1, y1 = shape_bounds(edit.expected_scene.shapes[edit.shape_index])
        assert x0 >= 1 and y0 >= 1 and x1 <= size - 2 and y1 <= size - 2
        if op_type == "deform":
            assert isinstance(edit.scene.shapes[edit.shape_index], Polygon)
        # Only the edited shape changes, and it keeps its index (occlusion order).
        for i, shape in enumerate(edit.scene.shapes):
            if i != edit.shape_index:
                assert edit.expected_scene.shapes[i] == shape
        assert edit.expected_scene.shapes[edit.shape_index].color == edit.scene.shapes[edit.shape_index].color
        assert edit.expected_scene.shapes[edit.shape_index] != edit.scene.shapes[edit.shape_index]


def test_random_edit_lengths():
    for seed in range(3):
        short = random_edit(seed, "translate").request.operations[0]
        long = random_edit(seed, "translate", long=True).request.operations[0]
        assert 6 - 1e-9 <= math.dist(short.handle, short.target) <= 14 + 1e-9
        assert 16 - 1e-9 <= math.dist(long.handle, long.target) <= 26 + 1e-9
        rotate = random_edit(seed, "rotate").request.operations[0]
        assert 20 - 1e-6 <= abs(rotation_degrees(rotate.handle, rotate.target, rotate.center)) <= 60 + 1e-6
        scale = random_edit(seed, "scale").request.operations[0]
        ratio = math.dist(scale.target, scale.center) / math.dist(scale.handle, scale.center)
        assert 0.6 - 1e-9 <= ratio <= 0.8 + 1e-9 or 1.25 - 1e-9 <= ratio <= 1.6 + 1e-9
        scale = random_edit(seed, "scale", long=True).request.operations[0]
        ratio = math.dist(scale.target, scale.center) / math.dist(scale.handle, scale.center)
        assert 0.4 - 1e-9 <= ratio <= 0.6 + 1e-9 or 1.6 - 1e-9 <= ratio <= 2.2 + 1e-9


def test_ordinary_edits_keep_their_draws():
    """Long scalings were added without changing what any other type draws (values from the generator before
    that change): the suite's other scenes stay as they were."""
    translate = random_edit(1000, "translate").request.operations[0]
    assert translate.handle == pytest.approx((47.4543, 52.0744), abs=1e-4)
    assert translate.target == pytest.approx((45.1804, 45.2098), abs=1e-4)
    scale = random_edit(1000, "scale").request.operations[0]
    assert math.dist(scale.target, scale.center) / math.dist(scale.handle, scale.center) == pytest.approx(
        0.73982, abs=1e-5)
    deform = random_edit(1003, "deform", long=True).request.operations[0]
    assert deform.handle == pytest.approx((51.9174, 19.7636), abs=1e-4)
    assert deform.target == pytest.approx((61.2081, 30.3073), abs=1e-4)


def test_random_edit_rejects_unknown_type():
    with pytest.raises(ValueError):
        random_edit(0, "shear")
