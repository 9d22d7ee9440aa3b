"""The interface every backbone offers the editor, and the machinery they share (feature hooks, devices).

A backbone wraps one diffusion model: it turns images into latents and back, encodes a prompt, predicts
noise, and reads UNet features. The editor never touches a diffusers model class directly.
"""

from __future__ import annotations

import contextlib
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..config import ConfigError
from .resolve import ModelLoadError  # noqa: F401 - defined without torch (the CLI checks before loading)

# What diffusers and transformers raise from ``from_pretrained`` for a missing or malformed model: beyond
# OSError/ValueError, a config.json with the wrong shapes fails inside a constructor (TypeError "object of type
# 'int' has no len()", KeyError, AttributeError, IndexError) or when the weights do not fit (RuntimeError).
LOAD_ERRORS = (OSError, ValueError, TypeError, KeyError, AttributeError, IndexError, RuntimeError)


def load_error_reason(error: BaseException) -> str:
    """The first line of a loader's error, cut short, for a one-line message."""
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:160]


class _StopForward(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised from a hook to end a UNet forward once the last wanted feature has been computed."""


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """H x W x 3 uint8 RGB -> [1, 3, H, W] float32 in [-1, 1]."""
    return torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1)[None].float() / 127.5 - 1.0


def tensor_to_image(pixels: torch.Tensor) -> np.ndarray:
    """[1, 3, H, W] in [-1, 1] -> H x W x 3 uint8 RGB (clamped, rounded)."""
    return ((pixels.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte()[0].permute(1, 2, 0).cpu().numpy()


@contextlib.contextmanager
def seeded_construction(seed: int, device: torch.device | str = "cpu"):
    """Build random-weight modules reproducibly without touching the caller's RNG.

    diffusers and torch initialise a module's weights from the global generator and take no generator argument,
    so this is the one place the library seeds it: inside a fork of the RNG state, restored on exit.
    """
    device = torch.device(device)
    forked = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=forked):
        torch.default_generator.manual_seed(seed)
        if device.type == "cuda":
            torch.cuda.manual_seed(seed)
        yield


def working_size(height: int, width: int, native: int, multiple: int, max_pixels: int | None = None) -> tuple[int, int]:
    """The (height, width) a model edits a ``height`` x ``width`` image at: the longer side scaled to ``native``, the
    side the model was trained at (SD 1.x 512, SD 2.x-v 768, SDXL 1024, the bundled model 64), the aspect ratio
    kept, each side rounded to a multiple of ``multiple`` (at least one). The cap: at most ``max_pixels`` working
    pixels, by default ``native`` squared (what the model was trained on, and the memory an edit is sized for):
    a smaller cap scales the image down further, and where rounding up would pass it the sides are rounded down."""
    cap = native * native if max_pixels is None else max_pixels
    scale = min(native / max(height, width), math.sqrt(cap / (height * width)))
    sides = [max(multiple, round(side * scale / multiple) * multiple) for side in (height, width)]
    if sides[0] * sides[1] > cap:
        sides = [max(multiple, math.floor(side * scale / multiple) * multiple) for side in (height, width)]
    return sides[0], sides[1]


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    """fp16 on CUDA (as every SD drag method runs), fp32 elsewhere: CPU fp16 is slow and imprecise."""
    return torch.float16 if device.type == "cuda" else torch.float32


class Backbone(ABC):
    """One diffusion model seen through the operations the drag editor needs."""

    name: str  # preset key: "stable-diffusion", "stable-diffusion-xl" or "bundled" (models.resolve.KINDS)
    unet: torch.nn.Module
    scheduler_config: dict
    device: torch.device
    dtype: torch.dtype
    size_multiple: int  # image sides must be multiples of this (UNet down-sampling x VAE factor)
    native_size: int | None = None  # the image side the model was trained at (None: unknown)
    supports_lora: bool = False
    autocast_bf16: bool = False  # bf16 autocast of the UNet on CPU (faster where the CPU has bf16 units)

    def working_size(self, height: int, width: int) -> tuple[int, int]:
        """The size this model edits a ``height`` x ``width`` image at (:func:`working_size`); a model of unknown
        native side keeps the image's size, rounded to ``size_multiple``."""
        if self.native_size is None:
            multiple = self.size_multiple
            return max(multiple, round(height / multiple) * multiple), max(multiple, round(width / multiple) * multiple)
        return working_size(height, width, self.native_size, self.size_multiple)

    # ---------------------------------------------------------------- images and latents
    @abstractmethod
    def encode_image(self, image: np.ndarray) -> torch.Tensor:
        """H x W x 3 uint8 RGB -> latent [1, C, h, w] (float32, on the model's device)."""

    @abstractmethod
    def decode_latent(self, latent: torch.Tensor) -> np.ndarray:
        """Latent [1, C, h, w] -> H x W x 3 uint8 RGB."""

    @abstractmethod
    def encode_prompt(self, prompt: str) -> Any:
        """Conditioning for ``predict`` (None for an unconditional model)."""

    # ---------------------------------------------------------------- UNet
    @abstractmethod
    def _unet_call(self, latent: torch.Tensor, timestep: torch.Tensor, conditioning: Any) -> torch.Tensor:
        """Run the UNet on a batch and return its raw output."""

    def _autocast(self):
        if self.autocast_bf16 and self.device.type == "cpu":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def predict(self, latent: torch.Tensor, timestep, conditioning: Any) -> torch.Tensor:
        """The UNet's output (in the scheduler's prediction type) for a batch of latents, as float32."""
        timestep = torch.as_tensor(timestep, device=self.device)
        with self._autocast():
            out = self._unet_call(latent.to(self.dtype), timestep, conditioning)
        return out.float()

    def features(
        self,
        latent: torch.Tensor,
        timestep,
        conditioning: Any,
        blocks: Sequence[str],
        size: tuple[int, int] | None,
    ) -> torch.Tensor | list[torch.Tensor]:
        """Outputs of the named UNet blocks, resized to ``size`` (bilinear) and concatenated on channels; with
        ``size=None``, the list of outputs at their native resolutions (no resize: cheaper, and the finest
        block keeps its detail).

        Forward hooks on the named modules collect the outputs; the forward is stopped as soon as all of them
        have run, so the rest of the UNet is not computed. Hooks are always removed.
        """
        modules = dict(self.unet.named_modules())
        missing = [b for b in blocks if b not in modules]
        if missing:
            raise ConfigError(f"feature_blocks: the UNet has no module named {missing[0]!r}; e.g. 'up_blocks.1'")
        wanted = set(blocks)
        collected: dict[str, torch.Tensor] = {}

        def hook_for(name: str):
            def hook(_module, _inputs, output):
                collected[name] = output[0] if isinstance(output, tuple) else output
                if wanted <= collected.keys():
                    raise _StopForward

            return hook

        handles = [modules[name].register_forward_hook(hook_for(name)) for name in blocks]
        try:
            with self._autocast():
                self._unet_call(latent.to(self.dtype), torch.as_tensor(timestep, device=self.device), conditioning)
        except _StopForward:
            pass
        finally:
            for handle in handles:
                handle.remove()
        if size is None:
            return [collected[b].float() for b in blocks]
        maps = [F.interpolate(collected[b].float(), size=size, mode="bilinear", align_corners=False) for b in blocks]
        return torch.cat(maps, dim=1)

    # ---------------------------------------------------------------- optional: identity-preserving LoRA
    def finetune_lora(self, image: np.ndarray, prompt: str, config, progress=None, *, seed: int = 0) -> int:
        """Fit a LoRA to the image, its noise drawn from a generator seeded with ``seed``; returns the number of
        UNet forward+backward passes spent (0 if cached)."""
        raise NotImplementedError(f"{self.name} does not support LoRA fine-tuning")

    def disable_lora(self) -> None:  # noqa: B027 - optional hook, a no-op for backbones without LoRA
        """Run without any LoRA (no-op when none is loaded)."""
