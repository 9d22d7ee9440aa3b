"""A pixel-space, unconditional diffusion model (the bundled one): the latent *is* the image in [-1, 1]."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import BUNDLED_DIR
from .base import (
    LOAD_ERRORS,
    Backbone,
    ModelLoadError,
    default_device,
    image_to_tensor,
    load_error_reason,
    tensor_to_image,
)
from .resolve import native_resolution

__all__ = ["BUNDLED_DIR", "PixelBackbone"]


class PixelBackbone(Backbone):
    name = "bundled"

    def __init__(self, unet, scheduler_config: dict, *, source: str = "", device: torch.device | None = None,
                 dtype: torch.dtype | None = None, autocast_bf16: bool = False):
        self.device = torch.device(device) if device is not None else default_device()
        # fp32 even on CUDA: the model is small and its weights ship in fp16 only to keep the repository light.
        self.dtype = dtype or torch.float32
        self.unet = unet.to(self.device, self.dtype).eval().requires_grad_(False)
        self.scheduler_config = dict(scheduler_config)
        self.source = source
        self.autocast_bf16 = autocast_bf16
        self.size_multiple = 2 ** (len(unet.config.down_block_types) - 1)
        self.native_size = native_resolution(dict(unet.config))  # pixel space: the sample size, 64 for the bundled

    @classmethod
    def from_pretrained(cls, folder: str | Path = BUNDLED_DIR, **kwargs) -> PixelBackbone:
        """Load a ``UNet2DModel`` folder (``unet/``, ``scheduler/``) as written by ``save_pretrained``."""
        from diffusers import DDIMScheduler, UNet2DModel

        try:
            unet = UNet2DModel.from_pretrained(folder, subfolder="unet", torch_dtype=torch.float32)
            scheduler = DDIMScheduler.from_pretrained(folder, subfolder="scheduler")
        except LOAD_ERRORS as error:
            raise ModelLoadError(
                f"could not load the pixel-space model from '{folder}': {load_error_reason(error)}"
            ) from error
        return cls(unet, scheduler.config, source=str(folder), **kwargs)

    @property
    def image_size(self) -> int:
        return int(self.unet.config.sample_size)

    def encode_image(self, image: np.ndarray) -> torch.Tensor:
        return image_to_tensor(image).to(self.device)

    def decode_latent(self, latent: torch.Tensor) -> np.ndarray:
        return tensor_to_image(latent)

    def encode_prompt(self, prompt: str) -> None:
        return None  # unconditional: prompts are accepted and ignored

    def _unet_call(self, latent: torch.Tensor, timestep: torch.Tensor, conditioning: Any) -> torch.Tensor:
        return self.unet(latent, timestep).sample
