"""What a browser uploads, read under the page's limits: images, and instruction files (the .zip the page
downloads, or a JSON with its PNGs); and the .zip the page offers for download.

An upload is treated as hostile until checked, and every check runs before the work it bounds:

- the file size before reading; a .zip's member count and declared sizes before extracting, and the bytes
  actually written while extracting (a member that inflates past its declared size is refused);
- every image's pixel size from its header before any decoder runs, so a small file that decodes to
  gigabytes (a 13000 x 13000 PNG of zeros is 500 kB) is refused without being decoded; only the formats in
  :data:`dragnext.limits.IMAGE_FORMATS` are opened at all (PIL's PostScript reader would start Ghostscript);
  instruction files are read with :data:`dragnext.limits.UI_LIMITS`;
- a .zip is extracted only into a fresh folder (no absolute paths, no ``..``, no links), and the instruction
  file may name only files inside that folder (``load_instructions(root=...)``): the page can never be made
  to read, show or send back a file of the server's, nor learn whether one exists;
- the restore folder is removed as soon as the request is in memory.

No Gradio here; ``tests/test_ui_logic.py`` and ``tests/test_ui_uploads.py`` test it.
"""

from __future__ import annotations

import os
import shutil
import struct
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..files import write_png_atomic
from ..instructions import DragRequest, InstructionError, load_instructions, save_instructions
from ..limits import IMAGE_FORMATS, UI_LIMITS, check_regular_file, one_line, read_image
from .workspace import new_folder

MAX_UPLOAD_MB = 20  # per uploaded file (an image, an instruction JSON or PNG, a .zip)
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024
MAX_SIDE = UI_LIMITS.max_side  # px per side of an input image
MAX_PIXELS = UI_LIMITS.max_pixels  # in all: what one decoded upload may cost
MIN_SIDE = 8  # px per side: smaller is not an image one can paint a region on
MAX_ARCHIVE_MEMBERS = 64  # files in an uploaded .zip
# Unpacked size of an uploaded .zip: an incompressible 4096 x 4096 RGB PNG is 48 MiB; masks compress well.
MAX_ARCHIVE_BYTES = 128 * 1024 * 1024
# A zip's central directory (one entry per member, about 100 bytes with its name): 64 members need a few kB.
# zipfile loads the whole directory into objects of ~500 bytes per entry before anything can be counted, and
# a 20 MB upload can list 250 000 empty members, so its size is read from the end record first.
MAX_ARCHIVE_DIRECTORY_BYTES = 256 * 1024
_COPY_CHUNK = 1024 * 1024


class UIError(ValueError):
    """Something the user can fix; the message is one sentence shown in the page."""


# --------------------------------------------------------------------------------------------------------
# Images


def check_image_size(width: int, height: int) -> None:
    if width > MAX_SIDE or height > MAX_SIDE:
        raise UIError(f"The image is {width}x{height} pixels; the limit is {MAX_SIDE} pixels per side. "
                      "Resize it first.")
    if width < MIN_SIDE or height < MIN_SIDE:
        raise UIError(f"The image is {width}x{height} pixels; it must be at least {MIN_SIDE} pixels per side.")
    if width * height > MAX_PIXELS:
        raise UIError(f"The image is {width}x{height} pixels ({width * height / 1e6:.1f} M); the limit is "
                      f"{MAX_PIXELS / 1e6:.1f} M pixels. Resize it first.")


def check_file_size(path: str | os.PathLike[str], what: str = "The file") -> None:
    size = os.path.getsize(path)
    if size > MAX_UPLOAD_BYTES:
        raise UIError(f"{what} is {size / 1024 / 1024:.1f} MB; the limit is {MAX_UPLOAD_MB} MB.")


def _image_header(path: Path) -> tuple[tuple[int, int], bool]:
    """The size of an uploaded image and whether it has transparency, from its header alone; refused (with the
    page's message) when the size is over the limits.

    PIL warns, or refuses, on its own pixel limit (89 M / 179 M pixels) when opening; ours is far lower and
    gives the page's message, so its warning is silenced and its error becomes ours.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path, formats=IMAGE_FORMATS) as opened:
                size, mode, info = opened.size, opened.mode, opened.info
    except UnidentifiedImageError:
        raise UIError(f"That file is not an image this page reads ({', '.join(IMAGE_FORMATS)}).") from None
    except Image.DecompressionBombError:
        raise UIError(f"The image has too many pixels; the limit is {MAX_SIDE} pixels per side.") from None
    except Exception as error:  # noqa: BLE001 - PIL's header parsers raise many types on corrupt bytes
        raise UIError(f"Cannot read the image: {one_line(error, 120)}.") from None
    check_image_size(*size)
    return size, mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in info


def read_image_file(path: str | os.PathLike[str]) -> np.ndarray:
    """An uploaded image as ``H x W x 3`` uint8 RGB, after the size limits; transparency becomes white.

    The pixel size is checked from the header, before the pixels are decoded; 16-bit images are scaled to
    8 bits, not clipped (:func:`dragnext.limits.read_image`).
    """
    path = Path(path)
    try:
        check_regular_file(path, "image", name=path.name)
    except InstructionError as error:
        raise UIError(f"{error}.") from None
    check_file_size(path, "The image")
    _, transparent = _image_header(path)
    try:
        if not transparent:
            return read_image(path, "image", "RGB", UI_LIMITS, name=path.name)
        rgba = Image.fromarray(read_image(path, "image", "RGBA", UI_LIMITS, name=path.name), "RGBA")
    except InstructionError as error:  # read_image turns corrupt data into one too
        raise UIError(f"{error}.") from None
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(white, rgba).convert("RGB")).copy()


# --------------------------------------------------------------------------------------------------------
# Instruction files: download (a .zip of the CLI's JSON + PNGs) and restore (that .zip, or JSON + PNGs)


def write_instruction_archive(request: DragRequest, folder: str | os.PathLike[str],
                              name: str = "instructions") -> Path:
    """Write ``request`` with :func:`save_instructions` into ``folder/name/`` and zip that folder.

    The archive holds ``name/instructions.json`` and its PNGs: unzipped, ``dragnext edit
    name/instructions.json`` runs the same edit. ``folder`` should be new: the zip is handed to the page
    under a name never used before, so nothing served is ever rewritten.
    """
    folder = Path(folder)
    save_instructions(request, folder / name / "instructions.json")
    archive = folder / f"{name}.zip"
    with zipfile.ZipFile(archive, "x", compression=zipfile.ZIP_DEFLATED) as bundle:
        for path in sorted((folder / name).iterdir()):
            bundle.write(path, f"{name}/{path.name}")
    return archive


def write_rounds_archive(rounds: Sequence[tuple[DragRequest, np.ndarray]], folder: str | os.PathLike[str],
                         name: str = "rounds") -> Path:
    """Every round of a session as ``name/round_<i>/instructions.json`` (+ PNGs) and ``edited.png``, zipped.

    Round ``i + 1``'s image is round ``i``'s ``edited.png``: ``dragnext edit name/round_<i>/instructions.json``
    runs each again. ``folder`` should be new, as for :func:`write_instruction_archive`.
    """
    folder = Path(folder)
    if not rounds:
        raise UIError("No round to download yet: run an edit first.")
    for index, (request, result) in enumerate(rounds, start=1):
        round_folder = folder / name / f"round_{index}"
        save_instructions(request, round_folder / "instructions.json")
        write_png_atomic(round_folder / "edited.png", result)
    archive = folder / f"{name}.zip"
    with zipfile.ZipFile(archive, "x", compression=zipfile.ZIP_DEFLATED) as bundle:
        for path in sorted((folder / name).rglob("*")):
            if path.is_file():
                bundle.write(path, path.relative_to(folder).as_posix())
    return archive


def _is_macos_metadata(name: str) -> bool:
    """Finder's zips add ``__MACOSX/._image.png`` resource forks beside every file: not ours, skipped."""
    return name.startswith("__MACOSX/") or Path(name).name.startswith("._")


def _copy_at_most(source: BinaryIO, sink: BinaryIO, limit: int) -> int:
    """Copy until EOF; refuse (return -1) as soon as more than ``limit`` bytes came."""
    copied = 0
    while chunk := source.read(min(_COPY_CHUNK, limit + 1 - copied)):
        copied += len(chunk)
        if copied > limit:
            return -1
        sink.write(chunk)
    return copied


def _check_archive_directory(archive: Path) -> None:
    """Refuse a zip whose end record declares more members or a larger directory than an upload may have,
    before :mod:`zipfile` parses it. Zip64 archives (for more than 65 535 members or 4 GB) are never needed."""
    end_record_size, longest_comment = 22, 65535
    with open(archive, "rb") as stream:
        size = stream.seek(0, os.SEEK_END)
        stream.seek(max(0, size - end_record_size - longest_comment))
        tail = stream.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < end_record_size:
        raise UIError("That .zip file is damaged, encrypted or not a zip archive.")
    members, directory_bytes = struct.unpack_from("<HI", tail, at + 10)
    if members > 2 * MAX_ARCHIVE_MEMBERS:  # counted exactly once parsed; Finder adds one __MACOSX entry per file
        raise UIError(f"The archive holds {members} files; the limit is {MAX_ARCHIVE_MEMBERS}.")
    if directory_bytes > MAX_ARCHIVE_DIRECTORY_BYTES:
        raise UIError(f"The archive's list of files takes {directory_bytes // 1024} kB; the limit is "
                      f"{MAX_ARCHIVE_DIRECTORY_BYTES // 1024} kB.")


def _extract_archive(archive: Path, destination: Path) -> None:
    """Extract a .zip into ``destination``, refusing unsafe paths, links, repeated names, too many files and
    too many bytes (declared, then actually inflated)."""
    too_big = f"The archive unpacks to more than {MAX_ARCHIVE_BYTES // 1024 // 1024} MB."
    _check_archive_directory(archive)
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = [m for m in bundle.infolist() if not m.is_dir() and not _is_macos_metadata(m.filename)]
            if len(members) > MAX_ARCHIVE_MEMBERS:
                raise UIError(f"The archive holds {len(members)} files; the limit is {MAX_ARCHIVE_MEMBERS}.")
            if sum(m.file_size for m in members) > MAX_ARCHIVE_BYTES:
                raise UIError(too_big)
            root = destination.resolve()
            targets = []
            for member in members:
                parts = Path(member.filename).parts
                target = (destination / member.filename).resolve()
                if member.filename.startswith(("/", "\\")) or ".." in parts or not target.is_relative_to(root):
                    raise UIError(f"The archive holds an unsafe path: {member.filename!r}.")
                if (member.external_attr >> 16) & 0o170000 == 0o120000:
                    raise UIError(f"The archive holds a link: {member.filename!r}.")
                if target in targets:
                    raise UIError(f"The archive holds {member.filename!r} twice.")
                targets.append(target)
            budget = MAX_ARCHIVE_BYTES
            for member, target in zip(members, targets, strict=True):
                target.parent.mkdir(parents=True, exist_ok=True)
                with bundle.open(member) as source, open(target, "xb") as sink:
                    copied = _copy_at_most(source, sink, min(member.file_size, budget))
                if copied < 0:
                    raise UIError(too_big if member.file_size > budget else
                                  f"The archive is damaged: {member.filename!r} is larger than it declares.")
                budget -= copied
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, RuntimeError, OSError):
        # damaged, truncated, encrypted ("password required"), an unknown compression, a name used as a folder
        raise UIError("That .zip file is damaged, encrypted or not a zip archive.") from None


def _find_instruction_json(folder: Path) -> Path:
    candidates = sorted(p for p in folder.rglob("*.json") if p.is_file())
    if not candidates:
        raise UIError("No instruction file (.json) found in the upload.")
    if len(candidates) > 1:
        named = [p for p in candidates if p.name == "instructions.json"]
        if len(named) != 1:
            raise UIError("The upload holds several .json files; upload one instruction file with its PNGs.")
        return named[0]
    return candidates[0]


def _unpack_upload(paths: list[Path], folder: Path) -> None:
    """The uploaded files into ``folder``: a .zip extracted, or the JSON and its PNGs copied side by side."""
    archives = [p for p in paths if p.suffix.lower() == ".zip"]
    if archives:
        if len(paths) > 1:
            raise UIError("Upload either one .zip or a .json with its PNGs, not both.")
        _extract_archive(archives[0], folder)
        return
    if len(paths) > MAX_ARCHIVE_MEMBERS:
        raise UIError(f"{len(paths)} files were uploaded; the limit is {MAX_ARCHIVE_MEMBERS}.")
    names = [p.name for p in paths]
    if len(set(names)) != len(names):
        raise UIError("Two uploaded files have the same name.")
    for path in paths:
        if path.name in ("", ".", "..") or path.name.startswith("."):
            raise UIError(f"Cannot use an uploaded file named {path.name!r}; rename it.")
        shutil.copyfile(path, folder / path.name)


def read_instruction_upload(paths: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
                            workdir: str | os.PathLike[str]) -> DragRequest:
    """Load an uploaded instruction file: the .zip the page downloads, or a JSON file plus the PNGs it names.

    The files are unpacked into a new folder under ``workdir``, which the instruction file may not leave and
    which is removed before returning.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [Path(p) for p in paths if p]
    if not paths:
        raise UIError("Choose an instruction file: the .zip this page downloads, or a .json with its PNGs.")
    for path in paths:
        try:
            check_regular_file(path, "upload", name=path.name)  # the name only: not the server's folders
        except InstructionError as error:
            raise UIError(str(error)) from None
        check_file_size(path, f"'{path.name}'")
    folder = new_folder(workdir, "restore")
    try:
        _unpack_upload(paths, folder)
        json_path = _find_instruction_json(folder)
        try:
            request = load_instructions(json_path, root=folder, limits=UI_LIMITS)
        except InstructionError as error:
            raise UIError(_without_server_paths(str(error), folder, json_path)) from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    check_image_size(request.image.shape[1], request.image.shape[0])
    return replace(request, source=json_path.name)


def _without_server_paths(message: str, folder: Path, json_path: Path) -> str:
    """An instruction error as the page shows it: paths relative to the upload, never the server's folders."""
    for prefix in {str(json_path.parent), str(folder), str(folder.resolve())}:
        message = message.replace(prefix + os.sep, "")
    message = message.replace(str(json_path), json_path.name)
    if "does not exist" in message:
        message += "; upload the .json together with the PNGs it names, or the .zip this page downloads"
    return message
