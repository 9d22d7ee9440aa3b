"""What the converter modules share: the dataset names and file names, the error, and values from a file in a
message (bounded, so that a hostile file cannot flood one)."""

from __future__ import annotations

import math
import reprlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from ...instructions import InstructionError

DATASETS = ("dragbench", "drag100")
MARKER_FILES = {"dragbench": "meta_data.pkl", "drag100": "points.json"}
DATASET_TITLES = {"dragbench": "DragBench", "drag100": "Drag100"}
SIDECAR_NAME = "conversion.json"
FAILED_NAME = "failed.csv"  # in <out>/<dataset>/: one row (sample, reason) per sample that failed


class ConversionError(InstructionError):
    """A sample or an argument that cannot be converted; the message is one line naming the file or setting."""


class _ShortRepr(reprlib.Repr):
    """``reprlib`` bounds nesting and length, but would still turn a huge integer into all its digits first
    (or fail past Python's 4300-digit limit); a hostile file's value is described, not printed."""

    def __init__(self):
        super().__init__()
        self.maxlevel, self.maxlist, self.maxstring, self.maxother = 3, 4, 30, 30

    def repr_int(self, value: int, level: int) -> str:
        if value.bit_length() > 64:
            return f"<integer of about {int(value.bit_length() * math.log10(2)) + 1} digits>"
        return repr(value)


describe = _ShortRepr().repr


def is_number(value: Any) -> bool:
    """int/float or a numpy number, but not a bool: ``[true, 3]`` is a typo, not a point."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def json_number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def format_point(point: Sequence[float]) -> str:
    return "(" + ", ".join(str(json_number(v)) for v in point) + ")"


