"""Procedural scenes with exact ground truth for every drag.

A scene is a smooth linear gradient with one to three solid, opaque shapes drawn in order (later ones
occlude earlier ones). Scenes are kept as parameters, not pixels, so that the correct result of an edit
is obtained by transforming the parameters of one shape and rendering again with the same renderer.

Conventions follow the rest of the package: points are ``(x, y)`` in pixels, x right, y down, and pixel
``(row i, column j)`` has its centre at ``(x=j, y=i)``; it covers ``[j-0.5, j+0.5] x [i-0.5, i+0.5]``.
Images are ``float32`` arrays ``H x W x 3`` in ``[0, 1]``; masks are ``H x W`` in ``[0, 1]`` (coverage).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

# Sub-samples per pixel side for anti-aliasing: 4x4 coverage gives 17 grey levels on an edge, enough for
# a 64 px image and cheap to render (a scene renders in about a millisecond).
SUPERSAMPLE = 4

Color = tuple[float, float, float]
Point = tuple[float, float]


@dataclass(frozen=True)
class Circle:
    center: Point
    radius: float
    color: Color
    label: str = "circle"

    def transformed(self, matrix: np.ndarray) -> Circle:
        """Apply a 2x3 similarity transform (rotation, uniform scale, translation) to the circle."""
        center = apply_affine(matrix, [self.center])[0]
        scale = math.sqrt(abs(np.linalg.det(np.asarray(matrix, dtype=np.float64)[:, :2])))
        return replace(self, center=center, radius=self.radius * scale)

    def inside(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        cx, cy = self.center
        return (xs - cx) ** 2 + (ys - cy) ** 2 <= self.radius**2

    def points(self) -> list[Point]:
        return [self.center]


@dataclass(frozen=True)
class Polygon:
    vertices: tuple[Point, ...]
    color: Color
    label: str = "polygon"

    def transformed(self, matrix: np.ndarray) -> Polygon:
        return replace(self, vertices=tuple(apply_affine(matrix, self.vertices)))

    def with_vertex(self, index: int, point: Point) -> Polygon:
        vertices = list(self.vertices)
        vertices[index] = (float(point[0]), float(point[1]))
        return replace(self, vertices=tuple(vertices))

    def inside(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Even-odd rule, so non-convex polygons (a dragged vertex) render correctly too."""
        result = np.zeros(xs.shape, dtype=bool)
        vertices = self.vertices
        for (x0, y0), (x1, y1) in zip(vertices, vertices[1:] + vertices[:1], strict=True):
            crosses = (y0 > ys) != (y1 > ys)
            with np.errstate(divide="ignore", invalid="ignore"):
                x_at_y = x0 + (ys - y0) * (x1 - x0) / (y1 - y0)
            result ^= crosses & (xs < x_at_y)
        return result

    def points(self) -> list[Point]:
        return list(self.vertices)

    @property
    def centroid(self) -> Point:
        return tuple(np.mean(np.asarray(self.vertices), axis=0).tolist())


Shape = Circle | Polygon


@dataclass(frozen=True)
class Scene:
    size: int
    color_start: Color
    color_end: Color
    gradient_angle: float  # radians, direction in which the gradient goes from start to end colour
    shapes: tuple[Shape, ...] = field(default_factory=tuple)

    def with_shape(self, index: int, shape: Shape) -> Scene:
        shapes = list(self.shapes)
        shapes[index] = shape
        return replace(self, shapes=tuple(shapes))


def apply_affine(matrix: np.ndarray, points) -> list[Point]:
    matrix = np.asarray(matrix, dtype=np.float64)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    out = pts @ matrix[:, :2].T + matrix[:, 2]
    return [(float(x), float(y)) for x, y in out]


def _subpixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    offsets = (np.arange(SUPERSAMPLE) + 0.5) / SUPERSAMPLE - 0.5
    coords = (np.arange(size)[:, None] + offsets[None, :]).reshape(-1)
    ys, xs = np.meshgrid(coords, coords, indexing="ij")
    return xs, ys


def shape_coverage(shape: Shape, size: int) -> np.ndarray:
    """Fraction of each pixel covered by the shape, ``size x size`` float32 in [0, 1]."""
    xs, ys = _subpixel_grid(size)
    inside = shape.inside(xs, ys).astype(np.float32)
    return inside.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3))


def render_background(scene: Scene) -> np.ndarray:
    size = scene.size
    coords = np.arange(size, dtype=np.float64)
    ys, xs = np.meshgrid(coords, coords, indexing="ij")
    dx, dy = math.cos(scene.gradient_angle), math.sin(scene.gradient_angle)
    projection = xs * dx + ys * dy
    t = (projection - projection.min()) / max(projection.max() - projection.min(), 1e-9)
    start = np.asarray(scene.color_start, dtype=np.float64)
    end = np.asarray(scene.color_end, dtype=np.float64)
    return (start + (end - start) * t[..., None]).astype(np.float32)


def render(scene: Scene) -> np.ndarray:
    image = render_background(scene)
    for shape in scene.shapes:
        alpha = shape_coverage(shape, scene.size)[..., None]
        image = image * (1.0 - alpha) + np.asarray(shape.color, dtype=np.float32) * alpha
    return image.astype(np.float32)


def visible_mask(scene: Scene, index: int) -> np.ndarray:
    """Coverage of shape ``index`` that is not hidden by the shapes drawn after it."""
    mask = shape_coverage(scene.shapes[index], scene.size)
    for shape in scene.shapes[index + 1 :]:
        mask = mask * (1.0 - shape_coverage(shape, scene.size))
    return mask


# ----------------------------------------------------------------------------------------------------
# Random scenes


def _random_color(rng: np.random.Generator) -> Color:
    return tuple(float(v) for v in rng.uniform(0.0, 1.0, size=3))


def _distinct_color(rng: np.random.Generator, avoid: list[np.ndarray], min_distance: float = 0.35) -> Color:
    """A colour at least ``min_distance`` (RGB Euclidean) from every colour in ``avoid``, when one exists."""
    best, best_distance = None, -1.0
    for _ in range(64):
        candidate = np.asarray(_random_color(rng))
        distance = min((float(np.linalg.norm(candidate - a)) for a in avoid), default=1.0)
        if distance >= min_distance:
            return tuple(candidate.tolist())
        if distance > best_distance:
            best, best_distance = candidate, distance
    return tuple(best.tolist())


def rotation_about(angle: float, center: Point) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    cx, cy = center
    return np.array([[c, -s, cx - c * cx + s * cy], [s, c, cy - s * cx - c * cy]])


def random_shape(rng: np.random.Generator, size: int, color: Color, kind: str | None = None) -> Shape:
    """One shape of roughly 8-28 px (at 64 px; sizes scale with the canvas), fully inside the canvas."""
    scale = size / 64.0
    kind = kind or str(rng.choice(["circle", "square", "rectangle", "triangle"]))
    if kind == "circle":
        radius = rng.uniform(4.0, 14.0) * scale
        extent = radius
    elif kind in ("square", "rectangle"):
        width = rng.uniform(8.0, 28.0) * scale
        height = width if kind == "square" else rng.uniform(8.0, 28.0) * scale
        angle = 0.0 if rng.random() < 0.5 else rng.uniform(0.0, math.pi / 2)
        extent = 0.5 * math.hypot(width, height)
    elif kind == "triangle":
        radius = rng.uniform(6.0, 15.0) * scale
        # Vertex angles spread at least 70 degrees apart so triangles are never slivers.
        base = rng.uniform(0, 2 * math.pi)
        gaps = rng.dirichlet([4.0, 4.0, 4.0]) * (2 * math.pi - 3 * math.radians(70)) + math.radians(70)
        angles = base + np.concatenate([[0.0], np.cumsum(gaps[:2])])
        extent = radius
    else:
        raise ValueError(f"unknown shape kind {kind!r}")
    margin = 2.0 * scale
    low, high = extent + margin, size - 1 - extent - margin
    cx, cy = (float(v) for v in rng.uniform(low, high, size=2))
    if kind == "circle":
        return Circle(center=(cx, cy), radius=float(radius), color=color)
    if kind == "triangle":
        vertices = tuple((cx + radius * math.cos(a), cy + radius * math.sin(a)) for a in angles)
        return Polygon(vertices=tuple((float(x), float(y)) for x, y in vertices), color=color, label=kind)
    hw, hh = width / 2, height / 2
    corners = [(cx - hw, cy - hh), (cx + hw, cy - hh), (cx + hw, cy + hh), (cx - hw, cy + hh)]
    polygon = Polygon(vertices=tuple(corners), color=color, label=kind)
    return polygon.transformed(rotation_about(angle, (cx, cy))) if angle else polygon


def random_scene(seed: int | np.random.Generator, size: int = 64, num_shapes: int | None = None) -> Scene:
    """A deterministic random scene: gradient background and 1-3 shapes of distinct colours."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    start, end = _random_color(rng), _random_color(rng)
    angle = float(rng.uniform(0, 2 * math.pi))
    count = int(num_shapes if num_shapes is not None else rng.integers(1, 4))
    colors: list[np.ndarray] = [np.asarray(start), np.asarray(end)]
    shapes = []
    for _ in range(count):
        color = _distinct_color(rng, colors)
        colors.append(np.asarray(color))
        shapes.append(random_shape(rng, size, color))
    return Scene(size=size, color_start=start, color_end=end, gradient_angle=angle, shapes=tuple(shapes))
