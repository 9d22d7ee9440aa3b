"""Perceptual distances for the image-fidelity metrics: LPIPS (AlexNet) when its weights are on disk, else 1 - SSIM.

A distance turns two ``H x W x 3`` images (uint8, or float in [0, 1]) into a per-pixel map ``H x W`` (0 = the
same), so that a metric can average it over any region (``metrics.image_fidelity``).

- :class:`LPIPSDistance`: LPIPS v0.1 with AlexNet features (Zhang et al., CVPR 2018), its spatial map (``spatial
  =True``: the per-layer distances upsampled to the image size and summed), as drag-editing papers report it.
  Used only when the ``lpips`` package is installed *and* both its linear-layer weights and torchvision's
  AlexNet weights are already on disk: nothing is ever downloaded.
- :class:`SSIMDistance`: the weight-free fallback, ``1 - SSIM`` per pixel (skimage, 7x7 windows, data range 1,
  averaged over RGB), clipped to [0, 1]. Not on LPIPS's scale: tables say which distance they use and never mix.

:func:`load_distance` picks one, once per run.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Protocol

import numpy as np

from .metrics import ssim_map

logger = logging.getLogger(__name__)

ALEXNET_WEIGHTS = "alexnet-owt-7be5be79.pth"  # torchvision's ImageNet AlexNet, what lpips loads
CHOICES = ("auto", "lpips", "ssim")


class PerceptualDistance(Protocol):
    name: str  # short, goes in every results row and table
    description: str  # one sentence for reports

    def map(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``H x W`` float distance map of two images of the same size (0 where they agree)."""


class SSIMDistance:
    name = "1-SSIM"
    description = ("1 - SSIM per pixel (skimage, 7x7 windows, data range 1, mean over RGB) clipped to [0, 1]: the "
                   "weight-free fallback used because LPIPS weights are not available; not on LPIPS's scale")

    def map(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.clip(1.0 - ssim_map(a, b), 0.0, 1.0)


class LPIPSDistance:
    name = "LPIPS-alex"
    description = "LPIPS v0.1, AlexNet (Zhang et al. 2018), spatial map averaged over each region"

    def __init__(self, device=None):
        import lpips
        import torch

        self.device = torch.device(device or "cpu")
        self.model = lpips.LPIPS(net="alex", spatial=True, verbose=False).eval().to(self.device)

    def map(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        import torch

        def tensor(image):
            image = np.asarray(image)
            scaled = image.astype(np.float32) / (255.0 if image.dtype == np.uint8 else 1.0)
            return torch.from_numpy(scaled).permute(2, 0, 1)[None].to(self.device) * 2.0 - 1.0

        with torch.no_grad():
            return self.model(tensor(a), tensor(b))[0, 0].float().cpu().numpy()


def lpips_available() -> tuple[bool, str]:
    """(whether LPIPS can run offline here, why not) — looks at files only, imports nothing heavy."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or spec.origin is None:
        return False, "the lpips package is not installed"
    if importlib.util.find_spec("torchvision") is None:
        return False, "torchvision (needed by lpips) is not installed"
    linear = Path(spec.origin).parent / "weights" / "v0.1" / "alex.pth"
    if not linear.is_file():
        return False, f"lpips's AlexNet linear weights are missing ({linear})"
    import torch

    alexnet = Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_WEIGHTS
    if not alexnet.is_file():
        return False, f"torchvision's AlexNet weights are not on disk ({alexnet}); nothing is downloaded"
    return True, ""


def load_distance(choice: str = "auto", device=None) -> PerceptualDistance:
    """``auto``: LPIPS when :func:`lpips_available`, else 1 - SSIM; ``lpips``: LPIPS or a ``RuntimeError``;
    ``ssim``: 1 - SSIM."""
    if choice not in CHOICES:
        raise ValueError(f"perceptual distance must be one of {', '.join(CHOICES)}, got {choice!r}")
    if choice == "ssim":
        return SSIMDistance()
    available, reason = lpips_available()
    if available:
        return LPIPSDistance(device)
    if choice == "lpips":
        raise RuntimeError(f"LPIPS cannot be used: {reason}")
    logger.info("LPIPS unavailable (%s); image fidelity uses 1 - SSIM", reason)
    return SSIMDistance()
