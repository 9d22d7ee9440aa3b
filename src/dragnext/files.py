"""Writing outputs so that a failure never leaves a half-written file behind."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np


def write_staged(folder: Path, final_name: str, write: Callable[[BinaryIO], object]) -> Path:
    """Write a file under a hidden, unique temporary name in ``folder``; the caller moves it into place
    (``os.replace``) or removes it. On failure nothing is left behind.

    ``open(..., "xb")`` rather than ``mkstemp``, so the file gets the usual permissions (umask), not 0600.
    """
    temporary = Path(folder) / f".{final_name}.{secrets.token_hex(8)}.partial"
    stream = open(temporary, "xb")  # noqa: SIM115 - opened outside the try: if "x" fails, the file is not ours
    try:
        with stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def write_atomic(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """Write ``path`` through a staged temporary file beside it, then move that into place."""
    path = Path(path)
    temporary = write_staged(path.parent, path.name, write)
    try:
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def write_png_atomic(path: Path, image: np.ndarray) -> Path:
    """Write a PNG so that the destination either holds the complete picture or is untouched."""
    from PIL import Image

    picture = Image.fromarray(np.asarray(image, dtype=np.uint8))
    return write_atomic(path, lambda stream: picture.save(stream, format="PNG"))


def write_text_atomic(path: Path, text: str) -> Path:
    """Write a text file so that the destination either holds the complete text or is untouched."""
    return write_atomic(path, lambda stream: stream.write(text.encode("utf-8")))
