"""Tests for the drag request: JSON load/save round trip and one-line validation errors.

The image is deliberately not square (40 wide, 30 tall) so that a swapped x/y anywhere shows up.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dragnext.instructions import (
    OPERATION_TYPES,
    DragRequest,
    InstructionError,
    Operation,
    load_instructions,
    make_operation,
    polygon_mask,
    request_to_dict,
    requests_equal,
    save_instructions,
    validate_request,
)

WIDTH, HEIGHT = 40, 30
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def make_image(width: int = WIDTH, height: int = HEIGHT, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def rect_mask(x0: int, y0: int, x1: int, y1: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """True on columns x0..x1-1 and rows y0..y1-1."""
    mask = np.zeros((height, width), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def write_png(path: Path, array: np.ndarray) -> None:
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    Image.fromarray(array).save(path)


def sample_request(with_editable_mask: bool = True) -> DragRequest:
    """Four operations, one of each type, two with file regions and two with polygon regions."""
    triangle = [(20.0, 5.0), (30.0, 5.0), (25.0, 12.0)]
    quad = [(2.5, 20.0), (10.0, 20.0), (10.0, 27.5), (2.5, 27.5)]
    operations = (
        make_operation("translate", rect_mask(2, 2, 8, 8), (5, 5), (12, 6)),
        make_operation("rotate", polygon_mask(triangle, WIDTH, HEIGHT), (25, 8), (28, 10), (25, 10), polygon=triangle),
        make_operation("scale", rect_mask(30, 15, 38, 25), (34, 20), (36.5, 22.25), (32, 18)),
        make_operation("deform", polygon_mask(quad, WIDTH, HEIGHT), (6, 24), (8.5, 26), polygon=quad),
    )
    editable = rect_mask(0, 0, 39, 29) if with_editable_mask else None
    return DragRequest(image=make_image(), operations=operations, editable_mask=editable, prompt="a test scene")


def write_valid_files(folder: Path) -> dict:
    """A valid instruction folder (image + one region file); returns the JSON document to tweak and write."""
    write_png(folder / "image.png", make_image())
    write_png(folder / "region_0.png", rect_mask(2, 2, 8, 8))
    return {
        "image": "image.png",
        "prompt": "",
        "operations": [{"type": "translate", "region": "region_0.png", "handle": [5, 5], "target": [12, 6]}],
    }


def write_json(folder: Path, document: dict) -> Path:
    path = folder / "instructions.json"
    path.write_text(json.dumps(document))
    return path


def load_error(path: Path) -> str:
    with pytest.raises(InstructionError) as info:
        load_instructions(path)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    return message


def validate_error(request: DragRequest) -> str:
    with pytest.raises(InstructionError) as info:
        validate_request(request)
    message = str(info.value)
    assert "\n" not in message, message
    return message


# ------------------------------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("with_editable_mask", [True, False])
def test_round_trip_keeps_pixels_masks_points_types_and_prompt(tmp_path: Path, with_editable_mask: bool) -> None:
    request = sample_request(with_editable_mask)
    json_path = save_instructions(request, tmp_path / "instructions.json")
    loaded = load_instructions(json_path)

    assert requests_equal(loaded, request)
    assert [op.type for op in loaded.operations] == ["translate", "rotate", "scale", "deform"]
    assert loaded.image.dtype == np.uint8 and loaded.image.shape == (HEIGHT, WIDTH, 3)
    assert all(op.region.dtype == np.bool_ for op in loaded.operations)
    assert loaded.operations[2].target == (36.5, 22.25)
    assert loaded.operations[0].center is None
    assert loaded.source == str(json_path)

    document = json.loads(json_path.read_text())
    assert document["image"] == "image.png"
    assert document["operations"][0]["region"] == "region_0.png"
    assert document["operations"][1]["region"] == {"polygon": [[20, 5], [30, 5], [25, 12]]}
    assert document["operations"][2]["region"] == "region_2.png"
    assert "polygon" in document["operations"][3]["region"]
    assert loaded.operations[1].polygon == request.operations[1].polygon
    assert loaded.operations[3].polygon == request.operations[3].polygon
    assert ("editable_mask" in document) == with_editable_mask
    if with_editable_mask:
        assert document["editable_mask"] == "editable.png"
        assert loaded.editable_mask is not None and np.array_equal(loaded.editable_mask, request.editable_mask)
    else:
        assert loaded.editable_mask is None

    expected_files = {"instructions.json", "image.png", "region_0.png", "region_2.png"}
    if with_editable_mask:
        expected_files.add("editable.png")
    assert {p.name for p in tmp_path.iterdir()} == expected_files  # no temporary files left behind


def test_saving_twice_to_the_same_place_gives_the_same_request(tmp_path: Path) -> None:
    request = sample_request()
    first = load_instructions(save_instructions(request, tmp_path / "a" / "req.json"))
    second = load_instructions(save_instructions(first, tmp_path / "a" / "req.json"))
    assert requests_equal(second, request)


def test_save_into_a_folder_writes_instructions_json(tmp_path: Path) -> None:
    path = save_instructions(sample_request(), tmp_path)
    assert path == tmp_path / "instructions.json"


def test_polygon_that_does_not_match_its_region_is_saved_as_a_mask(tmp_path: Path) -> None:
    """A stale polygon must not overwrite the real region on the way through the file."""
    operation = make_operation("translate", rect_mask(2, 2, 8, 8), (5, 5), (12, 6), polygon=[(0, 0), (3, 0), (3, 3)])
    request = DragRequest(image=make_image(), operations=(operation,))
    path = save_instructions(request, tmp_path / "instructions.json")
    assert json.loads(path.read_text())["operations"][0]["region"] == "region_0.png"
    assert requests_equal(load_instructions(path), request)


def test_failed_save_leaves_the_previous_files_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_instructions(sample_request(), tmp_path / "instructions.json")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    original_save = Image.Image.save
    calls = {"n": 0}

    def failing_save(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return original_save(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", failing_save)
    changed = DragRequest(image=make_image(seed=1), operations=sample_request().operations, prompt="changed")
    with pytest.raises(OSError, match="disk full"):
        save_instructions(changed, tmp_path / "instructions.json")

    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before


def test_request_to_dict_writes_given_paths() -> None:
    request = sample_request(with_editable_mask=False)
    document = request_to_dict(request, ["r0.png", None, "r2.png", None], image_path="in.png")
    assert document["image"] == "in.png"
    assert "editable_mask" not in document
    assert document["operations"][2] == {
        "type": "scale",
        "region": "r2.png",
        "handle": [34, 20],
        "target": [36.5, 22.25],
        "center": [32, 18],
    }


def test_make_operation_coerces_points_and_region() -> None:
    operation = make_operation("rotate", np.where(rect_mask(1, 1, 4, 4), 255, 0), [1, 2], np.array([3, 4]), (5, 6))
    assert isinstance(operation, Operation)
    assert operation.region.dtype == np.bool_ and operation.region.sum() == 9
    assert operation.handle == (1.0, 2.0) and isinstance(operation.handle[0], float)
    assert operation.target == (3.0, 4.0) and operation.center == (5.0, 6.0)
    with pytest.raises(InstructionError, match=r"^handle: expected \[x, y\]"):
        make_operation("translate", rect_mask(1, 1, 4, 4), ["a", 3], (5, 6))
    with pytest.raises(InstructionError, match="^type: 'shear' is not one of"):
        make_operation("shear", rect_mask(1, 1, 4, 4), (1, 2), (5, 6))


def test_validate_request_accepts_a_list_of_operations_and_returns_a_tuple() -> None:
    request = sample_request()
    loose = DragRequest(image=request.image, operations=list(request.operations))
    assert isinstance(validate_request(loose).operations, tuple)
    assert validate_request(request) is request


def test_points_on_the_border_are_inside() -> None:
    operation = make_operation("translate", rect_mask(0, 0, 5, 5), (0, 0), (WIDTH - 1, HEIGHT - 1))
    request = DragRequest(image=make_image(), operations=(operation,))
    assert validate_request(request) is request
    past = make_operation("translate", rect_mask(0, 0, 5, 5), (0, 0), (WIDTH - 0.4, HEIGHT - 1))
    with pytest.raises(InstructionError, match=r"operations\[0\]\.target"):
        validate_request(DragRequest(image=make_image(), operations=(past,)))


# ----------------------------------------------------------------------------------------- validation errors


def one_operation_request(operation: Operation, **kwargs) -> DragRequest:
    return DragRequest(image=make_image(), operations=(operation,), **kwargs)


def test_point_outside_the_image() -> None:
    operation = make_operation("translate", rect_mask(2, 2, 8, 8), (5, 5), (WIDTH, 6))
    assert validate_error(one_operation_request(operation)) == (
        f"operations[0].target: point ({WIDTH}, 6) lies outside the {WIDTH}x{HEIGHT} image"
    )
    operation = make_operation("translate", rect_mask(2, 2, 8, 8), (5, -0.5), (6, 6))
    assert validate_error(one_operation_request(operation)).startswith("operations[0].handle: point (5, -0.5) lies")


def test_non_finite_point() -> None:
    operation = make_operation("translate", rect_mask(2, 2, 8, 8), (float("nan"), 5), (6, 6))
    assert validate_error(one_operation_request(operation)).startswith("operations[0].handle: coordinates must be")


def test_region_of_another_size() -> None:
    operation = make_operation("translate", rect_mask(2, 2, 8, 8, width=20, height=10), (5, 5), (12, 6))
    assert validate_error(one_operation_request(operation)) == (
        f"operations[0].region: mask is 20x10 but the image is {WIDTH}x{HEIGHT}"
    )


def test_empty_region() -> None:
    operation = make_operation("translate", np.zeros((HEIGHT, WIDTH), bool), (5, 5), (12, 6))
    assert validate_error(one_operation_request(operation)) == "operations[0].region: mask is empty"


def test_editable_mask_of_another_size() -> None:
    operation = make_operation("translate", rect_mask(2, 2, 8, 8), (5, 5), (12, 6))
    message = validate_error(one_operation_request(operation, editable_mask=np.ones((5, 5), bool)))
    assert message == f"editable_mask: mask is 5x5 but the image is {WIDTH}x{HEIGHT}"


def test_handle_equal_to_target() -> None:
    operation = make_operation("translate", rect_mask(2, 2, 8, 8), (5, 5), (5, 5))
    assert (
        validate_error(one_operation_request(operation)) == "operations[0].target: equals the handle; nothing to drag"
    )


@pytest.mark.parametrize("op_type", ["rotate", "scale"])
def test_center_required(op_type: str) -> None:
    good = make_operation("translate", rect_mask(2, 2, 8, 8), (5, 5), (12, 6))
    missing = make_operation(op_type, rect_mask(2, 2, 8, 8), (5, 5), (12, 6))
    request = DragRequest(image=make_image(), operations=(good, good, missing))
    assert validate_error(request) == f"operations[2].center: required for type '{op_type}'"


@pytest.mark.parametrize(("op_type", "quantity"), [("rotate", "angle"), ("scale", "scale")])
def test_handle_on_the_center(op_type: str, quantity: str) -> None:
    operation = make_operation(op_type, rect_mask(2, 2, 8, 8), (5, 5), (12, 6), (5, 5))
    assert validate_error(one_operation_request(operation)) == (
        f"operations[0].handle: lies on the center, so the {quantity} is undefined"
    )


def test_target_on_the_center_of_a_rotation() -> None:
    operation = make_operation("rotate", rect_mask(2, 2, 8, 8), (5, 5), (12, 6), (12, 6))
    assert validate_error(one_operation_request(operation)).startswith("operations[0].target: lies on the center")


def test_zero_operations() -> None:
    request = DragRequest(image=make_image(), operations=())
    assert validate_error(request) == "operations: at least one operation is required"


def test_unknown_type_in_python() -> None:
    operation = Operation("shear", rect_mask(2, 2, 8, 8), (5.0, 5.0), (12.0, 6.0))
    assert validate_error(one_operation_request(operation)).startswith("operations[0].type: 'shear' is not one of")


def test_bad_image_array() -> None:
    operation = make_operation("translate", rect_mask(2, 2, 8, 8), (5, 5), (12, 6))
    request = DragRequest(image=make_image().astype(np.float32), operations=(operation,))
    assert validate_error(request).startswith("image: expected an H x W x 3 uint8 RGB array")


# ------------------------------------------------------------------------------------ degenerate operations


def rotation_to(degrees: float) -> Operation:
    """A rotation of the 6 x 6 box at (2..7, 2..7) about (20, 15): the handle 10 px right of the center, the
    target 8 px from it (so that 0 degrees is a target on the handle's ray, not on the handle)."""
    radians = math.radians(degrees)
    target = (20 + 8 * math.cos(radians), 15 + 8 * math.sin(radians))
    return make_operation("rotate", rect_mask(2, 2, 8, 8), (30, 15), target, (20, 15))


def scaling_by(factor: float, handle_distance: float = 10.0, direction: float = 0.0) -> Operation:
    """A scale about (4, 15): the handle ``handle_distance`` px right of the center, the target
    ``factor`` times as far, ``direction`` degrees round from the handle."""
    radians = math.radians(direction)
    target = (4 + handle_distance * factor * math.cos(radians), 15 + handle_distance * factor * math.sin(radians))
    return make_operation("scale", rect_mask(2, 2, 8, 8), (4 + handle_distance, 15), target, (4, 15))


@pytest.mark.parametrize("degrees", [0.0, 0.3, -0.45])
def test_a_rotation_below_half_a_degree_is_refused(degrees: float) -> None:
    message = validate_error(one_operation_request(rotation_to(degrees)))
    assert message.startswith("operations[0].target: rotates the region by only")
    assert "at least 0.5 needed" in message and "move the target around the center" in message


@pytest.mark.parametrize("degrees", [0.6, -20.0, 179.0, 180.0])
def test_real_rotations_pass(degrees: float) -> None:
    request = one_operation_request(rotation_to(degrees))
    assert validate_request(request) is request


@pytest.mark.parametrize(("factor", "direction"), [(1.0, 90.0), (1.005, 0.0), (0.995, 0.0)])
def test_a_scale_within_one_percent_of_one_is_refused(factor: float, direction: float) -> None:
    message = validate_error(one_operation_request(scaling_by(factor, direction=direction)))
    assert message.startswith("operations[0].target: scales the region by")
    assert "within 1% of 1" in message and "nearer to or farther from the center" in message


@pytest.mark.parametrize(("factor", "handle_distance"), [(20.0, 1.0), (1 / 20, 20.0), (1e6, 1e-5)])
def test_an_extreme_scale_is_refused(factor: float, handle_distance: float) -> None:
    message = validate_error(one_operation_request(scaling_by(factor, handle_distance)))
    assert message.startswith("operations[0].target: scales the region by")
    assert "outside 1/16 to 16" in message


@pytest.mark.parametrize("factor", [0.4, 0.6, 1.02, 1.6, 2.2, 1 / 15, 15.0])
def test_real_scales_pass(factor: float) -> None:
    request = one_operation_request(scaling_by(factor, 1.0 if factor > 3 else 15.0))
    assert validate_request(request) is request


def test_an_editable_mask_that_excludes_the_whole_region_is_refused() -> None:
    operation = make_operation("translate", rect_mask(2, 2, 8, 8), (5, 5), (12, 6))
    message = validate_error(one_operation_request(operation, editable_mask=rect_mask(20, 0, 40, 30)))
    assert message.startswith("operations[0].region: lies entirely outside the editable mask")
    assert "extend the editable mask over the region" in message
    validate_request(one_operation_request(operation, editable_mask=rect_mask(7, 0, 40, 30)))  # one column shared


def test_a_polygon_with_no_area_is_refused() -> None:
    line = [(2.0, 2.0), (6.0, 6.0), (10.0, 10.0)]
    operation = make_operation("translate", polygon_mask(line, WIDTH, HEIGHT), (6, 6), (12, 6), polygon=line)
    assert validate_error(one_operation_request(operation)).startswith(
        "operations[0].polygon: the polygon encloses no area"
    )


def test_a_garbled_polygon_in_python_is_refused() -> None:
    operation = Operation("translate", rect_mask(2, 2, 8, 8), (5.0, 5.0), (12.0, 6.0), polygon=("a", "b", "c"))
    assert validate_error(one_operation_request(operation)).startswith(
        "operations[0].polygon: expected a sequence of (x, y) points"
    )


def test_polygons_in_files_far_off_the_canvas_or_without_area(tmp_path: Path) -> None:
    document = write_valid_files(tmp_path)
    region = document["operations"][0]
    region["region"] = {"polygon": [[2, 2], [1e308, 2], [7, 7]]}
    assert load_error(write_json(tmp_path, document)) == (
        "operations[0].region.polygon[1]: point (1e+308, 2) is too far outside the 40x30 image "
        "(a polygon may reach at most one image size beyond the border)"
    )
    region["region"] = {"polygon": [[2, 2], [-41, 2], [7, 7]]}
    assert "is too far outside" in load_error(write_json(tmp_path, document))
    region["region"] = {"polygon": [[2, 2], [4, 4], [7, 7], [3, 3]]}
    assert "the polygon encloses no area" in load_error(write_json(tmp_path, document))
    # A polygon reaching past the border, to outline a region the border cuts, is fine.
    region["region"] = {"polygon": [[-20, -10], [7, -10], [7, 7], [-20, 7]]}
    assert np.array_equal(load_instructions(write_json(tmp_path, document)).operations[0].region,
                          rect_mask(0, 0, 8, 8))


def test_degenerate_operations_in_files(tmp_path: Path) -> None:
    document = write_valid_files(tmp_path)
    document["operations"][0].update(type="rotate", handle=[5, 5], target=[10, 10], center=[2, 2])
    assert load_error(write_json(tmp_path, document)).startswith("operations[0].target: rotates the region by only")
    document["operations"][0].update(type="scale", handle=[5, 5], target=[25, 5], center=[5.000001, 5])
    assert "outside 1/16 to 16" in load_error(write_json(tmp_path, document))
    write_png(tmp_path / "editable.png", rect_mask(20, 0, 40, 30))
    document["editable_mask"] = "editable.png"
    document["operations"][0].update(type="translate", target=[12, 6])
    assert "lies entirely outside the editable mask" in load_error(write_json(tmp_path, document))


# ---------------------------------------------------------------------------------------- file load errors


def test_valid_file_loads(tmp_path: Path) -> None:
    request = load_instructions(write_json(tmp_path, write_valid_files(tmp_path)))
    assert request.operations[0].handle == (5.0, 5.0)
    assert request.operations[0].region.sum() == 36


def test_missing_json_file(tmp_path: Path) -> None:
    message = load_error(tmp_path / "nope.json")
    assert "does not exist" in message and "nope.json" in message


def test_file_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "instructions.json"
    path.write_text('{\n  "image": "image.png",\n  oops\n}')
    message = load_error(path)
    assert "not valid JSON" in message and "line 3, column 3" in message


def test_binary_file_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "instructions.json"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    assert "not valid JSON" in load_error(path)


def test_top_level_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "instructions.json"
    path.write_text("[1, 2]")
    assert "JSON object at the top level" in load_error(path)


def test_missing_image_file(tmp_path: Path) -> None:
    document = write_valid_files(tmp_path)
    document["image"] = "missing.png"
    assert load_error(write_json(tmp_path, document)).startswith("image: 'missing.png' does not exist")


def test_image_that_is_not_an_image(tmp_path: Path) -> None:
    document = write_valid_files(tmp_path)
    (tmp_path / "x.png").write_text("this is text, not a picture")
    document["image"] = "x.png"
    assert load_error(write_json(tmp_path, document)).startswith("image: 'x.png' is not an image file in a format")


def test_truncated_image(tmp_path: Path) -> None:
    document = write_valid_files(tmp_path)
    data = (tmp_path / "image.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    document["image"] = "cut.png"
    assert load_error(write_json(tmp_path, document)).startswith("image: ")


def test_region_file_of_another_size(tmp_path: Path) -> None:
    document = write_valid_files(tmp_path)
    write_png(tmp_path / "region_0.png", rect_mask(2, 2, 8, 8, width=20, height=10))
    assert load_error(write_json(tmp_path, document)) == (
        f"operations[0].region: mask is 20x10 but the image is {WIDTH}x{HEIGHT}"
    )


def test_empty_region_file(tmp_path: Path) -> None:
    document = write_valid_files(tmp_path)
    write_png(tmp_path / "region_0.png", np.zeros((HEIGHT, WIDTH), bool))
    assert load_error(write_json(tmp_path, document)) == "operations[0].region: mask is empty"


def test_region_file_in_any_mode(tmp_path: Path) -> None:
    """An RGB region with white inside works as well as a greyscale one."""
    document = write_valid_files(tmp_path)
    rgb = np.repeat((rect_mask(2, 2, 8, 8).astype(np.uint8) * 255)[..., None], 3, axis=2)
    write_png(tmp_path / "region_0.png", rgb)
    assert load_instructions(write_json(tmp_path, document)).operations[0].region.sum() == 36


def test_editable_mask_file_of_another_size(tmp_path: Path) -> None:
    document = write_valid_files(tmp_path)
    write_png(tmp_path / "editable.png", np.ones((5, 5), bool))
    document["editable_mask"] = "editable.png"
    assert load_error(write_json(tmp_path, document)).startswith("editable_mask: mask is 5x5")


def test_point_outside_the_image_in_file(tmp_path: Path) -> None:
    document = write_valid_files(tmp_path)
    document["operations"][0]["handle"] = [700, 20]
    assert load_error(write_json(tmp_path, document)) == (
        f"operations[0].handle: point (700, 20) lies outside the {WIDTH}x{HEIGHT} image"
    )


def test_handle_equal_to_target_in_file(tmp_path: Path) -> None:
    document = write_valid_files(tmp_path)
    document["operations"][0]["target"] = [5, 5]
    assert load_error(write_json(tmp_path, document)) == "operations[0].target: equals the handle; nothing to drag"


def test_unknown_type_in_file(tmp_path: Path) -> None:
    document = write_valid_files(tmp_path)
    document["operations"][0]["type"] = "shear"
    message = load_error(write_json(tmp_path, document))
    assert message.startswith("operations[0].type: 'shear' is not one of")
    assert all(name in message for name in OPERATION_TYPES)


def test_unknown_top_level_key(tmp_path: Path) -> None:
    document = write_valid_files(tmp_path)
    document["strength"] = 0.5
    message = load_error(write_json(tmp_path, document))
    assert "unknown key 'strength'" in message
    assert "image, editable_mask, prompt, operations" in message


def test_unknown_operation_key(tmp_path: Path) -> None:
    document = write_valid_files(tmp_path)
    document["operations"][0]["angle"] = 30
    message = load_error(write_json(tmp_path, document))
    assert message.startswith("operations[0]: unknown key 'angle'")
    assert "type, region, handle, target, center" in message


@pytest.mark.parametrize("key", ["type", "region", "handle", "target"])
def test_missing_operation_key(tmp_path: Path, key: str) -> None:
    document = write_valid_files(tmp_path)
    del document["operations"][0][key]
    assert load_error(write_json(tmp_path, document)) == f"operations[0].{key}: required key is missing"


@pytest.mark.parametrize("key", ["image", "operations"])
def test_missing_top_level_key(tmp_path: Path, key: str) -> None:
    document = write_valid_files(tmp_path)
    del document[key]
    assert load_error(write_json(tmp_path, document)) == f"{key}: required key is missing"


@pytest.mark.parametrize("op_type", ["rotate", "scale"])
def test_center_required_in_file(tmp_path: Path, op_type: str) -> None:
    document = write_valid_files(tmp_path)
    document["operations"][0]["type"] = op_type
    assert load_error(write_json(tmp_path, document)) == f"operations[0].center: required for type '{op_type}'"


def test_handle_on_the_center_in_file(tmp_path: Path) -> None:
    document = write_valid_files(tmp_path)
    document["operations"][0].update(type="rotate", center=[5, 5])
    assert load_error(write_json(tmp_path, document)) == (
        "operations[0].handle: lies on the center, so the angle is undefined"
    )


@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [
        ("handle", ["a", 3], "['a', 3]"),
        ("target", [1, 2, 3], "[1, 2, 3]"),
        ("handle", [True, 3], "[True, 3]"),
        ("target", "5,6", "'5,6'"),
        ("center", {"x": 1, "y": 2}, "{'x': 1, 'y': 2}"),
    ],
)
def test_non_numeric_coordinates(tmp_path: Path, field: str, value: object, shown: str) -> None:
    document = write_valid_files(tmp_path)
    document["operations"][0][field] = value
    assert load_error(write_json(tmp_path, document)) == (
        f"operations[0].{field}: expected [x, y] with two numbers, got {shown}"
    )


def test_nan_coordinate_in_file(tmp_path: Path) -> None:
    document = write_valid_files(tmp_path)
    path = tmp_path / "instructions.json"
    path.write_text(json.dumps(document).replace("[12, 6]", "[NaN, 6]"))
    assert load_error(path).startswith("operations[0].target: coordinates must be finite numbers")


def test_zero_operations_in_file(tmp_path: Path) -> None:
    document = write_valid_files(tmp_path)
    document["operations"] = []
    assert load_error(write_json(tmp_path, document)) == "operations: at least one operation is required"


def test_operations_not_a_list(tmp_path: Path) -> None:
    document = write_valid_files(tmp_path)
    document["operations"] = {"type": "translate"}
    assert load_error(write_json(tmp_path, document)).startswith("operations: expected a list")


def test_bad_polygons(tmp_path: Path) -> None:
    document = write_valid_files(tmp_path)
    document["operations"][0]["region"] = {"polygon": [[1, 1], [5, 1]]}
    assert load_error(write_json(tmp_path, document)).startswith("operations[0].region.polygon: expected a list of")
    document["operations"][0]["region"] = {"polygon": [[1, 1], [5, 1], ["x", 5]]}
    assert load_error(write_json(tmp_path, document)).startswith(
        "operations[0].region.polygon[2]: expected [x, y] with two numbers"
    )
    document["operations"][0]["region"] = {"polygon": [[1, 1], [5, 1], [5, 5]], "fill": 1}
    assert load_error(write_json(tmp_path, document)).startswith("operations[0].region: unknown key 'fill'")
    document["operations"][0]["region"] = 7
    assert load_error(write_json(tmp_path, document)).startswith("operations[0].region: expected a mask file path")


def test_polygon_region_in_file(tmp_path: Path) -> None:
    document = write_valid_files(tmp_path)
    document["operations"][0]["region"] = {"polygon": [[2, 2], [7, 2], [7, 7], [2, 7]]}
    operation = load_instructions(write_json(tmp_path, document)).operations[0]
    assert operation.polygon == ((2.0, 2.0), (7.0, 2.0), (7.0, 7.0), (2.0, 7.0))
    assert np.array_equal(operation.region, rect_mask(2, 2, 8, 8))  # interior and outline are inside


def test_prompt_must_be_a_string(tmp_path: Path) -> None:
    document = write_valid_files(tmp_path)
    document["prompt"] = 3
    assert load_error(write_json(tmp_path, document)).startswith("prompt: expected a string")


def test_duplicate_key(tmp_path: Path) -> None:
    write_valid_files(tmp_path)
    path = tmp_path / "instructions.json"
    path.write_text('{"image": "image.png", "image": "other.png", "operations": []}')
    assert "duplicate key 'image'" in load_error(path)


# ------------------------------------------------------------------------------------------------- imports


def test_importing_does_not_import_torch() -> None:
    """Validation must stay instant: the module may not pull in torch or diffusers."""
    code = "import dragnext.instructions, sys; assert 'torch' not in sys.modules; assert 'diffusers' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------------------------------------ real data


def disc_mask(center: tuple[float, float], radius: float, width: int, height: int) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width]
    return (xs - center[0]) ** 2 + (ys - center[1]) ** 2 <= radius**2


def test_round_trip_of_a_real_drag100_sample(tmp_path: Path) -> None:
    """A real photo (JPEG, non-square) with Drag100's points survives save/load unchanged."""
    drag100 = SHARED_DATA / "drag100"
    if not drag100.is_dir():
        pytest.skip("../shared/data not present")
    samples = sorted(p for p in drag100.iterdir() if (p / "points.json").is_file() and (p / "original.jpg").is_file())
    if not samples:
        pytest.skip("../shared/data/drag100 has no samples")
    sample = samples[0]
    image = np.asarray(Image.open(sample / "original.jpg").convert("RGB"))
    height, width = image.shape[:2]
    points = json.loads((sample / "points.json").read_text())["points"]
    pairs = list(zip(points[0::2], points[1::2], strict=True))  # alternating handle, target
    operations = tuple(
        make_operation("translate", disc_mask(handle, 12, width, height), handle, target) for handle, target in pairs
    )
    request = DragRequest(image=image, operations=operations, prompt=sample.name)

    loaded = load_instructions(save_instructions(request, tmp_path / "instructions.json"))

    assert requests_equal(loaded, request)
    assert loaded.operations[0].handle == tuple(float(v) for v in points[0])
    assert loaded.operations[0].target == tuple(float(v) for v in points[1])


def test_a_loaded_request_lists_every_file_it_was_read_from(tmp_path):
    image = np.zeros((16, 16, 3), dtype=np.uint8)
    region = np.zeros((16, 16), dtype=bool)
    region[4:8, 4:8] = True
    request = DragRequest(image=image, operations=(make_operation("translate", region, (5, 5), (10, 10)),),
                          editable_mask=np.ones((16, 16), dtype=bool))
    path = save_instructions(request, tmp_path / "request" / "instructions.json")
    files = load_instructions(path).files
    assert files[0] == path
    assert sorted(f.name for f in files[1:]) == sorted(p.name for p in path.parent.iterdir() if p != path)
