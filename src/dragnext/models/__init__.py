"""Backbone adapters: the only code that knows diffusers model classes."""

from __future__ import annotations

import json
from pathlib import Path

from .base import Backbone, ModelLoadError
from .pixel import BUNDLED_DIR, PixelBackbone
from .stable_diffusion import DEFAULT_MODEL_ID, StableDiffusionBackbone

__all__ = [
    "Backbone", "ModelLoadError", "PixelBackbone", "StableDiffusionBackbone", "load_backbone", "BUNDLED_DIR",
    "DEFAULT_MODEL_ID",
]


def _is_pixel_folder(folder: Path) -> bool:
    config = folder / "unet" / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("_class_name") == "UNet2DModel"
    except (OSError, json.JSONDecodeError):
        return False


def load_backbone(model: str = "bundled", *, device=None, dtype=None, autocast_bf16: bool = False) -> Backbone:
    """Resolve ``model`` — ``"bundled"``, a local folder, or a hub id of Stable Diffusion 1.x/2.x — and load it."""
    kwargs = {"device": device, "dtype": dtype, "autocast_bf16": autocast_bf16}
    if model == "bundled":
        if not (BUNDLED_DIR / "unet" / "config.json").is_file():
            raise ModelLoadError(f"the bundled model is missing from {BUNDLED_DIR}; reinstall dragnext")
        return PixelBackbone.from_pretrained(BUNDLED_DIR, **kwargs)
    folder = Path(model).expanduser()
    if folder.is_dir() and _is_pixel_folder(folder):
        return PixelBackbone.from_pretrained(folder, **kwargs)
    return StableDiffusionBackbone.from_pretrained(model, **kwargs)
