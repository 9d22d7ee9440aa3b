"""Other drag methods on the same backbone as ours, for side-by-side comparison.

Every method has one signature (:class:`Method`) and shares the editor's encoding, inversion, denoising with
mutual self-attention, decoding and paste-back: a baseline is a :class:`~dragnext.editor.DragEditor` whose
:meth:`~dragnext.editor.DragEditor.edit_latent` hook (how the latent is edited at a PBSI timestep) is replaced.

- :func:`dragnext`: ours, Latent Region Optimisation solved by PBSI (DragNeXt, Zhou et al., arXiv 2506.07611).
- :func:`point_drag`: point-based motion supervision with nearest-neighbour point tracking at one timestep
  (DragDiffusion, Shi et al., CVPR 2024, Sec. 3.3; the DragGAN recipe moved to a diffusion latent).
- :func:`warp_drag`: every region's latent moved to its target pose and the area it vacates filled, no
  optimisation (the FastDrag / RegionDrag family; the start of engine v2 alone).
- :func:`copy_drag`: the latent copied with the old content left in place (engine v1's ``warp``).
- :func:`identity`: inversion and reconstruction with no edit, the floor every method must beat.

Point edits the latent at the first denoising timestep after inversion only, so it runs with
``pbsi_timesteps=1``; warp and copy move it before that timestep and optimise nothing (``pbsi_timesteps=0``).
Their ``EditResult.config`` says so; every pass they spend is counted in ``passes``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from . import geometry
from .config import COPY_SETTINGS, IDENTITY_SETTINGS, PAPER, POINT_SETTINGS, WARP_SETTINGS, EditConfig
from .editor import DragEditor, EditResult, ProgressCallback, TimestepContext
from .instructions import DragRequest
from .models.base import Backbone
from .objective import outside_penalty

logger = logging.getLogger(__name__)



class Method(Protocol):
    """What every method is: one edit of ``request`` on ``backbone`` with ``config``."""

    def __call__(self, backbone: Backbone, request: DragRequest, config: EditConfig, *, seed: int = 0,
                 progress: ProgressCallback | None = None) -> EditResult: ...


def dragnext(backbone: Backbone, request: DragRequest, config: EditConfig, *, seed: int = 0,
             progress: ProgressCallback | None = None) -> EditResult:
    """Ours: DragNeXt's Latent Region Optimisation solved by Progressive Backward Self-Intervention."""
    return DragEditor(backbone, config)(request, seed=seed, progress=progress)


def identity(backbone: Backbone, request: DragRequest, config: EditConfig, *, seed: int = 0,
             progress: ProgressCallback | None = None) -> EditResult:
    """Inversion and reconstruction with no edit (the floor).

    Mutual self-attention is switched off: with no edit both branches are the same latent, so it would change
    nothing and double the denoising passes.
    """
    no_edit = config.override(**IDENTITY_SETTINGS)
    return DragEditor(backbone, no_edit)(request, seed=seed, progress=progress)


# ------------------------------------------------------------------------------------------------------- warp


def warp_drag(backbone: Backbone, request: DragRequest, config: EditConfig, *, seed: int = 0,
              progress: ProgressCallback | None = None) -> EditResult:
    """Every region's inverted latent moved to its target pose, the vacated area filled, then denoised with no
    optimisation (FastDrag / RegionDrag family; ``config.fill`` and ``deformation`` as given, by default ours)."""
    return DragEditor(backbone, config)(request, config.override(**WARP_SETTINGS), seed=seed, progress=progress)


def copy_drag(backbone: Backbone, request: DragRequest, config: EditConfig, *, seed: int = 0,
              progress: ProgressCallback | None = None) -> EditResult:
    """The handle region's inverted latent copied to where it lands, the old content left in place, a deform
    translated as a part: the ``warp`` baseline of engine v1, kept for continuity."""
    return DragEditor(backbone, config)(request, config.override(**COPY_SETTINGS), seed=seed, progress=progress)


# ------------------------------------------------------------------------------------------------------ point


@dataclass(frozen=True)
class PointSettings:
    """Point-based dragging settings; defaults are DragDiffusion's published ones (paper Sec. 4.1, code)."""

    max_iterations: int = 80  # motion-supervision steps at most (n_pix_step)
    motion_radius: int = 1  # r_m: the supervised patch is (2 r_m + 1)^2 feature pixels around each handle
    track_radius: int = 3  # r_p: tracking searches a (2 r_p + 1)^2 window around each handle
    learning_rate: float = 0.01  # Adam on the latent
    lambda_mask: float = 0.1  # weight of |z - z_ref| outside the editable mask
    # A handle within this many feature pixels of its target counts as arrived (no more supervision); when all
    # have, the loop stops. DragDiffusion's code uses < 2 at its (half-resolution) features; the issue asks ~1.
    reach_distance: float = 1.0


DRAGDIFFUSION = PointSettings()


def sample_features(features: torch.Tensor, points: np.ndarray) -> torch.Tensor:
    """Bilinear samples [N, C] of [1, C, h, w] features at N fractional feature (row, col) points (border-clamped)."""
    size = tuple(features.shape[-2:])
    normalized = geometry.image_to_normalized(geometry.rowcol_to_xy(np.asarray(points, dtype=np.float64)), size)
    grid = torch.as_tensor(normalized, dtype=features.dtype, device=features.device).reshape(1, 1, -1, 2)
    sampled = F.grid_sample(features, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return sampled[0, :, 0].T


def _patch_offsets(radius: int) -> np.ndarray:
    """(2r+1)^2 x 2 integer (row, col) offsets of a square patch."""
    steps = np.arange(-radius, radius + 1, dtype=np.float64)
    return np.stack(np.meshgrid(steps, steps, indexing="ij"), axis=-1).reshape(-1, 2)


def motion_supervision_loss(features: torch.Tensor, points: np.ndarray, targets: np.ndarray, radius: int,
                            reach_distance: float) -> torch.Tensor:
    """DragDiffusion's motion supervision: the patch one unit towards the target must match the *detached* patch.

    For each handle ``p`` with target ``g`` farther than ``reach_distance``: ``d = (g - p) / |g - p|`` and the
    loss adds ``sum_q mean_c |F(q + d) - sg(F(q))|`` over the ``(2r+1)^2`` patch ``q`` around ``p``, both
    sampled bilinearly (DragDiffusion: ``(2 r_m + 1)^2 * l1_loss``). Points are feature (row, col).
    """
    offsets = _patch_offsets(radius)
    loss = features.new_zeros(())
    for point, target in zip(points, targets, strict=True):
        direction = np.asarray(target, np.float64) - np.asarray(point, np.float64)
        distance = float(np.linalg.norm(direction))
        if distance < reach_distance:
            continue
        patch = np.asarray(point, np.float64) + offsets
        source = sample_features(features, patch).detach()
        stepped = sample_features(features, patch + direction / distance)
        loss = loss + (stepped - source).abs().mean(dim=1).sum()
    return loss


def track_points(features: torch.Tensor, anchors: torch.Tensor, points: np.ndarray, radius: int) -> np.ndarray:
    """Nearest-neighbour point tracking: each point moves to the pixel of its (2r+1)^2 window (around the
    rounded point, clipped to the map) whose feature is nearest (L1) to its anchor, the *original* handle's
    feature. ``anchors`` [N, C]; returns new integer feature (row, col) points as float64 [N, 2]."""
    height, width = features.shape[-2:]
    tracked = []
    with torch.no_grad():
        for point, anchor in zip(np.asarray(points, np.float64), anchors, strict=True):
            row, col = (int(round(v)) for v in point)
            r0, r1 = max(0, row - radius), min(height, row + radius + 1)
            c0, c1 = max(0, col - radius), min(width, col + radius + 1)
            window = features[0, :, r0:r1, c0:c1]
            distance = (window - anchor[:, None, None]).abs().sum(dim=0)
            best_row, best_col = divmod(int(distance.argmin()), distance.shape[1])
            tracked.append((r0 + best_row, c0 + best_col))
    return np.asarray(tracked, dtype=np.float64)


@dataclass
class PointDrag:
    latent: torch.Tensor  # the dragged latent, detached
    points: np.ndarray  # [N, 2] feature (row, col) of the handles where tracking left them
    losses: list[float]  # one per optimisation step
    reached: bool  # all handles arrived before the iteration budget ran out


def drag_points(latent: torch.Tensor, features_of: Callable[[torch.Tensor], torch.Tensor], handles: Sequence,
                targets: Sequence, settings: PointSettings = DRAGDIFFUSION,
                regulariser: Callable[[torch.Tensor], torch.Tensor] | None = None,
                gradient_mask: torch.Tensor | None = None) -> PointDrag:
    """The DragDiffusion loop on ``latent``: motion supervision, Adam step, then point tracking, until all
    handles are within ``reach_distance`` of their targets or ``max_iterations`` steps are spent.

    ``features_of(z)`` maps the latent to [1, C, h, w] features; ``handles``/``targets`` are feature (row, col).
    One call of ``features_of`` for the anchors (the original handle features), then one per iteration; the
    features of iteration k serve both the tracking of the step before and the loss of step k (as DragDiffusion).
    ``regulariser(z)`` is added to the loss; ``gradient_mask`` multiplies the latent's gradient.
    """
    points = np.asarray(handles, dtype=np.float64).reshape(-1, 2)
    targets = np.asarray(targets, dtype=np.float64).reshape(-1, 2)
    with torch.no_grad():
        anchors = sample_features(features_of(latent.detach()), points)
    z = latent.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=settings.learning_rate)
    losses: list[float] = []
    reached = False
    for step in range(settings.max_iterations + 1):
        features = features_of(z)
        if step > 0:
            points = track_points(features.detach(), anchors, points, settings.track_radius)
        reached = bool(np.all(np.linalg.norm(targets - points, axis=1) < settings.reach_distance))
        if reached or step == settings.max_iterations:
            break
        loss = motion_supervision_loss(features, points, targets, settings.motion_radius, settings.reach_distance)
        if regulariser is not None:
            loss = loss + regulariser(z)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if gradient_mask is not None:
            z.grad.mul_(gradient_mask)
        optimizer.step()
        losses.append(float(loss.detach()))
    return PointDrag(latent=z.detach(), points=points, losses=losses, reached=reached)


class PointEditor(DragEditor):
    """The editor with DragDiffusion's point dragging at the first denoising timestep instead of PBSI.

    Handles are each operation's handle, targets its target (the region is not used: point methods know only
    points). Features are the same as ours (``feature_blocks`` at ``feature_scale``; half the image size, as
    DragDiffusion, where ours compares them at native sizes), truncated forwards.
    Choice: the editable-mask term ``lambda |z - z_ref|`` is on the optimised latent itself, as ours; DragDiffusion
    puts it on the DDIM step taken from it, which needs a full forward per step. ``hard_mask`` applies as ours.
    """

    def __init__(self, backbone: Backbone, config: EditConfig | None = None, settings: PointSettings = DRAGDIFFUSION):
        super().__init__(backbone, config)
        self.settings = settings

    def edit_latent(self, latent, step: TimestepContext):
        if step.index > 0:
            return latent, []
        config, work, passes = step.config, step.work, step.passes
        image_size = work.image.shape[:2]
        # point supervision needs one map: where ours compares blocks at native sizes, DragDiffusion's half size
        feature_size = config.feature_size(image_size) or PAPER.feature_size(image_size)

        def features_of(z):
            passes.truncated_forward += 1
            return self.backbone.features(z, step.t, step.conditioning, config.feature_blocks, feature_size)

        def regulariser(z):
            return outside_penalty(z, step.reference_latent, step.latent_mask, self.settings.lambda_mask)

        def feature_point(p):
            return geometry.image_to_feature_pixel(p, image_size, feature_size)

        result = drag_points(
            latent, features_of, [feature_point(op.handle) for op in work.operations],
            [feature_point(op.target) for op in work.operations], self.settings, regulariser,
            step.latent_mask if config.hard_mask else None,
        )
        passes.backward += len(result.losses)
        logger.info("point drag: %d steps, handles %s", len(result.losses), "arrived" if result.reached else "short")
        return result.latent, result.losses


def point_drag(backbone: Backbone, request: DragRequest, config: EditConfig, *, seed: int = 0,
               progress: ProgressCallback | None = None, settings: PointSettings = DRAGDIFFUSION) -> EditResult:
    """DragDiffusion-style point dragging at one timestep, then denoising as ours (mutual self-attention)."""
    editor = PointEditor(backbone, config, settings)
    return editor(request, config.override(**POINT_SETTINGS), seed=seed, progress=progress)
