"""The objective of Latent Region Optimisation: what the optimised latent's UNet features are pulled towards.

The paper's term (:func:`region_loss`) pulls each region's features, moved a fraction eta of the way, to the
unedited features warped by the same move; engine v2's (:class:`RegionObjective` with ``loss_target="start"``)
pulls them to the features of the moved, filled start. Both add :func:`outside_penalty` (lambda |z - z_ref|
outside the editable mask), which the point-dragging baseline shares.
"""

from __future__ import annotations

import torch

from . import geometry, transport
from .config import EditConfig
from .instructions import Operation

# UNet features follow translations of the content (convolutions), not rotations, scalings (receptive fields do
# not scale) or non-rigid stretches: warping the unedited features there misjudges the result. Measured: the
# warped target for every type turned large rotations back, IoU 0.72 against 0.89 (docs/benchmarks.md).
EQUIVARIANT_TYPES = ("translate",)


class RegionObjective:
    """The region term of Latent Region Optimisation, whose targets ``config.loss_target`` chooses.

    - ``warped-features`` (paper): every region's features pulled to the unedited features warped by its move at
      eta (:func:`region_loss`);
    - ``start`` (engine v2): every moved region, and the area the regions vacate, pulled to the features of the
      moved, filled latent (``start`` features), which hold each region at its target pose whatever the type;
    - ``by-type``: the paper's term for the types in ``EQUIVARIANT_TYPES`` (translations), the start's for the
      others, and the vacated area to the start's.
    """

    def __init__(self, config: EditConfig, operations, image_size, reference: list[torch.Tensor] | None,
                 start: list[torch.Tensor] | None):
        self.kind, self.deformation = config.loss_target, config.deformation
        self.image_size, self.reference, self.start = image_size, reference, start
        self.channels = sum(f.shape[1] for f in (reference if reference is not None else start))
        warped = [self.kind == "warped-features" or (self.kind == "by-type" and op.type in EQUIVARIANT_TYPES)
                  for op in operations]
        self.warped_ops = tuple(op for op, flag in zip(operations, warped, strict=True) if flag)
        # per map: the mask the start's features are compared over (moved regions of the other operations and
        # the vacated area), fixed since the start holds the full move
        self.start_masks = []
        if start is not None:
            for target in start:
                found = transport.motions(operations, image_size, tuple(target.shape[-2:]), self.deformation)
                covered = transport.vacated_mask(found)
                for flag, motion in zip(warped, found, strict=True):
                    if not flag:
                        covered = covered | motion.moved
                self.start_masks.append(covered.to(target.device, target.dtype)[None, None])

    def __call__(self, features: list[torch.Tensor], eta: float) -> torch.Tensor:
        loss = features[0].new_zeros(())
        if self.warped_ops:
            loss = loss + region_loss(features, self.reference, self.warped_ops, eta, self.image_size,
                                      self.deformation, self.channels)
        if self.start is not None:
            for feature, target, mask in zip(features, self.start, self.start_masks, strict=True):
                loss = loss + ((feature - target).abs() * mask).sum() / (mask.sum().clamp(min=1.0) * self.channels)
        return loss


def region_loss(features, reference_features, operations, eta: float, image_size: tuple[int, int],
                deformation: str = "translate", channels: int | None = None) -> torch.Tensor:
    """The paper's region term of Latent Region Optimisation: for each operation, the mean L1 distance between
    the features of its region moved by ``eta`` and the reference features warped there.

    ``features`` and ``reference_features`` are maps [B, C, h, w] or lists of maps (blocks at their native
    resolutions); each map's term is normalised by its region's area and the channels of all maps together, so
    one concatenated map and its parts give the same loss."""
    features, reference_features = as_list(features), as_list(reference_features)
    channels = channels or sum(f.shape[1] for f in features)
    loss = features[0].new_zeros(())
    for feature, reference in zip(features, reference_features, strict=True):
        for op in operations:
            moved, grid = _motion(op, eta, image_size, tuple(feature.shape[-2:]), feature.device, deformation)
            target = geometry.warp(reference, grid)
            area = moved.sum().clamp(min=1.0) * channels
            loss = loss + ((feature - target).abs() * moved).sum() / area
    return loss


def as_list(features) -> list[torch.Tensor]:
    return list(features) if isinstance(features, (list, tuple)) else [features]


def outside_penalty(z: torch.Tensor, reference_latent: torch.Tensor, latent_mask: torch.Tensor,
                    weight: float) -> torch.Tensor:
    """``weight`` x the mean |z - z_ref| outside the editable mask (per channel and pixel), 0 where all is editable."""
    outside = 1.0 - latent_mask
    if weight <= 0 or outside.sum() == 0:
        return z.new_zeros(())
    return weight * ((z - reference_latent).abs() * outside).sum() / (outside.sum() * z.shape[1])


def stalled(history: list[float], tolerance: float, window: int = 3) -> bool:
    """True once the loss is zero (nothing left to optimise: a moved start already meets its targets), or, with
    a ``tolerance``, fell by less than that fraction over the last ``window`` iterations."""
    if history and history[-1] <= 0.0:
        return True
    if tolerance <= 0 or len(history) <= window:
        return False
    before, now = history[-window - 1], history[-1]
    return before - now < tolerance * abs(before)


def at_its_own_target(latent, reference_latent, latent_mask, config: EditConfig, timestep_index: int) -> bool:
    """Whether the loss at this timestep is exactly zero with a zero gradient, so optimising would change nothing.

    At the first timestep a moved start *is* the target of the ``start`` objective: its features equal the
    targets, the L1 term and its gradient are 0, and the regulariser is 0 too unless the start differs from the
    unedited latent outside the editable mask (where a hard mask zeroes the gradient anyway). Adam moves nothing
    on a zero gradient, so the passes (target features, one forward and backward) are skipped, not spent.
    """
    if not (timestep_index == 0 and config.start == "moved" and config.loss_target == "start"):
        return False
    if config.hard_mask or config.lambda_editable == 0:
        return True
    return not bool(((latent - reference_latent) * (1.0 - latent_mask)).any())


def _motion(op: Operation, eta: float, image_size, feature_size, device, deformation: str):
    moved, grid = geometry.region_motion(op.region, op.type, op.handle, op.target, op.center, eta, image_size,
                                         feature_size, deformation, op.support)
    return moved.to(device)[None, None], grid.to(device)
