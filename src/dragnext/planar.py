"""Plane geometry of plain points, with no tensors: shared by the instruction checks, the geometry of the
edits and the ground truth, so the rotation a request asks for is computed one way."""

from __future__ import annotations

import math
from collections.abc import Sequence


def signed_angle(u: Sequence[float], v: Sequence[float]) -> float:
    """Angle from vector u to v in image coordinates (y down; positive turns +x towards +y), in (-pi, pi]."""
    cross = u[0] * v[1] - u[1] * v[0]
    dot = u[0] * v[0] + u[1] * v[1]
    angle = math.atan2(cross, dot)
    return math.pi if angle <= -math.pi else angle


def rotation_degrees(handle: Sequence[float], target: Sequence[float], center: Sequence[float]) -> float:
    """The signed angle (degrees, in (-180, 180]) that turns ``handle`` about ``center`` onto ``target``'s ray."""
    return math.degrees(signed_angle((handle[0] - center[0], handle[1] - center[1]),
                                     (target[0] - center[0], target[1] - center[1])))
