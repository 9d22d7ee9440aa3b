"""How far a ``deform`` reaches: the support radius of its displacement field, read from the picture.

A dragged vertex of an outline should move the outline's edges up to the neighbouring corners and no further:
the exact result of moving one polygon vertex is a displacement that falls linearly from the handle to zero at
the two neighbouring vertices. A field whose support is set by the painted region alone (a few pixels) or by
the drag length cannot know where those corners are; the picture can. So the support ends at the nearest
corner of the image (Harris corners in CIELAB) beyond the handle's own, and never nearer than
``MIN_DRAG_LENGTHS`` drag lengths, which keeps the field invertible. A picture with no corner near the
handle keeps the region's own rule (:func:`geometry.deformation_radius`).

Measured by ``scripts/deformation_support.py`` (input pixels warped by the field, scored against the exact
result, 80 vertex drags of seeds outside the benchmark's): shape IoU 0.852 with this support, 0.801 with the
region's rule, 0.885 with the true edge lengths.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import geometry
from .instructions import DragRequest, Operation

# Corners this close to the handle are the handle's own (the vertex being dragged, its anti-aliased rim).
OWN_CORNER_RADIUS = 3.0
# The support reaches at least this many drag lengths: the field's slope stays <= 0.8 and the map invertible.
MIN_DRAG_LENGTHS = geometry.DEFORM_MIN_REACH
# Harris corners: the smoothing scale in pixels, and the weakest corner kept relative to the strongest.
CORNER_SIGMA = 1.0
CORNER_THRESHOLD = 0.02


def image_corners(image: np.ndarray) -> np.ndarray:
    """(x, y) points of the image's corners: peaks of the Harris response summed over the CIELAB channels."""
    from skimage.color import rgb2lab
    from skimage.feature import corner_harris, corner_peaks

    lab = rgb2lab(np.asarray(image)[..., :3])
    response = sum(corner_harris(lab[..., channel], sigma=CORNER_SIGMA) for channel in range(3))
    peaks = corner_peaks(response, min_distance=2, threshold_rel=CORNER_THRESHOLD)
    return geometry.rowcol_to_xy(peaks) if len(peaks) else np.zeros((0, 2))


def deform_support(image: np.ndarray, op: Operation, corners: np.ndarray | None = None) -> float:
    """Support radius in pixels of a deform's field on ``image`` (module docstring)."""
    handle = np.asarray(op.handle, dtype=np.float64)
    length = float(np.linalg.norm(np.subtract(op.target, op.handle)))
    corners = image_corners(image) if corners is None else corners
    distances = np.linalg.norm(corners - handle, axis=1) if len(corners) else np.zeros(0)
    distances = distances[distances > OWN_CORNER_RADIUS]
    if distances.size == 0:
        return geometry.deformation_radius(op.region, op.handle, op.target)
    return max(float(distances.min()), MIN_DRAG_LENGTHS * length, 1e-6)


def with_supports(request: DragRequest) -> DragRequest:
    """``request`` with every ``deform`` that has no support yet given one from its picture."""
    needed = [op.type == "deform" and op.support is None for op in request.operations]
    if not any(needed):
        return request
    corners = image_corners(request.image)
    operations = tuple(
        dataclasses.replace(op, support=deform_support(request.image, op, corners)) if need else op
        for op, need in zip(request.operations, needed, strict=True)
    )
    return dataclasses.replace(request, operations=operations)
