"""Ground-truth metrics for edits of procedural scenes: numpy arrays in, floats out.

Images may be ``float`` in ``[0, 1]`` or ``uint8`` in ``[0, 255]`` (``H x W x 3``); they are normalised to
float64 in ``[0, 1]`` first. Masks are ``H x W``; boolean, or float coverage (then ``> 0.5`` is inside).
No torch here: the benchmark scores saved images without loading a model.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from skimage.metrics import structural_similarity

if TYPE_CHECKING:
    from .ground_truth import GroundTruthEdit

# PSNR of identical images (the MSE is zero), in dB.
PSNR_CAP = 100.0

# RGB Euclidean distance (colours in [0, 1]) below which a pixel counts as the shape's colour. An
# anti-aliased edge pixel of coverage c over a background B is at distance (1 - c) * |B - S| from the shape
# colour S, so a fixed threshold keeps edge pixels with c > 1 - threshold / |B - S|. Scene colours are drawn
# at least ~0.35 apart, which bounds the threshold from above (the background must stay out). Against the
# visible ``coverage > 0.5`` of every shape in 400 random scenes (shapes of 10+ visible pixels), IoU
# median / mean: 0.10: 0.93 / 0.91, 0.15: 0.95 / 0.93, 0.20: 0.97 / 0.95, 0.25: 0.98 / 0.94 (more failures
# where the gradient comes near the shape's colour), 0.30: 0.98 / 0.91. So 0.2. Known limit: on a
# high-contrast edge (|B - S| ~ 1) pixels of coverage 0.5-0.8 are missed, e.g. a row of 0.75 coverage along
# an axis-aligned side; small, high-contrast polygons can drop to IoU ~0.8.
RECOVER_THRESHOLD = 0.2


def _image(image: np.ndarray) -> np.ndarray:
    """``H x W x 3`` float64 in [0, 1] from uint8 or float."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    return image.astype(np.float64)


def _mask(mask: np.ndarray) -> np.ndarray:
    """Boolean ``H x W``: a bool mask as is, a numeric one thresholded at 0.5."""
    mask = np.asarray(mask)
    return mask if mask.dtype == bool else mask > 0.5


def psnr(output: np.ndarray, expected: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB (peak 1.0) over the whole image or the pixels of ``mask``.

    Identical images give ``PSNR_CAP`` (100 dB); an empty mask gives NaN.
    """
    a, b = _image(output), _image(expected)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    squared = (a - b) ** 2
    if mask is not None:
        squared = squared[_mask(mask)]
    if squared.size == 0:
        return math.nan
    mse = float(squared.mean())
    if mse <= 10.0 ** (-PSNR_CAP / 10.0):
        return PSNR_CAP
    return float(10.0 * math.log10(1.0 / mse))


def ssim(output: np.ndarray, expected: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Structural similarity (skimage, 7x7 windows, ``data_range=1``), the SSIM map averaged over ``mask``.

    Without a mask this is the mean SSIM of the whole image (over pixels and channels); an empty mask gives
    NaN.
    """
    a, b = _image(output), _image(expected)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    _, full = structural_similarity(a, b, channel_axis=-1, data_range=1.0, full=True)
    per_pixel = full.mean(axis=-1)
    if mask is None:
        return float(per_pixel.mean())
    selected = per_pixel[_mask(mask)]
    return float(selected.mean()) if selected.size else math.nan


def recover_shape_mask(output: np.ndarray, color, threshold: float = RECOVER_THRESHOLD) -> np.ndarray:
    """Pixels whose RGB Euclidean distance to ``color`` (in [0, 1]) is below ``threshold``; ``H x W`` bool.

    With the default threshold (0.2, see ``RECOVER_THRESHOLD``) the mask recovered from a rendered scene
    matches the shape's visible ``coverage > 0.5`` with a median IoU of 0.97 (mean 0.965 on the expected
    images of ``ground_truth.random_edit``).
    """
    distance = np.linalg.norm(_image(output) - np.asarray(color, dtype=np.float64), axis=-1)
    return distance < threshold


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two masks; 1.0 when both are empty."""
    a, b = _mask(a), _mask(b)
    union = int(np.logical_or(a, b).sum())
    if union == 0:
        return 1.0
    return float(np.logical_and(a, b).sum()) / union


def centroid(mask: np.ndarray) -> tuple[float, float]:
    """``(x, y)`` centre of mass of a mask (bool, or float weights); ``(nan, nan)`` when empty."""
    weights = np.asarray(mask, dtype=np.float64)
    total = float(weights.sum())
    if total <= 0:
        return (math.nan, math.nan)
    ys, xs = np.indices(weights.shape)
    return (float((xs * weights).sum()) / total, float((ys * weights).sum()) / total)


def centroid_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Distance in pixels between the centroids of two masks; inf when either is empty."""
    ca, cb = centroid(a), centroid(b)
    if math.isnan(ca[0]) or math.isnan(cb[0]):
        return math.inf
    return math.hypot(ca[0] - cb[0], ca[1] - cb[1])


def score_edit(output: np.ndarray, edit: GroundTruthEdit) -> dict[str, float]:
    """Score an edited image against a ``GroundTruthEdit`` (``output``: uint8 or float ``H x W x 3``).

    Keys:
    - ``psnr``, ``ssim``: whole image against ``edit.expected_image``;
    - ``psnr_shape``: PSNR inside the expected shape (``expected_mask > 0.5``);
    - ``psnr_vacated``: PSNR where the shape was and no longer is (``source_mask > 0.5`` and
      ``expected_mask < 0.5``; the background must show there); NaN if that is empty;
    - ``iou``: the shape recovered from ``output`` by its colour against ``expected_mask > 0.5``;
    - ``iou_unedited``: the same for the unedited input image, the floor an edit must beat;
    - ``centroid_error``: pixels between the centroids of the recovered and the expected shape (inf when
      nothing is recovered).
    """
    expected_shape = np.asarray(edit.expected_mask) > 0.5
    vacated = (np.asarray(edit.source_mask) > 0.5) & ~(np.asarray(edit.expected_mask) >= 0.5)
    color = edit.expected_scene.shapes[edit.shape_index].color
    recovered = recover_shape_mask(output, color)
    recovered_input = recover_shape_mask(edit.request.image, color)
    return {
        "psnr": psnr(output, edit.expected_image),
        "ssim": ssim(output, edit.expected_image),
        "psnr_shape": psnr(output, edit.expected_image, expected_shape),
        "psnr_vacated": psnr(output, edit.expected_image, vacated) if vacated.any() else math.nan,
        "iou": iou(recovered, expected_shape),
        "iou_unedited": iou(recovered_input, expected_shape),
        "centroid_error": centroid_distance(recovered, expected_shape),
    }


def ssim_map(output: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM ``H x W`` (skimage, 7x7 windows, ``data_range=1``, mean over the channels)."""
    a, b = _image(output), _image(expected)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    return structural_similarity(a, b, channel_axis=-1, data_range=1.0, full=True)[1].mean(axis=-1)


def _mean_over(values: np.ndarray, mask: np.ndarray) -> float:
    selected = np.asarray(values, dtype=np.float64)[_mask(mask)]
    return float(selected.mean()) if selected.size else math.nan


def image_fidelity(input_image: np.ndarray, output_image: np.ndarray, arrived_image: np.ndarray,
                   handle_mask: np.ndarray, moved_mask: np.ndarray, distance_map) -> dict[str, float]:
    """The paper's image-fidelity scores IF = 1 - perceptual distance over regions (its eqs. 11-13).

    OUR READING of the paper (its text leaves the regions loose; marked as ours):

    - ``if_ed`` (fidelity of the unedited area): ``1 - mean_U D(x, y)`` with ``U`` every pixel outside the
      handle regions and outside the moved (target) regions: what no operation touches must stay. Higher is
      better.
    - ``if_hh`` (handle -> handle): ``1 - mean_H D(x, y)`` over the handle regions ``H``: the input's content
      there against the output's, i.e. how much of the content that should have *left* is still in place.
      Lower means the region moved away (where handle and target regions overlap it cannot reach 0).
    - ``if_th`` (target <- handle): ``1 - mean_T D(x', y)`` over the moved regions ``T``, where ``x'`` is the
      input's handle content moved to its target pose by the operation's full motion (``arrived_image``,
      outside ``T`` taken from the output so that a windowed distance sees only the region): how well the
      content that should have *arrived* did. Higher is better.

    ``x`` = ``input_image``, ``y`` = ``output_image``; ``distance_map(a, b)`` is an ``H x W`` map (see
    ``perceptual.py``: LPIPS or the 1 - SSIM fallback); an empty region gives NaN.
    """
    handle, moved = _mask(handle_mask), _mask(moved_mask)
    unedited = ~(handle | moved)
    output = _image(output_image)
    direct = distance_map(_image(input_image), output)
    arrived = np.where(moved[..., None], _image(arrived_image), output)
    return {
        "if_ed": 1.0 - _mean_over(direct, unedited),
        "if_hh": 1.0 - _mean_over(direct, handle),
        "if_th": 1.0 - _mean_over(distance_map(arrived, output), moved),
    }
