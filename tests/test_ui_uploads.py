"""Hostile uploads to the web UI's restore path and image upload: nothing outside the upload is read, sizes are
refused before the work they bound, memory stays bounded (measured), and every refusal is one message."""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import textwrap
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dragnext.instructions import DragRequest, make_operation, requests_equal
from dragnext.limits import UI_LIMITS
from dragnext.ui.uploads import (
    MAX_ARCHIVE_BYTES,
    MAX_ARCHIVE_MEMBERS,
    MAX_SIDE,
    UIError,
    check_image_size,
    read_image_file,
    read_instruction_upload,
    write_instruction_archive,
)

SIZE = 64
HUGE_SIDE = 13000  # the case: a 160 kB PNG that decodes to 169 M pixels


def scene() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def polygon_document(image: str = "image.png", **changes) -> dict:
    operation = {"type": "translate", "region": {"polygon": [[5, 5], [20, 5], [20, 20]]}, "handle": [15, 10],
                 "target": [25, 10]}
    return {"image": image, "operations": [operation], **changes}


def zeros_png(width: int, height: int) -> bytes:
    """A valid greyscale PNG of zeros, built row by row so that the test never holds the decoded picture."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + pixels
    data = b"".join([compressor.compress(row) for _ in range(height)] + [compressor.flush()])
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def huge_png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("huge") / "image.png"
    path.write_bytes(zeros_png(HUGE_SIDE, HUGE_SIDE))
    return path


@pytest.fixture(scope="module")
def huge_zip(huge_png) -> Path:
    archive = huge_png.parent / "huge.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.write(huge_png, "instructions/image.png")
        bundle.writestr("instructions/instructions.json", json.dumps(polygon_document()))
    return archive


def refusal(paths, workdir) -> str:
    with pytest.raises(UIError) as caught:
        read_instruction_upload(paths, workdir)
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    return message


# ---------------------------------------------------------------------------------------------- paths


@pytest.mark.parametrize("named", ["absolute", "dotdot"])
def test_an_instruction_file_cannot_name_a_server_file_and_says_nothing_of_its_existence(tmp_path, named):
    server = tmp_path / "server"
    server.mkdir()
    Image.fromarray(scene()).save(server / "secret.png")  # a readable image the server holds
    upload = tmp_path / "upload"
    upload.mkdir()
    Image.fromarray(scene()).save(upload / "image.png")

    def attempt(target: str) -> str:
        (upload / "instructions.json").write_text(json.dumps(polygon_document(image=target)))
        return refusal([upload / "instructions.json", upload / "image.png"], tmp_path / "work")

    if named == "absolute":
        existing, missing = str(server / "secret.png"), str(server / "missing.png")
    else:  # relative to the restore folder: work/session/restore-x/ -> tmp_path/server
        existing, missing = "../../server/secret.png", "../../server/missing.png"
    said_existing, said_missing = attempt(existing), attempt(missing)
    assert "outside the uploaded files" in said_existing
    assert existing.endswith("server/secret.png") and (tmp_path / "work" / "restore-x" / existing).resolve().exists()
    unquoted = [re.sub(r"'.*'", "NAME", said) for said in (said_existing, said_missing)]
    assert unquoted[0] == unquoted[1]  # no existence oracle
    assert "does not exist" not in said_existing + said_missing


def test_a_zip_naming_a_server_file_is_refused_and_nothing_is_left_behind(tmp_path):
    secret = tmp_path / "secret.png"
    Image.fromarray(scene()).save(secret)
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("instructions/instructions.json", json.dumps(polygon_document(image=str(secret))))
    assert "outside the uploaded files" in refusal([archive], tmp_path / "work")
    assert list((tmp_path / "work").iterdir()) == []  # the restore folder is removed, refused or not


def test_a_restore_leaves_no_folder_behind(tmp_path):
    operations = (make_operation("translate", np.pad(np.ones((10, 10), bool), ((5, 49), (5, 49))), (10, 10),
                                 (20, 12)),)
    request = DragRequest(image=scene(), operations=operations)
    archive = write_instruction_archive(request, tmp_path / "out")
    assert requests_equal(read_instruction_upload([archive], tmp_path / "work"), request)
    assert list((tmp_path / "work").iterdir()) == []


def test_uploaded_names_that_are_not_plain_file_names_are_refused(tmp_path):
    hidden = tmp_path / ".instructions.json"
    hidden.write_text(json.dumps(polygon_document()))
    assert "rename it" in refusal([hidden], tmp_path / "work")


def test_a_fifo_upload_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "instructions.json"
    os.mkfifo(fifo)
    message = refusal([fifo], tmp_path / "work")
    assert "not a regular file" in message and str(tmp_path) not in message
    with pytest.raises(UIError, match="not a regular file"):
        read_image_file(fifo)


# ---------------------------------------------------------------------------------------------- zip archives


def patch_declared_size(archive: Path, size: int) -> None:
    """Rewrite the uncompressed size a zip's only member declares, in its local and central headers."""
    data = bytearray(archive.read_bytes())
    local = data.index(b"PK\x03\x04")
    central = data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, local + 22, size)
    struct.pack_into("<I", data, central + 24, size)
    archive.write_bytes(bytes(data))


def test_a_zip_declaring_more_than_the_limit_is_refused_before_extracting(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("instructions.json", b" " * 1000)
    patch_declared_size(archive, MAX_ARCHIVE_BYTES + 1)
    assert "unpacks to more than 128 MB" in refusal([archive], tmp_path / "work")
    assert list((tmp_path / "work").iterdir()) == []


def test_a_zip_member_inflating_past_its_declared_size_is_refused(tmp_path):
    archive = tmp_path / "liar.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("instructions.json", b" " * 4_000_000)  # 4 MB of spaces, a few kB compressed
    patch_declared_size(archive, 1000)
    assert "damaged" in refusal([archive], tmp_path / "work")


def test_zips_with_too_many_members_repeated_names_or_links_are_refused(tmp_path):
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as bundle:
        for index in range(MAX_ARCHIVE_MEMBERS + 1):
            bundle.writestr(f"f{index}.png", b"")
    assert f"the limit is {MAX_ARCHIVE_MEMBERS}" in refusal([many], tmp_path / "work")
    twice = tmp_path / "twice.zip"
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(twice, "w") as bundle:
        bundle.writestr("instructions.json", "{}")
        bundle.writestr("instructions.json", "{}")
    assert "twice" in refusal([twice], tmp_path / "work")
    link = tmp_path / "link.zip"
    with zipfile.ZipFile(link, "w") as bundle:
        info = zipfile.ZipInfo("image.png")
        info.external_attr = (0o120777 << 16)
        bundle.writestr(info, "/etc/passwd")
    assert "link" in refusal([link], tmp_path / "work")


def test_a_zip_listing_thousands_of_members_is_refused_before_its_directory_is_parsed(tmp_path):
    archive = tmp_path / "crowd.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for index in range(3000):
            bundle.writestr(f"{'d' * 100}/{index}.png", b"")
    assert "holds 3000 files; the limit is 64" in refusal([archive], tmp_path / "work")
    data = bytearray(archive.read_bytes())  # an end record that lies about the count: the directory size tells
    end = data.rindex(b"PK\x05\x06")
    struct.pack_into("<HH", data, end + 8, 1, 1)
    archive.write_bytes(bytes(data))
    assert "list of files takes" in refusal([archive], tmp_path / "work")


def test_finder_metadata_in_a_zip_is_ignored(tmp_path):
    Image.fromarray(scene()).save(tmp_path / "image.png")
    archive = tmp_path / "mac.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.write(tmp_path / "image.png", "edit/image.png")
        bundle.writestr("edit/instructions.json", json.dumps(polygon_document()))
        bundle.writestr("__MACOSX/edit/._instructions.json", b"\x00\x05\x16\x07 resource fork")
    assert read_instruction_upload([archive], tmp_path / "work").image.shape == (SIZE, SIZE, 3)


# ---------------------------------------------------------------------------------------------- sizes and memory


def test_a_zip_holding_a_huge_png_is_refused_from_its_header(huge_zip, tmp_path):
    message = refusal([huge_zip], tmp_path / "work")
    assert f"{HUGE_SIDE}x{HUGE_SIDE}" in message and f"{UI_LIMITS.max_side} px per side" in message


def test_too_many_operations_in_an_upload_are_refused_before_any_image_is_read(tmp_path):
    document = polygon_document(image="missing.png")
    document["operations"] *= UI_LIMITS.max_operations + 1
    (tmp_path / "instructions.json").write_text(json.dumps(document))
    message = refusal([tmp_path / "instructions.json"], tmp_path / "work")
    assert f"more than the limit of {UI_LIMITS.max_operations}" in message


def test_an_oversized_instruction_json_is_refused(tmp_path):
    document = polygon_document(prompt="x" * (UI_LIMITS.max_json_bytes + 1))
    (tmp_path / "instructions.json").write_text(json.dumps(document))
    assert "larger than the 2 MiB limit" in refusal([tmp_path / "instructions.json"], tmp_path / "work")


PEAK_MEMORY_SCRIPT = textwrap.dedent("""
    import resource, sys, time
    from dragnext.ui.uploads import UIError, read_image_file, read_instruction_upload
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    try:
        if sys.argv[1] == "restore":
            read_instruction_upload([sys.argv[2]], sys.argv[3])
        else:
            read_image_file(sys.argv[2])
        print("accepted")
    except UIError as error:
        print("refused", error)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(grown * 1024, time.monotonic() - started)
""")


@pytest.mark.parametrize("way", ["restore", "image"])
def test_memory_stays_bounded_for_a_huge_png(way, huge_zip, huge_png, tmp_path):
    """Peak resident memory of a fresh process, before and after the upload is read: decoding the 13000 x 13000
    PNG would add at least 169 MB (1.6 GB as the old code converted it); a refusal from the header adds little."""
    upload = huge_zip if way == "restore" else huge_png
    result = subprocess.run([sys.executable, "-c", PEAK_MEMORY_SCRIPT, way, str(upload), str(tmp_path / "work")],
                            capture_output=True, text=True, timeout=120, check=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    verdict, measured = result.stdout.strip().splitlines()
    grown_bytes, seconds = (float(v) for v in measured.split())
    assert verdict.startswith("refused") and f"{HUGE_SIDE}x{HUGE_SIDE}" in verdict
    assert grown_bytes < 32 * 1024 * 1024, f"peak memory grew by {grown_bytes / 2**20:.0f} MiB"
    assert seconds < 5, f"took {seconds:.1f} s"


def test_a_square_at_the_side_limit_is_within_the_pixel_limit():
    check_image_size(MAX_SIDE, MAX_SIDE)  # the side limit is what a user is told, so a square at it must pass
    with pytest.raises(UIError, match="per side"):
        check_image_size(MAX_SIDE + 1, MAX_SIDE)


def test_a_16_bit_greyscale_upload_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 1000, 30000, 65535]] * 8, dtype=np.uint16)
    values = np.repeat(values, 2, axis=1)  # 8 x 8
    path = tmp_path / "wide.png"
    Image.fromarray(values).save(path)
    image = read_image_file(path)
    assert image.shape == (8, 8, 3)
    assert list(image[0, ::2, 0]) == [0, 4, 117, 255]
