"""Moving latent content to where the drags put it, and filling what the moved regions leave behind.

The start of engine v2 and the copy-paste baselines share this: every operation's content is sampled from
the unedited tensor through its inverse map (:func:`geometry.region_motion`, at the tensor's resolution) and
pasted where it lands, later operations over earlier ones; the area the regions vacate (inside a source
region, outside every moved one) is filled from the surrounding unedited content.

Fills:
- ``nearest``: each vacated pixel copies the nearest unedited pixel (FastDrag's nearest-neighbour fill);
- ``harmonic``: the smooth (Laplace) interpolation of the unedited boundary, started from ``nearest``: it
  continues gradients and flat areas without the streaks a nearest copy leaves;
- ``none``: the vacated area keeps its old content (the old ``warp`` baseline, now ``copy``).

The unedited boundary excludes the moved regions, so a region's own content never bleeds into its hole.
Pure tensor code, no model: geometry below, the editor and the baselines above.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from scipy import ndimage

from . import geometry
from .config import FILLS
from .instructions import Operation


@dataclass(frozen=True)
class Motion:
    """Where one operation's content comes from and goes to, at one resolution."""

    source: torch.Tensor  # [h, w] bool: the handle region
    moved: torch.Tensor  # [h, w] bool: where the drag puts content
    grid: torch.Tensor  # [1, h, w, 2] inverse map, grid_sample coordinates


def motions(operations: tuple[Operation, ...], image_size: geometry.Size, size: geometry.Size,
            deformation: str = "field") -> list[Motion]:
    """Each operation's full move (eta = 1) at resolution ``size``; points are in ``image_size`` pixels."""
    found = []
    for op in operations:
        moved, grid = geometry.region_motion(op.region, op.type, op.handle, op.target, op.center, 1.0, image_size,
                                             size, deformation, op.support)
        source = geometry.resize_mask(op.region, size) >= 0.5
        found.append(Motion(source=source, moved=moved > 0, grid=grid))
    return found


def vacated_mask(found: list[Motion]) -> torch.Tensor:
    """[h, w] bool: inside some handle region and outside every moved one."""
    sources = torch.stack([m.source for m in found]).any(0)
    moved = torch.stack([m.moved for m in found]).any(0)
    return sources & ~moved


def move_content(tensor: torch.Tensor, found: list[Motion], *, fill: str = "harmonic",
                 mode: str = "bilinear") -> torch.Tensor:
    """``tensor`` [B, C, h, w] with every motion applied (in order) and the vacated area filled."""
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {', '.join(FILLS)}, got {fill!r}")
    edited = tensor.clone()
    if fill != "none":
        touched = torch.stack([m.source | m.moved for m in found]).any(0).to(tensor.device)
        filled = fill_hole(tensor, touched, harmonic=fill == "harmonic")
        edited = torch.where(vacated_mask(found).to(tensor.device), filled, edited)
    for motion in found:
        moved = geometry.warp(tensor, motion.grid.to(tensor.device), mode=mode, padding="border")
        edited = torch.where(motion.moved.to(tensor.device), moved, edited)
    return edited


def fill_hole(tensor: torch.Tensor, hole: torch.Tensor, harmonic: bool = True) -> torch.Tensor:
    """``tensor`` [B, C, h, w] with the pixels under ``hole`` [h, w] rebuilt from the pixels outside it.

    Nearest copy; or, with ``harmonic``, the Laplace solution with the pixels outside as boundary values,
    solved coarse to fine (:func:`_relax`). A hole that covers everything is left as it is.
    """
    hole_np = hole.detach().cpu().numpy().astype(bool)
    if not hole_np.any() or hole_np.all():
        return tensor.clone()
    _, (rows, cols) = ndimage.distance_transform_edt(hole_np, return_indices=True)
    index = torch.as_tensor(rows * hole_np.shape[1] + cols, device=tensor.device).reshape(-1)
    filled = tensor.reshape(*tensor.shape[:2], -1)[..., index].reshape(tensor.shape)
    if not harmonic:
        return filled
    with torch.no_grad():
        return _relax(filled, hole.to(tensor.device))


def _relax(tensor: torch.Tensor, hole: torch.Tensor, tolerance: float = 1e-5,
           max_iterations: int = 2000) -> torch.Tensor:
    """Jacobi iterations of the hole's pixels towards the mean of their 4 neighbours, started from the solution
    at half resolution (the hole grown to whole coarse pixels), so that a wide hole converges in tens of
    iterations instead of its width squared. Stops when no pixel moves by more than ``tolerance`` times the
    tensor's range."""
    height, width = hole.shape
    if min(height, width) >= 8 and hole.any():
        coarse_hole = F.max_pool2d(hole[None, None].float(), 2, ceil_mode=True)[0, 0] > 0
        if not coarse_hole.all():
            coarse = _relax(F.avg_pool2d(tensor, 2, ceil_mode=True), coarse_hole, tolerance, max_iterations)
            start = F.interpolate(coarse, scale_factor=2, mode="bilinear", align_corners=False)[..., :height, :width]
            tensor = torch.where(hole, start, tensor)
    kernel = torch.tensor([[0.0, 0.25, 0.0], [0.25, 0.0, 0.25], [0.0, 0.25, 0.0]], dtype=tensor.dtype,
                          device=tensor.device).expand(tensor.shape[1], 1, 3, 3)
    scale = float((tensor.amax() - tensor.amin()).clamp(min=1e-12))
    for _ in range(max_iterations):
        average = F.conv2d(F.pad(tensor, (1, 1, 1, 1), mode="replicate"), kernel, groups=tensor.shape[1])
        updated = torch.where(hole, average, tensor)
        change = float((updated - tensor).abs().max())
        tensor = updated
        if change < tolerance * scale:
            break
    return tensor
