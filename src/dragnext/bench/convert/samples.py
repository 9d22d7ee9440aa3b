"""Sample folders: finding them in a source tree, and writing the converted ones whole or not at all.

A converted sample is written into a hidden staging folder beside its destination (``.<sample>.<random>.partial``)
and renamed into place once complete. Re-converting replaces a folder this package wrote (recognised by its
``conversion.json``) and removes the converted files of a sample that now fails; a folder holding anything else is
left alone. The samples that failed are listed in ``failed.csv``.

A conversion killed outright (``kill -9``, a power cut) cannot clean up after itself, and leaves its staging folder
(``.<sample>.<16 hex digits>.partial``), an earlier conversion set aside (``.<sample>.<16 hex digits>.old``) or a
staged file (``.failed.csv.<16 hex digits>.partial``). The next conversion into the same ``<out>/<dataset>`` removes
them (:func:`remove_stale_staging`): only entries with exactly these names, and only those last changed before that
run started, so files of its own are never taken. (Two conversions into one folder at once are not supported.)
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ...files import write_text_atomic
from ...instructions import DragRequest, save_instructions
from .common import DATASETS, FAILED_NAME, MARKER_FILES, SIDECAR_NAME, ConversionError

# What a conversion writes into a sample folder; instructions.json first and the sidecar last, the order in which
# a failing sample's old files are removed (an interrupted removal then leaves no loadable sample behind, and
# what is left is still recognised as ours).
_CONVERTED_FILES = ("instructions.json", "image.png", "editable.png", SIDECAR_NAME)
_REGION_FILE = re.compile(r"region_\d+\.png")
# What write_sample (and files.write_staged) name their temporary folders and files: "." + name + 16 hex + suffix.
_STAGING_NAME = re.compile(r"\..+\.[0-9a-f]{16}\.(partial|old)")


def find_samples(root: str | os.PathLike[str], dataset: str | None = None) -> list[Path]:
    """The sample folders under ``root`` (``root`` itself included), sorted by their path relative to root.

    A sample folder is one holding the dataset's marker file (``meta_data.pkl`` for DragBench,
    ``points.json`` for Drag100; either when ``dataset`` is None). Hidden folders are not searched.
    """
    root = Path(root)
    if dataset is not None and dataset not in DATASETS:
        raise ConversionError(f"dataset: {dataset!r} is not one of {', '.join(DATASETS)}")
    if not root.is_dir():
        raise ConversionError(f"{root}: not a folder")
    markers = [MARKER_FILES[dataset]] if dataset else list(MARKER_FILES.values())
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        if any(marker in files for marker in markers):
            found.append(Path(folder))
    return sorted(found, key=lambda p: p.relative_to(root).parts)


def sample_name(folder: Path, root: Path) -> str:
    """The sample's name in the output: its folder relative to ``root`` (``root``'s own name for root itself)."""
    relative = folder.relative_to(root)
    return relative.as_posix() if relative.parts else root.resolve().name


def _is_converted_file(name: str) -> bool:
    return name in _CONVERTED_FILES or _REGION_FILE.fullmatch(name) is not None


def prepare_output(target_root: Path) -> None:
    """Create ``<out>/<dataset>`` if needed; refuse one that is a file or is not writable."""
    if target_root.exists() and not target_root.is_dir():
        raise ConversionError(f"{target_root}: exists and is not a folder")
    try:
        target_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConversionError(f"{target_root}: cannot create the output folder: {exc.strerror or exc}") from None
    if not os.access(target_root, os.W_OK | os.X_OK):
        raise ConversionError(f"{target_root}: the output folder is not writable")


def remove_stale_staging(target_root: Path, started: float) -> list[Path]:
    """Remove what an interrupted earlier conversion left under ``target_root``: staging folders and set-aside
    folders and staged files (names as :data:`_STAGING_NAME`), last changed before ``started`` (a ``time.time()``).
    Links are never followed nor removed. Returns the paths removed."""
    removed: list[Path] = []
    for folder, subfolders, files in os.walk(target_root):
        for name in [*subfolders, *files]:
            if not _STAGING_NAME.fullmatch(name):
                continue
            path = Path(folder) / name
            try:
                info = os.lstat(path)
                if info.st_mtime >= started:
                    continue
                if stat.S_ISDIR(info.st_mode):
                    shutil.rmtree(path)
                elif stat.S_ISREG(info.st_mode):
                    path.unlink()
                else:
                    continue
            except OSError:  # gone meanwhile, or not ours to remove: the run goes on
                continue
            removed.append(path)
        subfolders[:] = [name for name in subfolders if not _STAGING_NAME.fullmatch(name)]
    return removed


def check_destination(destination: Path, target_root: Path) -> None:
    """Refuse a destination that a conversion must not replace: a file, or a folder holding files that this
    package did not write (a folder it wrote holds ``conversion.json`` and only the names it writes)."""
    if destination == target_root / FAILED_NAME:
        raise ConversionError(f"{destination}: the name {FAILED_NAME} is kept for the list of failed samples")
    for folder in reversed(destination.relative_to(target_root).parents[:-1]):  # the folders in between
        if (target_root / folder).exists() and not (target_root / folder).is_dir():
            raise ConversionError(f"{target_root / folder}: exists and is not a folder; not replaced")
    if not os.path.lexists(destination):
        return
    if destination.is_symlink() or not destination.is_dir():
        raise ConversionError(f"{destination}: exists and is not a folder; not replaced")
    names = sorted(entry.name for entry in destination.iterdir())
    foreign = [name for name in names if not _is_converted_file(name)]
    if foreign or (names and SIDECAR_NAME not in names):
        listed = ", ".join((foreign or names)[:3]) + (", ..." if len(foreign or names) > 3 else "")
        raise ConversionError(f"{destination}: holds files this converter did not write ({listed}); not replaced")


def write_sample(destination: Path, request: DragRequest, sidecar: dict[str, Any]) -> Path:
    """Write the sample into a hidden staging folder beside ``destination``, then rename it into place, so that
    ``destination`` holds either the earlier conversion or the complete new one, never a mix or a part."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(8)
    staging = destination.parent / f".{destination.name}.{token}.partial"
    staging.mkdir()
    try:
        save_instructions(request, staging / "instructions.json")
        write_text_atomic(staging / SIDECAR_NAME, json.dumps(sidecar, indent=2) + "\n")
        if os.path.lexists(destination):  # an earlier conversion (checked by check_destination): set it aside
            retired = destination.parent / f".{destination.name}.{token}.old"
            os.rename(destination, retired)
            try:
                os.rename(staging, destination)
            except BaseException:
                os.rename(retired, destination)
                raise
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.rename(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return destination / "instructions.json"


def withdraw(destination: Path) -> None:
    """Remove an earlier conversion of a sample that fails now, so that it is not taken for a current one.

    Only from a folder this package wrote (it holds ``conversion.json``), and only the files it writes; the folder
    itself goes when nothing else is left in it.
    """
    if not (destination / SIDECAR_NAME).is_file():
        return
    regions = [entry for entry in destination.iterdir() if _REGION_FILE.fullmatch(entry.name)]
    for path in [destination / _CONVERTED_FILES[0], *regions, *(destination / n for n in _CONVERTED_FILES[1:])]:
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty: it holds someone else's files, which stay
        destination.rmdir()


def write_failed_csv(path: Path, failed: Iterable[tuple[str, str]]) -> None:
    """``failed.csv``: a header ``sample,reason``, then one row per sample that failed."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("sample", "reason"))
    writer.writerows(failed)
    write_text_atomic(path, buffer.getvalue())
