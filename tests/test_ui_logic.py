"""The web UI's logic without a browser or Gradio: clicks -> points, painted layers -> masks, bad input ->
messages, the download/restore format, the edit runner (one at a time, survives a failed edit), ``dragnext ui``."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dragnext.config import BUNDLED, EditConfig
from dragnext.instructions import DragRequest, load_instructions, make_operation, requests_equal
from dragnext.ui.coordinates import display_size, display_to_image_point, layers_to_mask, mask_to_layer
from dragnext.ui.runner import EditRunner
from dragnext.ui.session import Session, point_names
from dragnext.ui.settings import Settings, config_from_settings
from dragnext.ui.uploads import (
    MAX_SIDE,
    MAX_UPLOAD_BYTES,
    UIError,
    read_image_file,
    read_instruction_upload,
    write_instruction_archive,
)

SIZE = 64
ZOOM = 8  # display_size of a 64 px image is 512 px


def scene(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def box(y0: int, y1: int, x0: int, x1: int, shape=(SIZE, SIZE)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def display_click(x: float, y: float) -> list[int]:
    """The display pixel at the centre of image pixel (x, y), as Gradio reports a click on it."""
    return [int(x) * ZOOM + ZOOM // 2, int(y) * ZOOM + ZOOM // 2]


def loaded_session(seed: int = 0) -> Session:
    session = Session()
    session.load_image(scene(seed), "test")
    return session


def click_all(session: Session, op_type: str, *points) -> list[str]:
    return [session.click(display_click(*p), op_type) for p in points]


def write_png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    Image.fromarray(array, mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


# ---------------------------------------------------------------------------------------------- coordinates


def test_display_size_enlarges_small_images_by_an_integer_factor_and_shrinks_large_ones():
    assert display_size(64, 64) == (512, 512)
    assert display_size(100, 300) == (300, 900)  # zoom 6 would exceed 1024 px, so 3
    assert display_size(2048, 4096) == (512, 1024)
    assert display_size(700, 1000) == (700, 1000)


@pytest.mark.parametrize("shape", [(64, 64), (30, 42), (100, 300), (2048, 4096), (1500, 1100)])
def test_a_click_on_any_pixel_maps_back_to_that_pixel(shape):
    height, width = shape
    display_height, display_width = display_size(height, width)
    rng = np.random.default_rng(0)
    for x, y in zip(rng.integers(0, width, 50), rng.integers(0, height, 50), strict=True):
        # the display pixel nearest the image pixel's centre
        cx = min(display_width - 1, int((x + 0.5) * display_width / width))
        cy = min(display_height - 1, int((y + 0.5) * display_height / height))
        mapped = display_to_image_point([cx, cy], shape)
        if display_width >= width:  # enlarged: every pixel can be clicked exactly
            assert mapped == (float(x), float(y))
        else:  # shrunk: within one display pixel
            assert abs(mapped[0] - x) <= width / display_width and abs(mapped[1] - y) <= height / display_height
    corner = display_to_image_point([display_width - 1, display_height - 1], shape)
    assert width - 1 - corner[0] < width / display_width and height - 1 - corner[1] < height / display_height


def test_every_display_pixel_of_an_enlarged_image_maps_into_its_block():
    assert display_to_image_point([0, 0], (64, 64)) == (0, 0)
    assert display_to_image_point([7, 7], (64, 64)) == (0, 0)
    assert display_to_image_point([8, 15], (64, 64)) == (1, 1)
    assert display_to_image_point([511, 300], (64, 64)) == (63, 37)


@pytest.mark.parametrize("index", [None, [512, 10], [-1, 3], [5]])
def test_a_click_outside_the_picture_is_a_message(index):
    with pytest.raises(UIError, match="outside|Click inside"):
        display_to_image_point(index, (64, 64))


# ---------------------------------------------------------------------------------------------- painted layers


def rgba_layer(display_mask: np.ndarray, color=(255, 0, 255)) -> np.ndarray:
    layer = np.zeros((*display_mask.shape, 4), dtype=np.uint8)
    layer[display_mask] = (*color, 255)
    return layer


def test_a_painted_rgba_layer_becomes_the_region_in_image_pixels():
    painted = np.zeros((512, 512), dtype=bool)
    painted[80:160, 240:400] = True  # image rows 10..19, columns 30..49
    mask = layers_to_mask({"background": None, "layers": [rgba_layer(painted)], "composite": None}, (64, 64, 3))
    assert mask.shape == (64, 64) and mask.dtype == np.bool_
    assert np.array_equal(mask, box(10, 20, 30, 50))


def test_a_pixel_is_inside_when_at_least_half_of_its_display_block_is_painted():
    painted = np.zeros((512, 512), dtype=bool)
    painted[0:8, 0:4] = True  # half of pixel (0, 0)
    painted[0:8, 8:11] = True  # three eighths of pixel (1, 0)
    mask = layers_to_mask([rgba_layer(painted)], (64, 64))
    assert mask[0, 0] and not mask[0, 1] and mask.sum() == 1


def test_layers_are_united_and_greyscale_rgb_and_file_layers_work(tmp_path):
    first, second = np.zeros((512, 512), bool), np.zeros((512, 512), bool)
    first[0:8, 0:8] = True
    second[504:512, 504:512] = True
    grey = second.astype(np.uint8) * 200
    rgb = np.repeat(grey[..., None], 3, axis=2)
    path = write_png(tmp_path / "layer.png", rgba_layer(first))
    for layers in ([rgba_layer(first), rgba_layer(second)], [rgba_layer(first), grey], [str(path), rgb]):
        mask = layers_to_mask({"layers": layers}, (64, 64))
        assert mask.sum() == 2 and mask[0, 0] and mask[63, 63]


@pytest.mark.parametrize("value", [None, {"layers": []}, {"layers": None}, [], {"layers": [np.zeros((512, 512, 4),
                                                                                                   np.uint8)]}])
def test_nothing_painted_is_no_mask(value):
    assert layers_to_mask(value, (64, 64)) is None


def test_a_mask_restored_as_a_layer_reads_back_identically():
    mask = np.random.default_rng(3).random((30, 42)) > 0.5
    assert np.array_equal(layers_to_mask([mask_to_layer(mask)], mask.shape), mask)
    assert np.array_equal(layers_to_mask([mask_to_layer(mask, alpha=100)], mask.shape), mask)


# ---------------------------------------------------------------------------------------------- clicks -> operation


def test_point_order_per_type():
    assert point_names("translate") == point_names("deform") == ("handle", "target")
    assert point_names("rotate") == point_names("scale") == ("handle", "target", "center")
    with pytest.raises(UIError, match="operation type"):
        point_names("shear")


def test_clicks_fill_handle_then_target_and_a_further_click_starts_over():
    session = loaded_session()
    messages = click_all(session, "translate", (10, 12), (20, 12))
    assert "Handle set at (10, 12)" in messages[0] and "Next: click the target" in messages[0]
    assert "Target set at (20, 12)" in messages[1] and "Add operation" in messages[1]
    assert session.pending("translate") == {"handle": (10.0, 12.0), "target": (20.0, 12.0)}
    click_all(session, "translate", (5, 6))
    assert session.pending("translate") == {"handle": (5.0, 6.0)}


def test_rotate_takes_a_third_click_as_center_even_after_switching_type():
    session = loaded_session()
    click_all(session, "translate", (40, 20), (30, 30))
    assert session.next_point("translate") is None
    assert session.next_point("rotate") == "center"
    message = session.click(display_click(30, 20), "rotate")
    assert "Center set at (30, 20)" in message
    operation = session.add_operation("rotate", box(15, 25, 32, 48))
    assert (operation.type, operation.handle, operation.target, operation.center) == (
        "rotate", (40.0, 20.0), (30.0, 30.0), (30.0, 20.0))
    assert session.points == []


def test_a_center_is_dropped_when_the_type_does_not_use_it():
    session = loaded_session()
    click_all(session, "rotate", (40, 20), (30, 30), (30, 20))
    operation = session.add_operation("translate", box(15, 25, 32, 48))
    assert operation.center is None


@pytest.mark.parametrize(
    ("setup", "op_type", "region", "message"),
    [
        (lambda s: None, "translate", box(0, 5, 0, 5), "Load an image first"),
        (lambda s: s.load_image(scene(), ""), "translate", None, "handle region is empty"),
        (lambda s: s.load_image(scene(), ""), "translate", np.zeros((64, 64), bool), "handle region is empty"),
        (lambda s: s.load_image(scene(), ""), "translate", box(0, 5, 0, 5), "Click the handle point"),
        (lambda s: (s.load_image(scene(), ""), click_all(s, "translate", (2, 2))), "translate", box(0, 5, 0, 5),
         "Click the target point"),
        (lambda s: (s.load_image(scene(), ""), click_all(s, "rotate", (2, 2), (4, 4))), "rotate", box(0, 5, 0, 5),
         "rotate operation needs a center"),
        (lambda s: (s.load_image(scene(), ""), click_all(s, "scale", (2, 2), (4, 4))), "scale", box(0, 5, 0, 5),
         "scale operation needs a center"),
        (lambda s: (s.load_image(scene(), ""), click_all(s, "translate", (2, 2), (2, 2))), "translate",
         box(0, 5, 0, 5), "target: equals the handle"),
        (lambda s: (s.load_image(scene(), ""), click_all(s, "rotate", (2, 2), (4, 4), (2, 2))), "rotate",
         box(0, 5, 0, 5), "handle: lies on the center"),
        (lambda s: (s.load_image(scene(), ""), s.points.extend([(70.0, 20.0), (3.0, 3.0)])), "translate",
         box(0, 5, 0, 5), r"handle: point \(70, 20\) lies outside the 64x64 image"),
        (lambda s: s.load_image(scene(), ""), "translate", box(0, 5, 0, 5, shape=(32, 32)), "paint it again"),
    ],
    ids=["no-image", "no-region", "empty-region", "no-handle", "no-target", "rotate-no-center", "scale-no-center",
         "target-is-handle", "handle-on-center", "point-outside", "region-size"],
)
def test_bad_operations_give_a_clear_message_and_change_nothing(setup, op_type, region, message):
    session = Session()
    setup(session)
    points_before = list(session.points)
    with pytest.raises(UIError, match=message):
        session.add_operation(op_type, region)
    assert session.operations == [] and session.points == points_before


def test_operations_are_listed_and_removable():
    session = loaded_session()
    click_all(session, "translate", (10, 10), (20, 10))
    session.add_operation("translate", box(5, 15, 5, 15))
    click_all(session, "scale", (40, 40), (50, 50), (35, 35))
    session.add_operation("scale", box(35, 45, 35, 45))
    assert session.operation_rows() == [[1, "translate", "(10, 10)", "(20, 10)", "", 100],
                                        [2, "scale", "(40, 40)", "(50, 50)", "(35, 35)", 100]]
    assert [value for _, value in session.operation_choices()] == [0, 1]
    assert session.remove_operation(0).type == "translate"
    assert [op.type for op in session.operations] == ["scale"]
    with pytest.raises(UIError, match="Choose the operation"):
        session.remove_operation(5)
    session.remove_operation(0)
    with pytest.raises(UIError, match="no operation to remove"):
        session.remove_operation(0)


def test_running_with_no_operation_is_a_message():
    with pytest.raises(UIError, match="Load an image first"):
        Session().request()
    with pytest.raises(UIError, match="Add at least one operation"):
        loaded_session().request()


def test_the_request_is_validated_and_an_empty_editable_mask_means_none():
    session = loaded_session()
    click_all(session, "translate", (10, 10), (20, 10))
    session.add_operation("translate", box(5, 15, 5, 15))
    request = session.request(np.zeros((64, 64), bool), prompt="a cat")
    assert isinstance(request, DragRequest) and request.editable_mask is None and request.prompt == "a cat"
    assert session.request(box(0, 40, 0, 40)).editable_mask.sum() == 1600


def test_loading_an_image_resets_the_session():
    session = loaded_session()
    click_all(session, "translate", (10, 10), (20, 10))
    session.add_operation("translate", box(5, 15, 5, 15))
    session.load_image(scene(1), "other")
    assert session.operations == [] and session.points == [] and session.name == "other"


def test_pictures_have_the_display_size():
    session = loaded_session()
    click_all(session, "rotate", (40, 20), (30, 30), (30, 20))
    assert session.points_view("rotate", box(15, 25, 32, 48)).shape == (512, 512, 3)
    assert session.overlay().shape == (512, 512, 3)
    session.load_image(np.zeros((2000, 3000, 3), np.uint8))
    assert session.overlay().shape == (683, 1024, 3)


# ---------------------------------------------------------------------------------------------- uploads


def test_an_upload_is_read_as_rgb_with_transparency_on_white(tmp_path):
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[:10] = (255, 0, 0, 255)
    image = read_image_file(write_png(tmp_path / "a.png", rgba))
    assert image.shape == (20, 30, 3) and image.dtype == np.uint8
    assert tuple(image[0, 0]) == (255, 0, 0) and tuple(image[15, 0]) == (255, 255, 255)


def test_a_huge_image_is_refused_with_the_limit_before_decoding(tmp_path):
    path = write_png(tmp_path / "wide.png", np.zeros((10, MAX_SIDE + 1), np.uint8), "L")
    with pytest.raises(UIError, match=f"{MAX_SIDE + 1}x10 pixels; the limit is {MAX_SIDE} pixels per side"):
        read_image_file(path)


def test_a_huge_file_is_refused_with_the_limit(tmp_path):
    path = tmp_path / "big.png"
    with open(path, "wb") as stream:
        stream.truncate(MAX_UPLOAD_BYTES + 1)  # sparse: no disk used
    with pytest.raises(UIError, match="the limit is 20 MB"):
        read_image_file(path)


def test_a_tiny_image_and_a_non_image_are_refused(tmp_path):
    with pytest.raises(UIError, match="at least 8 pixels"):
        read_image_file(write_png(tmp_path / "tiny.png", np.zeros((4, 4, 3), np.uint8)))
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(UIError, match="not an image"):
        read_image_file(tmp_path / "notes.png")


# ---------------------------------------------------------------------------------------------- settings


def test_settings_override_the_base_config():
    config, seed = config_from_settings(BUNDLED, Settings(10, 2, 3, 0.05, False, 7))
    assert (config.num_steps, config.pbsi_timesteps, config.iterations, config.learning_rate, config.lora) == (
        10, 2, 3, 0.05, False)
    assert config.feature_blocks == BUNDLED.feature_blocks and seed == 7
    assert Settings.from_config(BUNDLED) == Settings(25, 2, 5, 0.02, False, 0, "default")


def test_the_runner_takes_the_pages_preset_and_refuses_an_unknown_one(tmp_path):
    from dragnext.config import PAPER

    editor = FakeEditor()
    runner = EditRunner(None, BUNDLED, editor=editor, presets={"paper": PAPER})
    assert list(runner.presets) == ["default", "paper"] and runner.presets["default"] is BUNDLED
    settings = Settings.from_config(PAPER, preset="paper")
    assert runner.run(ready_session(), None, settings, "", tmp_path).ok
    used = editor.calls[-1][0]
    assert used.start == "unedited" and used.feature_blocks == PAPER.feature_blocks and used.num_steps == 50
    outcome = runner.run(ready_session(), None, Settings.from_config(BUNDLED, preset="v3"), "", tmp_path)
    assert not outcome.ok and "Preset: 'v3'" in outcome.message


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (Settings(None, 2, 3, 0.1, False, 0), "Steps: enter a number"),
        (Settings(2.5, 2, 3, 0.1, False, 0), "Steps: must be a whole number from 1 to 100, got 2.5"),
        (Settings("2.5", 2, 3, 0.1, False, 0), "Steps: must be a whole number from 1 to 100, got 2.5"),
        (Settings(10, 2, 0, 0.1, False, 0), r"K \(Adam steps per timestep\): must be a whole number from 1 to 50"),
        (Settings(10, 2, 3, -1, False, 0), "Learning rate: must be a positive number"),
        (Settings(10, 2, 3, "x", False, 0), "Learning rate: 'x' is not a number"),
        (Settings(10, 2, 3, 0.1, False, -4), "Seed"),
        (Settings(10, 9, 3, 0.1, False, 0), r"pbsi_timesteps \(9\) exceeds the inverted steps"),
    ],
)
def test_bad_settings_give_a_message(settings, message):
    with pytest.raises(UIError, match=message):
        config_from_settings(BUNDLED, settings)


# ---------------------------------------------------------------------------------------------- instruction files


def two_operation_request() -> DragRequest:
    operations = (
        make_operation("translate", box(5, 15, 5, 15), (10, 10), (20, 12)),
        make_operation("rotate", box(30, 45, 30, 45), (44, 37), (37, 44), center=(37, 37)),
    )
    return DragRequest(image=scene(), operations=operations, editable_mask=box(0, 60, 0, 60), prompt="shapes")


def test_the_download_is_the_cli_format_and_restores_the_session(tmp_path):
    request = two_operation_request()
    archive = write_instruction_archive(request, tmp_path / "out")
    with zipfile.ZipFile(archive) as bundle:
        names = sorted(bundle.namelist())
        bundle.extractall(tmp_path / "unzipped")
    assert names == ["instructions/editable.png", "instructions/image.png", "instructions/instructions.json",
                     "instructions/region_0.png", "instructions/region_1.png"]
    assert requests_equal(load_instructions(tmp_path / "unzipped/instructions/instructions.json"), request)
    document = json.loads((tmp_path / "unzipped/instructions/instructions.json").read_text())
    assert document["operations"][1] == {"type": "rotate", "region": "region_1.png", "handle": [44, 37],
                                         "target": [37, 44], "center": [37, 37]}

    restored = read_instruction_upload([str(archive)], tmp_path / "work")
    assert requests_equal(restored, request)
    session = Session()
    session.restore(restored, "instructions.json")
    assert requests_equal(session.request(session.editable_mask), request)


def test_a_json_uploaded_with_its_pngs_restores_too(tmp_path):
    write_instruction_archive(two_operation_request(), tmp_path / "out")
    folder = tmp_path / "out" / "instructions"
    uploads = []
    for index, path in enumerate(sorted(folder.iterdir())):  # Gradio keeps each upload in its own folder
        (tmp_path / f"upload{index}").mkdir()
        uploads.append(tmp_path / f"upload{index}" / path.name)
        uploads[-1].write_bytes(path.read_bytes())
    assert requests_equal(read_instruction_upload(uploads, tmp_path / "work"), two_operation_request())


def test_a_json_with_inline_polygons_needs_no_pngs(tmp_path):
    write_png(tmp_path / "image.png", scene())
    (tmp_path / "edit.json").write_text(json.dumps({"image": "image.png", "operations": [
        {"type": "translate", "region": {"polygon": [[5, 5], [20, 5], [20, 20]]}, "handle": [15, 10],
         "target": [25, 10]}]}))
    (tmp_path / "upload").mkdir()
    request = read_instruction_upload([tmp_path / "edit.json", tmp_path / "image.png"], tmp_path / "work")
    assert request.operations[0].polygon is not None


@pytest.mark.parametrize(
    ("document", "files", "message"),
    [
        ({"image": "image.png", "operations": [{"type": "translate", "region": "region_0.png", "handle": [5, 5],
                                                "target": [9, 9]}]},
         ["image.png"], "region_0.png' does not exist.*upload the .json together with the PNGs"),
        ({"image": "image.png", "operations": [{"type": "translate", "region": {"polygon": [[1, 1], [9, 1], [9, 9]]},
                                                "handle": [700, 20], "target": [9, 9]}]},
         ["image.png"], r"operations\[0\].handle: point \(700, 20\) lies outside the 64x64 image"),
        ({"image": "image.png", "operations": [{"type": "rotate", "region": {"polygon": [[1, 1], [9, 1], [9, 9]]},
                                                "handle": [7, 3], "target": [9, 9]}]},
         ["image.png"], r"operations\[0\].center: required for type 'rotate'"),
        ({"image": "image.png", "operations": []}, ["image.png"], "at least one operation is required"),
    ],
    ids=["missing-png", "point-outside", "rotate-no-center", "no-operation"],
)
def test_a_bad_instruction_upload_is_a_message(tmp_path, document, files, message):
    write_png(tmp_path / "image.png", scene())
    (tmp_path / "instructions.json").write_text(json.dumps(document))
    paths = [tmp_path / "instructions.json"] + [tmp_path / name for name in files]
    with pytest.raises(UIError, match=message) as caught:
        read_instruction_upload(paths, tmp_path / "work")
    assert str(tmp_path) not in str(caught.value)  # no server paths in the page


def test_unsafe_or_broken_archives_are_refused(tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as bundle:
        bundle.writestr("../outside.json", "{}")
    with pytest.raises(UIError, match="unsafe path"):
        read_instruction_upload([evil], tmp_path / "work")
    assert not (tmp_path / "outside.json").exists()
    (tmp_path / "broken.zip").write_bytes(b"PK not really")
    with pytest.raises(UIError, match="damaged"):
        read_instruction_upload([tmp_path / "broken.zip"], tmp_path / "work")
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as bundle:
        bundle.writestr("notes.txt", "hello")
    with pytest.raises(UIError, match="No instruction file"):
        read_instruction_upload([empty], tmp_path / "work")
    with pytest.raises(UIError, match="Choose an instruction file"):
        read_instruction_upload([], tmp_path / "work")


# ---------------------------------------------------------------------------------------------- the runner


class FakeResult:
    def __init__(self, image: np.ndarray):
        self.image = image
        self.timings = {"denoise": 0.01}
        self.seconds = 0.01


class FakeEditor:
    """Inverts the image; fails when told to; records how many edits ran at once."""

    def __init__(self):
        self.fail = False
        self.running = 0
        self.most_at_once = 0
        self.calls = []
        self.guard = threading.Lock()

    def __call__(self, request, config=None, seed=0, progress=None):
        with self.guard:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            self.calls.append((config, seed))
            if progress:
                progress("denoise", 1, 1)
            time.sleep(0.05)
            if self.fail:
                raise RuntimeError("CUDA out of memory\nsecond line")
            return FakeResult(255 - request.image)
        finally:
            with self.guard:
                self.running -= 1


def ready_session() -> Session:
    session = loaded_session()
    click_all(session, "translate", (10, 10), (20, 10))
    session.add_operation("translate", box(5, 15, 5, 15))
    return session


def test_the_runner_edits_and_writes_the_downloads(tmp_path):
    editor = FakeEditor()
    runner = EditRunner(None, BUNDLED, editor=editor)
    phases = []
    outcome = runner.run(ready_session(), None, Settings(10, 2, 3, 0.1, False, 5), "", tmp_path,
                         progress=lambda *a: phases.append(a))
    assert outcome.ok and outcome.message.startswith("Done in")
    assert phases == [("denoise", 1, 1)]
    assert editor.calls[0][0].num_steps == 10 and editor.calls[0][1] == 5
    edited, archive = outcome.files
    assert np.array_equal(np.asarray(Image.open(edited)), 255 - scene())
    assert requests_equal(read_instruction_upload([archive], tmp_path / "w"), ready_session().request())
    assert outcome.input_view.shape == outcome.result_view.shape == (512, 512, 3)


def test_a_failed_edit_is_a_message_and_the_next_one_runs(tmp_path, caplog):
    editor = FakeEditor()
    runner = EditRunner(None, BUNDLED, editor=editor)
    editor.fail = True
    outcome = runner.run(ready_session(), None, Settings(10, 2, 3, 0.1, False, 0), "", tmp_path)
    assert not outcome.ok
    assert outcome.message.startswith("The edit failed (RuntimeError: CUDA out of memory second line)")
    assert "\n" not in outcome.message and "edit failed" in caplog.text
    editor.fail = False
    assert runner.run(ready_session(), None, Settings(10, 2, 3, 0.1, False, 0), "", tmp_path).ok


def test_bad_input_to_the_runner_is_a_message(tmp_path):
    runner = EditRunner(None, BUNDLED, editor=FakeEditor())
    assert "Add at least one operation" in runner.run(loaded_session(), None, Settings.from_config(BUNDLED), "",
                                                      tmp_path).message
    assert "Steps" in runner.run(ready_session(), None, Settings(0, 2, 3, 0.1, False, 0), "", tmp_path).message


def test_edits_run_one_at_a_time(tmp_path):
    editor = FakeEditor()
    runner = EditRunner(None, BUNDLED, editor=editor)
    threads = [threading.Thread(target=runner.run, args=(ready_session(), None, Settings(10, 2, 3, 0.1, False, 0),
                                                         "", tmp_path)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(editor.calls) == 4 and editor.most_at_once == 1


@pytest.mark.slow
def test_the_runner_calls_the_real_editor_on_the_bundled_model(tmp_path):
    """The page's path end to end without a browser: the same DragEditor call as the CLI, fast settings."""
    import torch

    from dragnext.demo import example_edits
    from dragnext.models import load_backbone

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        edit = example_edits()[0]
        operation = edit.request.operations[0]
        session = Session()
        session.load_image(edit.request.image)
        session.points = [(float(int(x)), float(int(y))) for x, y in (operation.handle, operation.target)]
        session.add_operation(operation.type, operation.region)
        runner = EditRunner(load_backbone("bundled", device="cpu"), BUNDLED.override(num_steps=10, pbsi_timesteps=2,
                                                                                      iterations=3))
        outcome = runner.run(session, None, Settings.from_config(runner.base_config), "", tmp_path)
    finally:
        torch.set_num_threads(previous)
    assert outcome.ok, outcome.message
    changed = np.abs(outcome.result.image.astype(int) - edit.request.image.astype(int)).sum(axis=2) > 30
    assert changed[operation.region].mean() > 0.2


def test_the_runner_edits_with_a_stable_diffusion_model_prompt_and_lora(tiny_sd, tmp_path):
    """``--model`` may name a Stable Diffusion folder: the page's settings (LoRA, prompt) reach its editor."""
    from dragnext.config import PAPER

    base = PAPER.override(num_steps=6, strength=0.5, pbsi_timesteps=2, iterations=2, lora_steps=1,
                          feature_blocks=("up_blocks.0", "up_blocks.1"), mutual_attention_start_layer=2)
    runner = EditRunner(tiny_sd.backbone, base)
    session = Session()
    session.load_image(np.random.default_rng(21).integers(0, 256, (30, 42, 3), dtype=np.uint8))
    session.points = [(10.0, 10.0), (16.0, 12.0)]
    session.add_operation("translate", box(5, 15, 5, 15, shape=(30, 42)))
    phases = []
    outcome = runner.run(session, box(0, 25, 0, 35, shape=(30, 42)), Settings.from_config(base, seed=3), "a photo",
                         tmp_path, progress=lambda phase, done, total: phases.append(phase))
    assert outcome.ok, outcome.message
    assert "lora" in phases and outcome.result.image.shape == (30, 42, 3)
    restored = read_instruction_upload([outcome.files[1]], tmp_path / "w")
    assert restored.prompt == "a photo" and restored.editable_mask.sum() == 25 * 35


# ---------------------------------------------------------------------------------------------- the command


def test_only_the_layout_and_its_handlers_import_gradio():
    source = Path(__file__).resolve().parents[1] / "src" / "dragnext"
    importing = sorted(str(p.relative_to(source)) for p in source.rglob("*.py")
                       if "import gradio" in p.read_text() or "from gradio" in p.read_text())
    assert importing == ["ui/app.py", "ui/handlers.py"]
    code = ("import sys, dragnext.ui, dragnext.ui.session, dragnext.ui.settings, dragnext.ui.runner, dragnext.cli.ui\n"
            "import dragnext.ui.selecting\n"
            "assert 'gradio' not in sys.modules and 'torch' not in sys.modules, 'imported too much'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def parse_ui(argv: list[str]) -> argparse.Namespace:
    from dragnext.cli.ui import add_ui_parser

    parser = argparse.ArgumentParser(prog="dragnext")
    add_ui_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["ui", *argv])


def test_the_command_defaults_to_loopback_the_bundled_model_and_no_share_link():
    from dragnext.ui.runner import DEFAULT_TIME_LIMIT

    args = parse_ui([])
    assert (args.host, args.port, args.model, args.share, args.fast) == ("127.0.0.1", 7860, "bundled", False, False)
    assert args.time_limit == DEFAULT_TIME_LIMIT
    args = parse_ui(["--host", "0.0.0.0", "--port", "8000", "--model", "some/sd", "--share"])
    assert (args.host, args.port, args.model, args.share) == ("0.0.0.0", 8000, "some/sd", True)


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_a_bad_time_limit_is_one_line_and_exit_2_before_the_model_loads(value, capsys):
    args = parse_ui(["--time-limit", value, "--model", "/no/such/model"])
    assert args.run(args) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and error.startswith("dragnext: error: --time-limit:")


def test_a_model_that_cannot_be_loaded_is_one_line_and_exit_1(tmp_path, capsys):
    args = parse_ui(["--model", str(tmp_path / "no-such-model")])
    assert args.run(args) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and error.startswith("dragnext: error:")
    assert "no model folder" in error or "pip install 'dragnext[ui]'" in error


def test_python_m_dragnext_ui_shows_help():
    result = subprocess.run([sys.executable, "-m", "dragnext.ui", "--help"], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0 and "--port" in result.stdout and "--fast" not in result.stdout


def test_edit_config_has_the_settings_the_page_shows():
    from dataclasses import fields

    from dragnext.ui.settings import PAGE_FIELDS

    names = {"num_steps", "pbsi_timesteps", "iterations", "learning_rate", "lora"}
    assert {f.name for f in PAGE_FIELDS} == names and names <= set(EditConfig.__dataclass_fields__)
    # the page's settings are those EditConfig fields under their own names, then the seed and the preset
    assert [f.name for f in fields(Settings)] == [f.name for f in PAGE_FIELDS] + ["seed", "preset"]
    config, _ = config_from_settings(BUNDLED, Settings.from_config(BUNDLED))
    assert config == BUNDLED
    assert type(config_from_settings(BUNDLED, Settings(10.0, 2.0, 3.0, 0.1, 1, 0))[0].num_steps) is int


def test_page_images_are_served_from_files_written_once(tmp_path):
    """Gradio rewrites its cache file for every returned array, which a browser may be reading (a truncated
    response); the page returns content-named files instead, written only the first time."""
    from dragnext.ui.workspace import serve_once

    image = np.random.default_rng(3).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    first = Path(serve_once(image, tmp_path / "views"))
    stamp = first.stat().st_mtime_ns, first.stat().st_ino
    again = Path(serve_once(image.copy(), tmp_path / "views"))
    assert again == first and (again.stat().st_mtime_ns, again.stat().st_ino) == stamp
    other = Path(serve_once(image[:, :9], tmp_path / "views"))
    assert other != first
    with Image.open(first) as picture:
        assert np.array_equal(np.asarray(picture), image)


# ---------------------------------------------------------------------------------------- rounds (continue)


def test_continue_from_a_result_starts_a_round_and_undo_goes_back(tmp_path):
    runner = EditRunner(None, BUNDLED, editor=FakeEditor())
    session = ready_session()
    first_image, first_operations = session.image, list(session.operations)
    with pytest.raises(UIError, match="Run an edit first"):
        session.continue_from_result()
    outcome = runner.run(session, None, Settings.from_config(BUNDLED), "", tmp_path)
    assert outcome.ok
    message = session.continue_from_result()
    assert "Round 2" in message
    np.testing.assert_array_equal(session.image, outcome.result.image)  # the result is the next input
    assert session.operations == [] and session.editable_mask is None and len(session.rounds) == 1
    # a second round, then back to the first: its picture and operations, and its result to continue from again
    click_all(session, "translate", (30, 30), (34, 30))
    session.add_operation("translate", box(25, 35, 25, 35))
    assert runner.run(session, None, Settings.from_config(BUNDLED), "", tmp_path).ok
    assert len(session.all_rounds()) == 2
    assert "Back to round 1" in session.undo_round()
    np.testing.assert_array_equal(session.image, first_image)
    assert session.operations == first_operations and session.rounds == []
    np.testing.assert_array_equal(session.last_edit.result, outcome.result.image)
    with pytest.raises(UIError, match="no earlier round"):
        session.undo_round()
    session.load_image(scene(3))  # another picture: no history
    assert session.all_rounds() == []


def test_all_rounds_download_as_instruction_files_that_chain(tmp_path):
    import zipfile

    from dragnext.ui.uploads import write_rounds_archive

    runner = EditRunner(None, BUNDLED, editor=FakeEditor())
    session = ready_session()
    assert runner.run(session, None, Settings.from_config(BUNDLED), "", tmp_path).ok
    session.continue_from_result()
    click_all(session, "translate", (30, 30), (34, 30))
    session.add_operation("translate", box(25, 35, 25, 35))
    assert runner.run(session, None, Settings.from_config(BUNDLED), "", tmp_path).ok
    archive = write_rounds_archive([(r.request, r.result) for r in session.all_rounds()], tmp_path / "out")
    with zipfile.ZipFile(archive) as bundle:
        names = set(bundle.namelist())
        bundle.extractall(tmp_path / "unzipped")
    assert {"rounds/round_1/instructions.json", "rounds/round_1/edited.png", "rounds/round_2/instructions.json",
            "rounds/round_2/edited.png"} <= names
    second = load_instructions(tmp_path / "unzipped" / "rounds" / "round_2" / "instructions.json")
    with Image.open(tmp_path / "unzipped" / "rounds" / "round_1" / "edited.png") as first_result:
        np.testing.assert_array_equal(second.image, np.asarray(first_result.convert("RGB")))
    with pytest.raises(UIError, match="No round to download"):
        write_rounds_archive([], tmp_path / "none")


@pytest.mark.slow
def test_running_the_same_picture_again_reuses_its_inversion(tmp_path):
    import torch

    from dragnext.models import load_backbone

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runner = EditRunner(load_backbone("bundled", device="cpu"), BUNDLED.override(num_steps=10))
        session = ready_session()
        first = runner.run(session, None, Settings.from_config(runner.base_config), "", tmp_path)
        session.operations = []
        click_all(session, "translate", (10, 10), (14, 16))
        session.add_operation("translate", box(5, 15, 5, 15))
        second = runner.run(session, None, Settings.from_config(runner.base_config), "", tmp_path)
    finally:
        torch.set_num_threads(previous)
    assert first.ok and second.ok
    assert first.result.reused == () and second.result.reused == ("inversion",)
    assert "Reused this picture's inversion" in second.message
    assert first.result.passes.forward - second.result.passes.forward == runner.base_config.inversion_steps
