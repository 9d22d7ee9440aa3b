"""Property-based tests: whatever the input, the parsers answer with a valid value or our one error type.

- :func:`dragnext.instructions.load_instructions`: any JSON-like value in any field (and any bytes as the
  file), with and without an upload root, gives a valid :class:`DragRequest` or an ``InstructionError``
  with a one-line message: never another exception, never a hang (each load runs under a time guard, and
  the paths it may name include a FIFO and a folder).
- :func:`dragnext.cli.common.parse_override`: any ``--set`` text gives ``(key, value)`` or a ``CliError``.

Example counts are bounded so the whole file runs in a few seconds.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from dragnext.cli.common import CliError, parse_override
from dragnext.config import EditConfig
from dragnext.instructions import (
    OPERATION_TYPES,
    DragRequest,
    InstructionError,
    load_instructions,
    validate_request,
)

WIDTH, HEIGHT = 40, 30
LOAD_SECONDS = 10  # generous for a loaded machine; a FIFO opened by mistake would block forever

# Fewer examples than hypothesis's default 100 where each one writes and reads files.
FILE_SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def within_time(work: Callable[[], object]) -> object:
    """Run ``work`` in a thread and fail if it does not return in time, so a hang fails instead of blocking."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = work()
        except BaseException as error:  # handed back below
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(LOAD_SECONDS)
    assert not thread.is_alive(), "load_instructions did not return (blocked on a FIFO?)"
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome.get("value")


@pytest.fixture(scope="module")
def upload(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An upload folder with good, odd and hostile files for the JSON to name, and one file outside it."""
    root = tmp_path_factory.mktemp("properties")
    folder = root / "upload"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)).save(folder / "image.png")
    region = np.zeros((HEIGHT, WIDTH), np.uint8)
    region[2:8, 2:8] = 255
    Image.fromarray(region).save(folder / "region.png")
    Image.fromarray(region.astype(np.uint16) * 257).save(folder / "mask16.png")
    alpha = np.zeros((HEIGHT, WIDTH, 4), np.uint8)
    alpha[..., 3] = region
    Image.fromarray(alpha).save(folder / "alpha.png")
    Image.fromarray(np.ones((5, 5), np.uint8) * 255).save(folder / "small.png")
    (folder / "notes.txt").write_text("not a picture")
    (folder / "sub").mkdir()
    (root / "secret.png").write_bytes((folder / "image.png").read_bytes())
    (folder / "escape.png").symlink_to(root / "secret.png")
    if hasattr(os, "mkfifo"):
        os.mkfifo(folder / "pipe")
    return folder


FILE_NAMES = ["image.png", "region.png", "mask16.png", "alpha.png", "small.png", "notes.txt", "sub", "pipe",
              "escape.png", "missing.png", "../secret.png", "/etc/passwd", "", " ", ".", "sub/../image.png",
              "a\x00b", "\ud800"]

# JSON values of every kind, including the ones json writes as NaN / Infinity and integers past float range.
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)
def mostly(usual: st.SearchStrategy, odd: st.SearchStrategy) -> st.SearchStrategy:
    """``usual`` four times in five, else ``odd``: each example then breaks a few fields, not all, so the
    loader's later checks (images, polygons, validation) are reached too."""
    return st.integers(0, 4).flatmap(lambda pick: odd if pick == 0 else usual)


coordinates = st.integers(-60, 100) | st.floats(-100, 100) | st.floats(allow_nan=True, allow_infinity=True)
inside_points = st.tuples(st.integers(0, WIDTH - 1), st.integers(0, HEIGHT - 1)).map(list)
points = mostly(inside_points, st.lists(coordinates, max_size=3) | json_values)
polygons = st.fixed_dictionaries({"polygon": st.lists(mostly(inside_points, points), max_size=6)})
file_paths = mostly(st.sampled_from(FILE_NAMES), st.text(max_size=30) | json_values)
regions = mostly(st.sampled_from(["region.png", "alpha.png", "mask16.png"]) | polygons, file_paths | json_values)
operations = mostly(
    st.fixed_dictionaries(
        {
            "type": mostly(st.sampled_from(OPERATION_TYPES), json_values),
            "region": regions,
            "handle": points,
            "target": points,
        },
        optional={"center": points},
    ),
    json_values,
)
documents = mostly(
    st.fixed_dictionaries(
        {
            "image": mostly(st.just("image.png"), file_paths),
            "operations": mostly(st.lists(operations, min_size=1, max_size=3), json_values),
        },
        optional={"editable_mask": mostly(st.sampled_from(["region.png", "image.png"]), file_paths),
                  "prompt": mostly(st.text(max_size=20), json_values)},
    ),
    json_values | st.dictionaries(st.sampled_from(["image", "operations", "strength"]), json_values),
)


def assert_request_or_one_line_error(path: Path, root: Path | None) -> None:
    try:
        request = within_time(lambda: load_instructions(path, root=root))
    except InstructionError as error:
        message = str(error)
        assert message and "\n" not in message and "\r" not in message, repr(message)
        assert len(message) < 1000, message
        return
    assert isinstance(request, DragRequest)
    assert request.image.shape == (HEIGHT, WIDTH, 3) and request.image.dtype == np.uint8
    assert validate_request(request) is request
    for operation in request.operations:
        assert all(math.isfinite(v) for v in (*operation.handle, *operation.target))


@FILE_SETTINGS
@given(document=documents, confined=st.booleans())
def test_any_instruction_document_gives_a_request_or_one_line(upload: Path, document: object, confined: bool) -> None:
    path = upload / "instructions.json"
    path.write_text(json.dumps(document, allow_nan=True), encoding="utf-8", errors="surrogatepass")
    assert_request_or_one_line_error(path, upload if confined else None)


any_point = st.lists(coordinates | st.integers(), min_size=2, max_size=2)
geometry_operations = st.fixed_dictionaries(
    {
        "type": st.sampled_from(OPERATION_TYPES),
        "region": st.sampled_from(["region.png", "alpha.png"])
        | st.fixed_dictionaries({"polygon": st.lists(any_point, min_size=3, max_size=8)}),
        "handle": any_point,
        "target": any_point,
    },
    optional={"center": any_point},
)


@FILE_SETTINGS
@given(operations=st.lists(geometry_operations, min_size=1, max_size=3), editable=st.booleans(),
       confined=st.booleans())
def test_any_geometry_gives_a_request_or_one_line(upload: Path, operations: list, editable: bool,
                                                  confined: bool) -> None:
    """Well-formed documents with arbitrary numbers: reaches polygons, rotations, scales and the editable mask."""
    document: dict = {"image": "image.png", "operations": operations}
    if editable:
        document["editable_mask"] = "region.png"
    path = upload / "geometry.json"
    path.write_text(json.dumps(document, allow_nan=True))
    assert_request_or_one_line_error(path, upload if confined else None)


@FILE_SETTINGS
@given(data=st.binary(max_size=200) | st.text(max_size=200).map(lambda text: text.encode("utf-8", "surrogatepass")))
def test_any_bytes_as_an_instruction_file(upload: Path, data: bytes) -> None:
    path = upload / "raw.json"
    path.write_bytes(data)
    assert_request_or_one_line_error(path, None)


@settings(max_examples=60, deadline=None)
@given(depth=st.integers(1, 200_000), digits=st.integers(1, 6000))
def test_deep_nesting_and_long_numbers(upload: Path, depth: int, digits: int) -> None:
    path = upload / "hostile.json"
    handle = "[" * depth + "]" * depth
    path.write_text('{"image": "image.png", "operations": [{"type": "translate", "region": "region.png", '
                    f'"handle": {handle}, "target": [5, {"9" * digits}]}}]}}')
    assert_request_or_one_line_error(path, None)


def test_a_valid_document_passes_the_same_check(upload: Path) -> None:
    """The property is not vacuous: a good document does come back as a request."""
    document = {"image": "image.png", "operations": [
        {"type": "translate", "region": "alpha.png", "handle": [5, 5], "target": [12, 6]},
        {"type": "rotate", "region": {"polygon": [[2, 2], [7, 2], [7, 7]]}, "handle": [6, 3], "target": [3, 6],
         "center": [3, 3]},
    ]}
    path = upload / "good.json"
    path.write_text(json.dumps(document))
    request = load_instructions(path, root=upload)
    assert len(request.operations) == 2 and request.operations[0].region.sum() == 36


# ------------------------------------------------------------------------------------------- --set parsing

SETTING_NAMES = [field.name for field in dataclasses.fields(EditConfig)]
setting_values = (
    st.text(max_size=20)
    | st.sampled_from(["nan", "inf", "-inf", "1e999", "none", "None", "true", "0", "-1", "1" * 5000, "1,2", ""])
    | st.integers().map(str)
    | st.floats(allow_nan=True, allow_infinity=True).map(repr)
)
override_texts = st.text(max_size=40) | st.builds(
    lambda key, value: f"{key}={value}", st.sampled_from(SETTING_NAMES) | st.text(max_size=10), setting_values
)


@settings(max_examples=300, deadline=None)
@given(text=override_texts)
def test_parse_override_gives_a_pair_or_a_cli_error(text: str) -> None:
    try:
        key, value = parse_override(text)
    except CliError as error:
        assert str(error)
        return
    assert key in SETTING_NAMES
    assert text.startswith(f"{key}=")
    assert value is None or isinstance(value, (bool, int, float, str, tuple))
