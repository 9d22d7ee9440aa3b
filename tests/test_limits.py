"""Tests for input limits and file checks: hostile or odd files give one line, never a hang or a blow-up.

Covers :mod:`dragnext.limits` directly and through :func:`dragnext.instructions.load_instructions`
(regular files only, sizes checked from the header before decoding, high bit depths scaled, alpha-only
masks, paths confined to an upload folder).
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dragnext.instructions import InstructionError, load_instructions, validate_request
from dragnext.limits import (
    DEFAULT_LIMITS,
    UI_LIMITS,
    InputError,
    Limits,
    check_regular_file,
    read_image,
    read_limited_bytes,
)

WIDTH, HEIGHT = 40, 30
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")


def region_array() -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[2:8, 2:8] = 255
    return mask


def write_folder(folder: Path) -> dict:
    """image.png + region.png in ``folder``; returns a valid instruction document naming them."""
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)).save(folder / "image.png")
    Image.fromarray(region_array()).save(folder / "region.png")
    return {
        "image": "image.png",
        "operations": [{"type": "translate", "region": "region.png", "handle": [5, 5], "target": [12, 6]}],
    }


def write_json(folder: Path, document: dict, name: str = "instructions.json") -> Path:
    path = folder / name
    path.write_text(json.dumps(document))
    return path


def load_error(path: Path, **kwargs) -> str:
    with pytest.raises(InstructionError) as info:
        load_instructions(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    return message


def write_png(path: Path, width: int, height: int, bit_depth: int, colour_type: int,
              rows: Callable[[], Iterable[bytes]]) -> None:
    """Write a PNG chunk by chunk, so a huge declared size costs only its compressed bytes (and no PIL)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(b"\x00" + row) for row in rows()) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def write_blank_1bit_png(path: Path, width: int, height: int) -> None:
    """A valid all-black 1-bit PNG: a few KB on disk however large it claims to be."""
    row = bytes((width + 7) // 8)
    write_png(path, width, height, 1, 0, lambda: (row for _ in range(height)))


def finishes_within(seconds: float, work: Callable[[], object]) -> object:
    """Run ``work`` in a thread; fail (instead of hanging the suite) if it has not returned in time."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = work()
        except BaseException as error:  # handed back to the test below
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s (blocked on a FIFO?)"
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome.get("value")


def unblock_fifo(path: Path) -> None:
    """If a reader is stuck opening ``path``, open it for writing so the reader (and the test) can end."""
    with contextlib.suppress(OSError):  # no reader waiting (the normal case) makes this open fail
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


# ------------------------------------------------------------------------------------------ one error type


def test_instruction_error_is_the_input_error() -> None:
    assert InstructionError is InputError
    assert issubclass(InputError, ValueError)


def test_limits_are_positive_integers() -> None:
    assert UI_LIMITS.max_side < DEFAULT_LIMITS.max_side and UI_LIMITS.max_pixels < DEFAULT_LIMITS.max_pixels
    with pytest.raises(ValueError, match="max_side"):
        Limits(max_side=0)
    with pytest.raises(ValueError, match="max_operations"):
        Limits(max_operations=2.5)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------- regular files


@needs_fifo
@pytest.mark.parametrize("field", ["image", "region", "instructions"])
def test_a_fifo_is_refused_without_hanging(tmp_path: Path, field: str) -> None:
    document = write_folder(tmp_path)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    if field == "image":
        document["image"] = "pipe"
        path = write_json(tmp_path, document)
    elif field == "region":
        document["operations"][0]["region"] = "pipe"
        path = write_json(tmp_path, document)
    else:
        path = fifo
    try:
        with pytest.raises(InstructionError) as info:
            finishes_within(5, lambda: load_instructions(path))
    finally:
        unblock_fifo(fifo)
    where = "operations[0].region" if field == "region" else field
    assert str(info.value).startswith(f"{where}: ")
    assert "is a named pipe (FIFO), not a regular file" in str(info.value)


@needs_fifo
def test_read_image_refuses_a_fifo_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    try:
        with pytest.raises(InputError, match=r"^mask: 'pipe.png' is a named pipe"):
            finishes_within(5, lambda: read_image(fifo, "mask", "L", name="pipe.png"))
    finally:
        unblock_fifo(fifo)


def test_a_device_and_a_folder_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^image: '.*' is a folder, not a regular file$"):
        check_regular_file(tmp_path, "image")
    if Path("/dev/zero").exists():
        with pytest.raises(InputError, match=r"^instructions: '/dev/zero' is a device, not a regular file$"):
            finishes_within(5, lambda: read_limited_bytes("/dev/zero", "instructions", 1024))


def test_a_link_to_a_regular_file_is_fine(tmp_path: Path) -> None:
    (tmp_path / "real.txt").write_text("hello")
    (tmp_path / "link.txt").symlink_to(tmp_path / "real.txt")
    assert read_limited_bytes(tmp_path / "link.txt", "notes", 100) == b"hello"


def test_missing_file_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        check_regular_file(tmp_path / "nope.png", "image", name="nope.png")
    assert str(info.value) == f"image: 'nope.png' does not exist (looked for {tmp_path / 'nope.png'})"


def test_a_huge_file_name_is_shortened_in_messages(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        check_regular_file(tmp_path / ("x" * 5000), "image", name="x" * 5000)
    assert len(str(info.value)) < 300


# ------------------------------------------------------------------------------------------------ JSON size


def test_instruction_file_over_the_size_limit(tmp_path: Path) -> None:
    path = write_json(tmp_path, write_folder(tmp_path))
    message = load_error(path, limits=Limits(max_json_bytes=64))
    assert message == f"instructions: '{path}' is larger than the 64 bytes limit"


def test_read_limited_bytes_at_and_over_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"a" * 100)
    assert read_limited_bytes(path, "data", 100) == b"a" * 100
    with pytest.raises(InputError, match=r"^data: '.*data.bin' is larger than the 99 bytes limit$"):
        read_limited_bytes(path, "data", 99)
    assert UI_LIMITS.max_json_bytes == 2 * 1024 * 1024


def test_operation_count_is_capped_before_any_mask_is_read(tmp_path: Path) -> None:
    document = write_folder(tmp_path)
    document["operations"] = document["operations"] * 3
    document["image"] = "not-there.png"  # never reached: the count is checked first
    message = load_error(write_json(tmp_path, document), limits=Limits(max_operations=2))
    assert message == "operations: 3 operations, more than the limit of 2"
    assert "more than the limit of 64" in load_error(
        write_json(tmp_path, dict(document, operations=document["operations"] * 22))
    )


def test_polygon_points_are_capped(tmp_path: Path) -> None:
    document = write_folder(tmp_path)
    square = [[2, 2], [7, 2], [7, 7], [2, 7]]
    document["operations"][0]["region"] = {"polygon": square * 3}
    message = load_error(write_json(tmp_path, document), limits=Limits(max_polygon_points=10))
    assert message == "operations[0].region.polygon: 12 points, more than the limit of 10"


# ------------------------------------------------------------------------------------ image size and decoding


def test_image_over_the_side_limit(tmp_path: Path) -> None:
    document = write_folder(tmp_path)
    path = write_json(tmp_path, document)
    assert load_error(path, limits=Limits(max_side=32)) == (
        "image: 'image.png' (40x30) is larger than the 32 px per side limit"
    )
    assert load_error(path, limits=Limits(max_pixels=1000)) == (
        "image: 'image.png' (40x30) has 1,200 pixels, more than the 1,000 pixel limit"
    )


def test_a_9600_px_image_is_refused_by_the_default_limit(tmp_path: Path) -> None:
    write_blank_1bit_png(tmp_path / "big.png", 9600, 9600)
    with pytest.raises(InputError) as info:
        read_image(tmp_path / "big.png", "image", name="big.png")
    assert str(info.value) == "image: 'big.png' (9600x9600) is larger than the 8192 px per side limit"


def test_ui_limits_are_stricter(tmp_path: Path) -> None:
    write_blank_1bit_png(tmp_path / "wide.png", 5000, 8)
    assert read_image(tmp_path / "wide.png", "image").shape == (8, 5000, 3)
    with pytest.raises(InputError, match="larger than the 4096 px per side limit"):
        read_image(tmp_path / "wide.png", "image", limits=UI_LIMITS)


_MEMORY_PROBE = """
import resource, sys
from dragnext.limits import InputError, read_image
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
messages = []
for path in sys.argv[1:]:
    try:
        read_image(path, "image", "RGB")
        messages.append("loaded")
    except InputError as error:
        messages.append(str(error))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) // 1024)
print("|".join(messages))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux")
def test_size_is_checked_from_the_header_before_decoding(tmp_path: Path) -> None:
    """A few-KB PNG declaring 9000 x 9000 (81 M pixels, under PIL's own bomb guard) or 20000 x 20000 (over
    it) is refused with our message while the process's peak memory stays where it was: decoding the first
    alone would take 81 MB as 1-bit and 243 MB as RGB."""
    paths = [tmp_path / "wide.png", tmp_path / "huge.png"]
    write_blank_1bit_png(paths[0], 9000, 9000)
    write_blank_1bit_png(paths[1], 20000, 20000)
    assert all(path.stat().st_size < 200_000 for path in paths)
    result = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, *map(str, paths)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no DecompressionBombWarning either
    grown_mb, messages = result.stdout.strip().splitlines()
    first, second = messages.split("|")
    assert first == f"image: '{paths[0]}' (9000x9000) is larger than the 8192 px per side limit"
    assert second == f"image: '{paths[1]}' has more than the 40,000,000 pixel limit"
    assert int(grown_mb) < 20, f"peak memory grew by {grown_mb} MB"


def test_a_format_outside_the_list_is_not_read(tmp_path: Path) -> None:
    Image.new("RGB", (16, 16), "red").save(tmp_path / "icon.ico")
    with pytest.raises(InputError, match=r"^image: 'icon.ico' is not an image file in a format read here"):
        read_image(tmp_path / "icon.ico", "image", name="icon.ico")


def test_a_corrupt_image_is_one_line(tmp_path: Path) -> None:
    write_folder(tmp_path)
    data = (tmp_path / "image.png").read_bytes()
    (tmp_path / "bad.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"^image: cannot read 'bad.png': "):
        read_image(tmp_path / "bad.png", "image", name="bad.png")


# --------------------------------------------------------------------------------------- bit depth and alpha


def test_16bit_mask_with_a_faint_background_is_scaled_not_clipped(tmp_path: Path) -> None:
    """Clipping at 255 would turn the faint background (1000 of 65535) white, i.e. the whole image."""
    wide = np.full((HEIGHT, WIDTH), 1000, np.uint16)
    wide[2:8, 2:8] = 65535
    Image.fromarray(wide).save(tmp_path / "mask16.png")
    assert Image.open(tmp_path / "mask16.png").mode == "I;16"
    mask = read_image(tmp_path / "mask16.png", "mask", "L")
    assert mask.dtype == np.uint8 and mask[0, 0] == 4 and mask[5, 5] == 255
    document = write_folder(tmp_path)
    document["operations"][0]["region"] = "mask16.png"
    region = load_instructions(write_json(tmp_path, document)).operations[0].region
    assert np.array_equal(region, region_array() > 0)


def test_16bit_file_holding_8bit_values_reads_as_8bit(tmp_path: Path) -> None:
    """A mask stored wide but holding 0/255 (``uint16(mask) * 255``) must not become empty."""
    Image.fromarray(region_array().astype(np.uint16)).save(tmp_path / "wide.png")
    assert np.array_equal(read_image(tmp_path / "wide.png", "mask", "L"), region_array())


def test_16bit_image_is_scaled_in_rgb_too(tmp_path: Path) -> None:
    ramp = (np.arange(WIDTH * HEIGHT, dtype=np.uint32).reshape(HEIGHT, WIDTH) * 54).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "grey16.png")
    image = read_image(tmp_path / "grey16.png", "image", "RGB")
    expected = np.rint(ramp.astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert image.shape == (HEIGHT, WIDTH, 3)
    assert np.array_equal(image[..., 0], expected) and np.array_equal(image[..., 2], expected)


def test_16bit_rgb_png_keeps_the_high_byte(tmp_path: Path) -> None:
    rgb16 = np.zeros((4, 4, 3), np.uint16)
    rgb16[..., 0] = 0x8000
    rgb16[..., 1] = 0x0100
    rgb16[..., 2] = 0xFFFF
    write_png(tmp_path / "rgb16.png", 4, 4, 16, 2, lambda: (row.astype(">u2").tobytes() for row in rgb16))
    image = read_image(tmp_path / "rgb16.png", "image", "RGB")
    assert image[0, 0].tolist() == [128, 1, 255]


@pytest.mark.parametrize(("values", "expected"), [([0.0, 0.5, 1.0], [0, 128, 255]),
                                                  ([0.0, 100.0, 255.0], [0, 100, 255]),
                                                  ([-5.0, float("nan"), 65535.0], [0, 0, 255])])
def test_float_images_are_read_in_their_range(tmp_path: Path, values: list[float], expected: list[int]) -> None:
    Image.fromarray(np.array([values], np.float32)).save(tmp_path / "float.tif")
    assert read_image(tmp_path / "float.tif", "mask", "L")[0].tolist() == expected


@pytest.mark.parametrize("colour", [(0, 0, 0), (255, 255, 255)])
def test_mask_painted_only_in_alpha_is_read_from_alpha(tmp_path: Path, colour: tuple[int, int, int]) -> None:
    """The UI's rule: strokes on a transparent layer count by their alpha, whatever their (one) colour."""
    rgba = np.zeros((HEIGHT, WIDTH, 4), np.uint8)
    rgba[..., :3] = colour
    rgba[..., 3] = region_array()
    Image.fromarray(rgba).save(tmp_path / "strokes.png")
    assert np.array_equal(read_image(tmp_path / "strokes.png", "mask", "L"), region_array())
    grey_alpha = np.stack([np.full((HEIGHT, WIDTH), colour[0], np.uint8), region_array()], axis=-1)
    Image.fromarray(grey_alpha).save(tmp_path / "strokes_la.png")  # H x W x 2: mode "LA"
    assert np.array_equal(read_image(tmp_path / "strokes_la.png", "mask", "L"), region_array())


def test_rgba_mode_keeps_transparency_for_the_caller(tmp_path: Path) -> None:
    rgba = np.zeros((HEIGHT, WIDTH, 4), np.uint8)
    rgba[..., 3] = region_array()
    Image.fromarray(rgba).save(tmp_path / "cut_out.png")
    assert np.array_equal(read_image(tmp_path / "cut_out.png", "image", "RGBA"), rgba)
    Image.fromarray(np.full((HEIGHT, WIDTH), 65535, np.uint16)).save(tmp_path / "white16.png")
    assert read_image(tmp_path / "white16.png", "image", "RGBA")[0, 0].tolist() == [255, 255, 255, 255]
    with pytest.raises(ValueError, match="mode must be one of"):
        read_image(tmp_path / "cut_out.png", "image", "CMYK")


def test_mask_with_colour_and_opaque_alpha_reads_its_colour(tmp_path: Path) -> None:
    rgba = np.full((HEIGHT, WIDTH, 4), 255, np.uint8)
    rgba[..., :3] = region_array()[..., None]
    Image.fromarray(rgba).save(tmp_path / "white_on_black.png")
    assert np.array_equal(read_image(tmp_path / "white_on_black.png", "mask", "L"), region_array())


def test_palette_and_1bit_masks_read_as_before(tmp_path: Path) -> None:
    region = Image.fromarray(region_array())
    region.convert("1").save(tmp_path / "one_bit.png")
    region.convert("P").save(tmp_path / "palette.png")
    for name in ("one_bit.png", "palette.png"):
        assert np.array_equal(read_image(tmp_path / name, "mask", "L") > 127, region_array() > 0), name


def test_validate_request_applies_limits_only_when_given(tmp_path: Path) -> None:
    document = write_folder(tmp_path)
    document["operations"] *= 2
    request = load_instructions(write_json(tmp_path, document))
    assert validate_request(request) is request
    with pytest.raises(InstructionError, match=r"^image: 40x30 is larger than the 16 px per side limit$"):
        validate_request(request, limits=Limits(max_side=16))
    with pytest.raises(InstructionError, match=r"^operations: 2 operations, more than the limit of 1$"):
        validate_request(request, limits=Limits(max_operations=1))


# --------------------------------------------------------------------------------------- paths inside a root


def outside_message(value: str) -> str:
    return f"image: {value!r} is outside the uploaded files"


def test_paths_outside_the_root_are_refused_alike_whether_or_not_they_exist(tmp_path: Path) -> None:
    upload = tmp_path / "upload"
    upload.mkdir()
    document = write_folder(upload)
    write_folder(tmp_path)  # tmp_path/image.png exists, one level above the upload
    cases = ["../image.png", "../missing.png", str(tmp_path / "image.png"), str(tmp_path / "missing.png"),
             "/etc/passwd", "/no/such/file.png", "sub/../../image.png"]
    for value in cases:
        document["image"] = value
        path = write_json(upload, document)
        assert load_error(path, root=upload) == outside_message(value), value
    # The CLI (no root) still opens any path the user typed.
    document["image"] = "../image.png"
    assert load_instructions(write_json(upload, document)).image.shape == (HEIGHT, WIDTH, 3)


def test_a_link_out_of_the_root_is_refused_and_one_inside_is_followed(tmp_path: Path) -> None:
    upload = tmp_path / "upload"
    upload.mkdir()
    document = write_folder(upload)
    write_folder(tmp_path)
    (upload / "escape.png").symlink_to(tmp_path / "image.png")
    (upload / "dangling.png").symlink_to(tmp_path / "missing.png")
    (upload / "alias.png").symlink_to(upload / "image.png")
    for value in ("escape.png", "dangling.png"):
        document["image"] = value
        assert load_error(write_json(upload, document), root=upload) == outside_message(value)
    document["image"] = "alias.png"
    assert load_instructions(write_json(upload, document), root=upload).image.shape == (HEIGHT, WIDTH, 3)


def test_files_inside_the_root_work_from_a_subfolder(tmp_path: Path) -> None:
    """The UI's .zip holds ``name/instructions.json`` and its PNGs; the root is the folder it unpacks to."""
    bundle = tmp_path / "upload" / "instructions"
    bundle.mkdir(parents=True)
    document = write_folder(bundle)
    request = load_instructions(write_json(bundle, document), root=tmp_path / "upload")
    assert request.operations[0].region.sum() == 36
    document["image"] = "missing.png"
    assert load_error(write_json(bundle, document), root=tmp_path / "upload").startswith(
        "image: 'missing.png' does not exist"
    )


# ------------------------------------------------------------------------------------------ hostile numbers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"handle": ' + "[" * 100_000 + "]" * 100_000, "is not valid JSON: nested too deeply"),
        ('"handle": ' + "[" * 900 + "]" * 900, "operations[0].handle: expected [x, y] with two numbers"),
        ('"handle": [5, ' + "9" * 400 + "]", "operations[0].handle: coordinates must be finite numbers"),
        ('"handle": [5, ' + "9" * 5000 + "]", "is not valid JSON: a number has too many digits"),
        ('"handle": [5, 1e400]', "operations[0].handle: coordinates must be finite numbers"),
        ('"handle": [1e308, 5]', "operations[0].handle: point (1e+308, 5) lies outside the 40x30 image"),
    ],
    ids=["deep-nesting", "nested-point", "400-digits", "5000-digits", "1e400", "1e308"],
)
def test_hostile_numbers_give_one_line(tmp_path: Path, text: str, expected: str) -> None:
    write_folder(tmp_path)
    path = tmp_path / "instructions.json"
    path.write_text('{"image": "image.png", "operations": [{"type": "translate", "region": "region.png", '
                    + text + ', "target": [12, 6]}]}')
    message = load_error(path)
    assert expected in message and len(message) < 300
