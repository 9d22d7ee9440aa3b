"""The drag request: data model, validation and the JSON instruction file.

A :class:`DragRequest` is the one input of the CLI, the API, the UI and the benchmark, so every way in
goes through :func:`validate_request`: the editor can then assume a request is consistent, and a user learns
what is wrong before minutes of diffusion, in one line that names the field.

- :mod:`.request`: :class:`Operation`, :class:`DragRequest`, :func:`make_operation`, :func:`polygon_mask`.
- :mod:`.validation`: :func:`validate_request`, :func:`check_image`, :func:`point_in_image` and the
  thresholds for degenerate operations.
- :mod:`.json_format`: :func:`load_instructions` and :func:`save_instructions` (the format is described there).

The package imports only numpy and PIL, so validating a file is instant and needs no model.
"""

from ..vocabulary import NEEDS_CENTER, OPERATION_TYPES
from .json_format import (
    OPERATION_KEYS,
    REQUIRED_OPERATION_KEYS,
    REQUIRED_TOP_LEVEL_KEYS,
    TOP_LEVEL_KEYS,
    load_instructions,
    request_to_dict,
    save_instructions,
)
from .request import DragRequest, InstructionError, Operation, Point, make_operation, polygon_mask, requests_equal
from .validation import (
    MAX_SCALE_FACTOR,
    MIN_POINT_DISTANCE,
    MIN_POLYGON_AREA,
    MIN_ROTATION_DEGREES,
    MIN_SCALE_CHANGE,
    POLYGON_MARGIN,
    check_image,
    point_in_image,
    validate_request,
)

__all__ = [
    "MAX_SCALE_FACTOR",
    "MIN_POINT_DISTANCE",
    "MIN_POLYGON_AREA",
    "MIN_ROTATION_DEGREES",
    "MIN_SCALE_CHANGE",
    "NEEDS_CENTER",
    "OPERATION_KEYS",
    "OPERATION_TYPES",
    "POLYGON_MARGIN",
    "REQUIRED_OPERATION_KEYS",
    "REQUIRED_TOP_LEVEL_KEYS",
    "TOP_LEVEL_KEYS",
    "DragRequest",
    "InstructionError",
    "Operation",
    "Point",
    "check_image",
    "load_instructions",
    "make_operation",
    "point_in_image",
    "polygon_mask",
    "request_to_dict",
    "requests_equal",
    "save_instructions",
    "validate_request",
]
