"""Writing outputs so that a failure never leaves a half-written file behind."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np


def _write_atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write`` on a temporary file beside ``path``, then move it into place (or remove it on failure)."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(handle)
    try:
        write(Path(temporary))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_png_atomic(path: Path, image: np.ndarray) -> Path:
    """Write a PNG so that the destination either holds the complete picture or is untouched."""
    from PIL import Image

    return _write_atomic(path, lambda temporary: Image.fromarray(np.asarray(image, dtype=np.uint8)).save(
        temporary, format="PNG"))


def write_text_atomic(path: Path, text: str) -> Path:
    """Write a text file so that the destination either holds the complete text or is untouched."""
    return _write_atomic(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))
