"""Where ``edit``, ``demo`` and ``region`` write: the output paths checked before any work, and pictures written
all together or not at all."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..files import write_staged
from ..limits import one_line, quote_path
from .common import EXIT_BAD_INPUT, CliError


def output_path(value: str, flag: str, *, inputs: Iterable[Path] = (), create_folders: bool = False) -> Path:
    """Check an output path before any work: a .png file name, in a folder we can write, not one of ``inputs``.

    ``create_folders``: a missing folder is fine if it can be created; the caller creates it right before writing,
    so that a command refused for any reason leaves no folder behind.

    Every refusal is one line (exit status 2): a name too long for the file system, a NUL byte or a loop of links
    is reported, not raised."""
    quoted = quote_path(value)
    if Path(value).suffix.lower() != ".png":
        raise CliError(f"{flag}: {quoted} must end in .png", EXIT_BAD_INPUT)
    try:
        return _checked_output(value, flag, quoted, inputs, create_folders)
    except (OSError, ValueError) as error:  # ENAMETOOLONG, ELOOP, an embedded NUL, ... from stat or resolve
        reason = getattr(error, "strerror", None) or one_line(error)
        raise CliError(f"{flag}: cannot write {quoted} ({reason})", EXIT_BAD_INPUT) from None


def _checked_output(value: str, flag: str, quoted: str, inputs: Iterable[Path], create_folders: bool) -> Path:
    path = Path(value).expanduser()
    if path.is_dir():
        raise CliError(f"{flag}: {quoted} is a folder; give a file name like out.png", EXIT_BAD_INPUT)
    if path.exists() and not path.is_file():
        raise CliError(f"{flag}: {quoted} exists and is not a regular file", EXIT_BAD_INPUT)
    folder = path.parent
    if create_folders:
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "does not exist"
        raise CliError(f"{flag}: folder {quote_path(str(folder))} {problem}", EXIT_BAD_INPUT)
    _check_writable(folder, path.name, flag)
    for source in inputs:
        if same_file(path, source):
            raise CliError(f"{flag}: {quoted} is an input of this edit ({quote_path(str(source))}); writing it "
                           "would overwrite it", EXIT_BAD_INPUT)
    return path


def _check_writable(folder: Path, name: str, flag: str) -> None:
    """Create and remove a staged file there: the permission bits alone cannot tell (root may write anywhere by
    them, yet not in /proc; a read-only mount says yes too)."""
    try:
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(13, "permission denied")
        write_staged(folder, name, lambda stream: None).unlink()
    except OSError as error:
        reason = error.strerror or one_line(error)
        raise CliError(f"{flag}: cannot write in folder {quote_path(str(folder))} ({reason})", EXIT_BAD_INPUT) from None


def same_file(a: Path, b: Path) -> bool:
    """The same file, by resolved path or, for hard links, by device and inode."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def write_pngs_together(pictures: Mapping[Path, object]) -> None:
    """Write every picture (H x W x 3 uint8) or none: each is staged beside its destination, then all are moved
    into place; if a move fails, the destinations already moved get back what they held before."""
    from PIL import Image

    staged: dict[Path, Path] = {}
    try:
        for destination, image in pictures.items():
            picture = Image.fromarray(image)
            staged[destination] = write_staged(destination.parent, destination.name,
                                               lambda stream, picture=picture: picture.save(stream, format="PNG"))
        _move_together(staged)
    finally:
        for temporary in staged.values():
            temporary.unlink(missing_ok=True)


def _move_together(staged: Mapping[Path, Path]) -> None:
    moved: list[tuple[Path, Path | None]] = []  # (destination, what it held before, kept under a hidden name)
    try:
        for destination, temporary in staged.items():
            previous = _keep_previous(destination)
            try:
                os.replace(temporary, destination)
            except BaseException:
                if previous is not None:
                    previous.unlink(missing_ok=True)
                raise
            moved.append((destination, previous))
    except BaseException:
        for destination, previous in reversed(moved):
            if previous is None:
                destination.unlink(missing_ok=True)
            else:
                os.replace(previous, destination)
        raise
    for _, previous in moved:
        if previous is not None:
            previous.unlink(missing_ok=True)


def _keep_previous(destination: Path) -> Path | None:
    """A second name for the file at ``destination`` (a hard link, else a copy), so a rollback can restore it."""
    if not destination.is_file():
        return None
    keep = destination.parent / f".{destination.name}.{secrets.token_hex(8)}.previous"
    try:
        os.link(destination, keep)
    except OSError:  # a file system without hard links
        shutil.copy2(destination, keep)
    return keep
