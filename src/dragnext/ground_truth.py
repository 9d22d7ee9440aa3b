"""Drags with exact ground truth on procedural scenes.

Every drag type is an affine map of one shape's parameters (the design's "one family"): the correct
result of a drag is that shape transformed and the scene rendered again, so the background shows through
where the shape used to be and the occlusion order is kept (the shape keeps its index). The drag request
(region, handle, target, center) is derived from the same map, so handle -> target is exactly what the
expected image shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .instructions import DragRequest, Operation
from .planar import rotation_degrees
from .scenes import (
    Circle,
    Point,
    Polygon,
    Scene,
    Shape,
    apply_affine,
    random_scene,
    render,
    render_background,
    rotation_about,
    shape_coverage,
    visible_mask,
)
from .vocabulary import OPERATION_TYPES

# Distance of the handle from the center for rotate and scale, at least this many pixels at 64 px.
_MIN_LEVER = 6.0
# Radius of the handle region of a deform, in pixels at 64 px.
_DEFORM_RADIUS = 4.0
# Dilation of the visible shape that gives the handle region of translate, rotate and scale, in pixels.
_REGION_DILATION = 2



@dataclass(frozen=True, eq=False)
class GroundTruthEdit:
    """One drag on one shape of a scene, with the exact expected result.

    ``request.image`` is ``render(scene)`` as uint8 (``round(img * 255)``) with one operation;
    ``expected_image`` is ``render(expected_scene)`` (float32 ``H x W x 3`` in ``[0, 1]``).
    ``expected_mask`` and ``source_mask`` are the visible coverage (float ``H x W``) of the edited shape
    after and before the edit.
    """

    scene: Scene
    shape_index: int
    op_type: str
    request: DragRequest
    expected_scene: Scene
    expected_image: np.ndarray
    expected_mask: np.ndarray
    source_mask: np.ndarray


def shape_centroid(shape: Shape) -> Point:
    """The circle's centre, or the mean of a polygon's vertices."""
    if isinstance(shape, Circle):
        return (float(shape.center[0]), float(shape.center[1]))
    return tuple(float(v) for v in shape.centroid)


def shape_extent(shape: Shape, center: Point) -> float:
    """Largest distance from ``center`` to a point of the shape."""
    cx, cy = center
    if isinstance(shape, Circle):
        return math.hypot(shape.center[0] - cx, shape.center[1] - cy) + shape.radius
    return max(math.hypot(x - cx, y - cy) for x, y in shape.vertices)


def shape_bounds(shape: Shape) -> tuple[float, float, float, float]:
    """``(x_min, y_min, x_max, y_max)`` of the shape (vertices, or the circle's extent)."""
    if isinstance(shape, Circle):
        (cx, cy), r = shape.center, shape.radius
        return cx - r, cy - r, cx + r, cy + r
    xs, ys = zip(*shape.vertices, strict=True)
    return min(xs), min(ys), max(xs), max(ys)


def translation_matrix(offset: Point) -> np.ndarray:
    """2x3 matrix of the translation by ``offset = (dx, dy)``."""
    return np.array([[1.0, 0.0, float(offset[0])], [0.0, 1.0, float(offset[1])]])


def rotation_matrix(angle_degrees: float, center: Point) -> np.ndarray:
    """2x3 matrix of the rotation by ``angle_degrees`` about ``center``; positive turns +x toward +y (y down)."""
    return rotation_about(math.radians(angle_degrees), center)


def scale_matrix(factor: float, center: Point) -> np.ndarray:
    """2x3 matrix of the uniform scaling by ``factor`` about ``center``."""
    cx, cy = center
    return np.array([[factor, 0.0, cx - factor * cx], [0.0, factor, cy - factor * cy]])


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of ``mask`` by a disc of ``radius`` pixels (pixels beyond the border count as empty)."""
    mask = np.asarray(mask, dtype=bool)
    height, width = mask.shape
    padded = np.pad(mask, radius)
    out = np.zeros_like(mask)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dx * dx + dy * dy <= radius * radius:
                out |= padded[radius + dy : radius + dy + height, radius + dx : radius + dx + width]
    return out


def disc_mask(size: int, center: Point, radius: float) -> np.ndarray:
    """Pixels whose centre lies within ``radius`` of ``center``, ``size x size`` bool."""
    ys, xs = np.mgrid[0:size, 0:size]
    return (xs - center[0]) ** 2 + (ys - center[1]) ** 2 <= radius**2


def _inside_image(point: Point, size: int) -> bool:
    return 0.0 <= point[0] <= size - 1 and 0.0 <= point[1] <= size - 1


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def _edit_region(scene: Scene, index: int) -> np.ndarray:
    return dilate(visible_mask(scene, index) > 0, _REGION_DILATION)


def _make_edit(
    scene: Scene,
    index: int,
    op_type: str,
    new_shape: Shape,
    region: np.ndarray,
    handle: Point,
    target: Point,
    center: Point | None,
) -> GroundTruthEdit:
    # Imported here so that the renderer above imports on its own (the training job needs only it).

    operation = Operation(
        type=op_type,
        region=np.asarray(region, dtype=bool),
        handle=(float(handle[0]), float(handle[1])),
        target=(float(target[0]), float(target[1])),
        center=None if center is None else (float(center[0]), float(center[1])),
    )
    expected_scene = scene.with_shape(index, new_shape)
    return GroundTruthEdit(
        scene=scene,
        shape_index=index,
        op_type=op_type,
        request=DragRequest(image=_to_uint8(render(scene)), operations=(operation,)),
        expected_scene=expected_scene,
        expected_image=render(expected_scene),
        expected_mask=visible_mask(expected_scene, index),
        source_mask=visible_mask(scene, index),
    )


def _lever(size: int, center: Point, lever: float, point_at) -> tuple[Point, Point]:
    """A handle at distance ``lever`` from ``center`` and its target ``point_at(handle)``, both in the image.

    Directions are tried from +x in steps of 15 degrees; when none fits, the lever is shortened (to no
    less than 2 px).
    """
    while lever >= 2.0:
        for step in range(24):
            a = math.radians(15.0 * step)
            handle = (center[0] + lever * math.cos(a), center[1] + lever * math.sin(a))
            target = point_at(handle)
            if _inside_image(handle, size) and _inside_image(target, size):
                return handle, target
        lever *= 0.8
    raise ValueError(f"no handle around center {center} whose target stays inside the {size} px image")


def translate_edit(scene: Scene, index: int, offset: Point) -> GroundTruthEdit:
    """Translate shape ``index`` by ``offset = (dx, dy)``; handle = shape centroid, target = handle + offset.

    Region: the shape's visible mask (coverage > 0) dilated by 2 px.
    """
    shape = scene.shapes[index]
    handle = shape_centroid(shape)
    target = (handle[0] + float(offset[0]), handle[1] + float(offset[1]))
    new_shape = shape.transformed(translation_matrix(offset))
    return _make_edit(scene, index, "translate", new_shape, _edit_region(scene, index), handle, target, None)


def rotate_edit(scene: Scene, index: int, angle_degrees: float, center: Point | None = None) -> GroundTruthEdit:
    """Rotate shape ``index`` by ``angle_degrees`` about ``center`` (default: the shape's centroid).

    The handle lies at ``max(6 px, extent of the shape from the center)`` from the center (the first
    direction from +x, in 15 degree steps, where handle and target are inside the image), the target is the
    handle rotated by the angle. The expected shape is rotated by the signed angle ``(handle, center,
    target)`` as the points give it (positive turns +x toward +y, y down). Region: visible mask dilated 2 px.
    """
    shape = scene.shapes[index]
    center = shape_centroid(shape) if center is None else (float(center[0]), float(center[1]))
    lever = max(_MIN_LEVER * scene.size / 64.0, shape_extent(shape, center))
    turn = rotation_matrix(angle_degrees, center)
    handle, target = _lever(scene.size, center, lever, lambda p: apply_affine(turn, [p])[0])
    angle = rotation_degrees(handle, target, center)
    new_shape = shape.transformed(rotation_matrix(angle, center))
    return _make_edit(scene, index, "rotate", new_shape, _edit_region(scene, index), handle, target, center)


def scale_edit(scene: Scene, index: int, factor: float, center: Point | None = None) -> GroundTruthEdit:
    """Scale shape ``index`` by ``factor`` about ``center`` (default: the shape's centroid).

    The handle lies at distance ``d = max(6 px, extent)`` from the center (chosen as for ``rotate_edit``),
    the target at ``factor * d`` along the same ray; the expected shape is scaled by ``|g - c| / |h - c|``.
    Region: visible mask dilated 2 px.
    """
    if factor <= 0:
        raise ValueError(f"scale factor must be positive, got {factor}")
    shape = scene.shapes[index]
    center = shape_centroid(shape) if center is None else (float(center[0]), float(center[1]))
    lever = max(_MIN_LEVER * scene.size / 64.0, shape_extent(shape, center))
    stretch = scale_matrix(factor, center)
    handle, target = _lever(scene.size, center, lever, lambda p: apply_affine(stretch, [p])[0])
    ratio = math.dist(target, center) / math.dist(handle, center)
    new_shape = shape.transformed(scale_matrix(ratio, center))
    return _make_edit(scene, index, "scale", new_shape, _edit_region(scene, index), handle, target, center)


def deform_edit(scene: Scene, index: int, vertex: int, offset: Point) -> GroundTruthEdit:
    """Move vertex ``vertex`` of polygon ``index`` by ``offset``; handle = the vertex, target = vertex + offset.

    Region: a disc of radius 4 px (at 64 px, scaled with the size) around the vertex. Raises ``ValueError``
    for a circle.
    """
    shape = scene.shapes[index]
    if not isinstance(shape, Polygon):
        raise ValueError(f"deform needs a polygon, shape {index} is a {type(shape).__name__}")
    handle = tuple(float(v) for v in shape.vertices[vertex])
    target = (handle[0] + float(offset[0]), handle[1] + float(offset[1]))
    region = disc_mask(scene.size, handle, _DEFORM_RADIUS * scene.size / 64.0)
    return _make_edit(scene, index, "deform", shape.with_vertex(vertex, target), region, handle, target, None)


def _segments_cross(p1: Point, p2: Point, q1: Point, q2: Point) -> bool:
    def orient(a: Point, b: Point, c: Point) -> float:
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

    d1, d2 = orient(q1, q2, p1), orient(q1, q2, p2)
    d3, d4 = orient(p1, p2, q1), orient(p1, p2, q2)
    return d1 * d2 < 0 and d3 * d4 < 0


def is_simple_polygon(vertices: tuple[Point, ...]) -> bool:
    """True when no two non-adjacent edges of the closed polygon cross."""
    n = len(vertices)
    edges = [(vertices[i], vertices[(i + 1) % n]) for i in range(n)]
    for i in range(n):
        for j in range(i + 2, n):
            if i == 0 and j == n - 1:
                continue
            if _segments_cross(*edges[i], *edges[j]):
                return False
    return True


# Rejection thresholds of random_edit.
_MIN_VISIBLE_FRACTION = 0.6  # visible / full area of the edited shape, before and after the edit
_MIN_COLOR_DISTANCE = 0.3  # RGB distance of the edited shape's colour to the background and the other shapes
_MAX_NOOP_IOU = 0.9  # coverage IoU before/after above which the edit changes too little (a square turned 90)
_BORDER_MARGIN = 1.0  # the expected shape stays this far inside the pixel-centre range [0, size - 1]
_MIN_AREA = 40.0  # visible pixels (coverage > 0.5) of the edited shape at 64 px, before and after the edit


def _visible_fraction(scene: Scene, index: int) -> float:
    full = float(shape_coverage(scene.shapes[index], scene.size).sum())
    return float(visible_mask(scene, index).sum()) / full if full > 0 else 0.0


def _visible_area(scene: Scene, index: int) -> float:
    """Visible pixels of shape ``index`` (coverage > 0.5), in pixels of a 64 px image."""
    return float((visible_mask(scene, index) > 0.5).sum()) * (64.0 / scene.size) ** 2


def _color_distance(scene: Scene, index: int) -> float:
    color = np.asarray(scene.shapes[index].color, dtype=np.float64)
    background = render_background(scene).reshape(-1, 3).astype(np.float64)
    distances = [float(np.linalg.norm(background - color, axis=1).min())]
    distances += [float(np.linalg.norm(np.asarray(s.color) - color)) for j, s in enumerate(scene.shapes) if j != index]
    return min(distances)


def _valid_edit(edit: GroundTruthEdit) -> bool:
    size, index = edit.scene.size, edit.shape_index
    x0, y0, x1, y1 = shape_bounds(edit.expected_scene.shapes[index])
    if x0 < _BORDER_MARGIN or y0 < _BORDER_MARGIN or x1 > size - 1 - _BORDER_MARGIN or y1 > size - 1 - _BORDER_MARGIN:
        return False
    operation = edit.request.operations[0]
    points = [operation.handle, operation.target] + ([operation.center] if operation.center is not None else [])
    if not all(_inside_image(p, size) for p in points):
        return False
    if operation.center is not None and math.dist(operation.handle, operation.center) < 1e-6:
        return False
    new_shape = edit.expected_scene.shapes[index]
    if isinstance(new_shape, Polygon) and not is_simple_polygon(new_shape.vertices):
        return False
    if _visible_fraction(edit.expected_scene, index) < _MIN_VISIBLE_FRACTION:
        return False
    if _visible_area(edit.expected_scene, index) < _MIN_AREA:
        return False
    before = shape_coverage(edit.scene.shapes[index], size) > 0.5
    after = shape_coverage(new_shape, size) > 0.5
    union = np.logical_or(before, after).sum()
    return union > 0 and np.logical_and(before, after).sum() / union <= _MAX_NOOP_IOU


def random_edit(seed: int, op_type: str, size: int = 64, long: bool = False) -> GroundTruthEdit:
    """A random scene and a random valid edit of type ``op_type``; deterministic for a given ``seed``.

    Attempt ``k`` draws from ``np.random.default_rng([seed, k])``: a scene, then one of its shapes whose
    visible area is at least 60% of its full area and 40 px (at 64 px) and whose colour is at least 0.3 (RGB
    distance) from the background and the other shapes, so that ``metrics.recover_shape_mask`` finds it (a
    polygon for deform; not a circle for rotate, which would not change about its own centre), then the
    parameters (lengths scale with ``size / 64``):

    - translate: offset 6-14 px (``long``: 16-26 px) in a random direction;
    - rotate: 20-60 degrees (``long``: 60-120), either sign, about the shape's centroid;
    - scale: factor in [0.6, 0.8] or [1.25, 1.6] (``long``: [0.4, 0.6] or [1.6, 2.2]), about the shape's centroid;
    - deform: a random vertex moved 4-10 px (``long``: 10-18 px) in a random direction.

    An edit is rejected, and the next attempt drawn, when the expected shape comes within 1 px of the
    border (of the pixel-centre range ``[0, size - 1]``), a handle, target or center falls outside the
    image, the handle equals the center, a deformed polygon crosses itself, the shape ends less than 60%
    visible or smaller than 40 px, or the edit barely changes the shape (coverage IoU above 0.9, e.g. a
    square turned by 90 degrees).
    """
    if op_type not in OPERATION_TYPES:
        raise ValueError(f"unknown operation type {op_type!r}")
    scale = size / 64.0
    for attempt in range(10_000):
        rng = np.random.default_rng([seed, attempt])
        scene = random_scene(rng, size)
        candidates = [
            i
            for i, shape in enumerate(scene.shapes)
            if (op_type != "deform" or isinstance(shape, Polygon))
            and (op_type != "rotate" or not isinstance(shape, Circle))
            and _visible_fraction(scene, i) >= _MIN_VISIBLE_FRACTION
            and _visible_area(scene, i) >= _MIN_AREA
            and _color_distance(scene, i) >= _MIN_COLOR_DISTANCE
        ]
        if not candidates:
            continue
        index = int(rng.choice(candidates))
        try:
            if op_type == "translate":
                length = rng.uniform(*((16.0, 26.0) if long else (6.0, 14.0))) * scale
                direction = rng.uniform(0.0, 2 * math.pi)
                edit = translate_edit(scene, index, (length * math.cos(direction), length * math.sin(direction)))
            elif op_type == "rotate":
                angle = rng.uniform(*((60.0, 120.0) if long else (20.0, 60.0))) * rng.choice([-1.0, 1.0])
                edit = rotate_edit(scene, index, float(angle))
            elif op_type == "scale":
                shrink = rng.random() < 0.5
                if long:
                    low, high = (0.4, 0.6) if shrink else (1.6, 2.2)
                else:
                    low, high = (0.6, 0.8) if shrink else (1.25, 1.6)
                edit = scale_edit(scene, index, float(rng.uniform(low, high)))
            else:
                vertex = int(rng.integers(len(scene.shapes[index].vertices)))
                length = rng.uniform(*((10.0, 18.0) if long else (4.0, 10.0))) * scale
                direction = rng.uniform(0.0, 2 * math.pi)
                edit = deform_edit(scene, index, vertex, (length * math.cos(direction), length * math.sin(direction)))
        except ValueError:
            continue
        if _valid_edit(edit):
            return edit
    raise RuntimeError(f"no valid {op_type} edit found for seed {seed}")
