"""Backbone adapters: the only code that knows diffusers model classes."""

from __future__ import annotations

from pathlib import Path

from ..config import preset_name_for_model
from .base import Backbone, ModelLoadError
from .pixel import BUNDLED_DIR, PixelBackbone
from .stable_diffusion import DEFAULT_MODEL_ID, StableDiffusionBackbone

__all__ = [
    "Backbone", "ModelLoadError", "PixelBackbone", "StableDiffusionBackbone", "load_backbone", "BUNDLED_DIR",
    "DEFAULT_MODEL_ID",
]


def load_backbone(model: str = "bundled", *, device=None, dtype=None, autocast_bf16: bool = False) -> Backbone:
    """Resolve ``model`` — ``"bundled"``, a local folder, or a hub id of Stable Diffusion 1.x/2.x — and load it."""
    kwargs = {"device": device, "dtype": dtype, "autocast_bf16": autocast_bf16}
    if model == "bundled":
        if not (BUNDLED_DIR / "unet" / "config.json").is_file():
            raise ModelLoadError(f"the bundled model is missing from {BUNDLED_DIR}; reinstall dragnext")
        return PixelBackbone.from_pretrained(BUNDLED_DIR, **kwargs)
    if preset_name_for_model(model) == "bundled":
        return PixelBackbone.from_pretrained(Path(model).expanduser(), **kwargs)
    return StableDiffusionBackbone.from_pretrained(model, **kwargs)
