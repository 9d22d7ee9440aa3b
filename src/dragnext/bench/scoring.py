"""Scores of one edited image: the paper's image fidelity (IF_*) and, for synthetic scenes, the ground truth."""

from __future__ import annotations

import numpy as np
import torch

from .. import geometry
from ..ground_truth import GroundTruthEdit
from ..instructions import DragRequest
from ..metrics import image_fidelity, score_edit
from ..models.base import image_to_tensor, tensor_to_image
from ..perceptual import PerceptualDistance
from ..support import with_supports

IF_KEYS = ("if_ed", "if_hh", "if_th")
TRUTH_KEYS = ("psnr", "ssim", "psnr_shape", "psnr_vacated", "iou", "iou_unedited", "centroid_error")


def edit_regions(request: DragRequest) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(handle regions, moved regions, the input with each handle region's content moved there) at image size.

    The moved region and the content come from the full motion (eta = 1) of ``geometry.region_motion`` at the
    image's own resolution, bilinear; a later operation is drawn over an earlier one. A ``deform`` arrives as the
    displacement field moves it (the design's reading), whichever deformation the scored method used.
    """
    request = with_supports(request)  # a deform's reach read from the picture, as the editor reads it
    size = request.image.shape[:2]
    pixels = image_to_tensor(request.image)
    arrived = pixels.clone()
    handle = np.zeros(size, dtype=bool)
    moved_all = np.zeros(size, dtype=bool)
    for op in request.operations:
        moved, grid = geometry.region_motion(op.region, op.type, op.handle, op.target, op.center, 1.0, size, size,
                                             deformation="field", support=op.support)
        inside = moved > 0
        arrived = torch.where(inside[None, None], geometry.warp(pixels, grid, padding="border"), arrived)
        handle |= np.asarray(op.region, dtype=bool)
        moved_all |= inside.numpy()
    return handle, moved_all, tensor_to_image(arrived)


def score_sample(request: DragRequest, output: np.ndarray, distance: PerceptualDistance,
                 truth: GroundTruthEdit | None = None) -> dict[str, float]:
    """IF_ed, IF_hh, IF_th with ``distance``; plus ``metrics.score_edit`` against ``truth`` when there is one."""
    handle, moved, arrived = edit_regions(request)
    scores = image_fidelity(request.image, output, arrived, handle, moved, distance.map)
    if truth is not None:
        scores.update(score_edit(output, truth))
    return scores
