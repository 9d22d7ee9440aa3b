"""Atomic writers: the destination holds the whole file or is untouched, with the usual permissions."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from dragnext.files import write_png_atomic, write_text_atomic


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_written_files_get_the_usual_permissions_not_private_ones(tmp_path):
    png = write_png_atomic(tmp_path / "out.png", np.zeros((4, 5, 3), np.uint8))
    text = write_text_atomic(tmp_path / "out.txt", "hello")
    for path in (png, text):
        assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert np.asarray(Image.open(png)).shape == (4, 5, 3) and text.read_text() == "hello"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png", "out.txt"]


def test_a_failed_write_leaves_the_old_file_and_no_partial_one(tmp_path):
    path = write_text_atomic(tmp_path / "report.md", "old")
    with pytest.raises(AttributeError):
        write_text_atomic(path, None)  # fails inside the writer, after the temporary file exists
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]
