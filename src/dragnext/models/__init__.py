"""Backbone adapters: the only code that knows diffusers model classes and folder layouts.

``resolve_model`` (``resolve.py``, no torch) says what a ``--model`` value names; ``load_backbone`` loads it. The
backbone classes import torch, so they are imported when first asked for (``dragnext.models.StableDiffusionBackbone``
works as before), and ``from dragnext.models import resolve_model`` stays cheap for the command line.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..config import BUNDLED_DIR, DEFAULT_MODEL_ID
from .resolve import (
    BUNDLED,
    STABLE_DIFFUSION_XL,
    ModelLoadError,
    ResolvedModel,
    check_model_configs,
    resolve_model,
)

__all__ = [
    "Backbone", "ModelLoadError", "PixelBackbone", "StableDiffusionBackbone", "StableDiffusionXLBackbone",
    "load_backbone", "resolve_model", "ResolvedModel", "BUNDLED_DIR", "DEFAULT_MODEL_ID",
]

_LAZY = {"Backbone": ".base", "PixelBackbone": ".pixel", "StableDiffusionBackbone": ".stable_diffusion",
         "StableDiffusionXLBackbone": ".sdxl"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_backbone(model: str | ResolvedModel = "bundled", *, device=None, dtype=None, autocast_bf16: bool = False):
    """Load what ``model`` names — ``"bundled"``, a local folder, or a hub id of Stable Diffusion 1.x/2.x or XL —
    or what :func:`resolve_model` already resolved (the CLI resolves once, to choose the settings, and passes it)."""
    resolved = resolve_model(model)
    kwargs = {"device": device, "dtype": dtype, "autocast_bf16": autocast_bf16}
    if resolved.spec == "bundled" and not (BUNDLED_DIR / "unet" / "config.json").is_file():
        raise ModelLoadError(f"the bundled model is missing from {BUNDLED_DIR}; reinstall dragnext")
    if resolved.folder is not None:
        check_model_configs(resolved.folder)
    if resolved.kind == BUNDLED:
        from .pixel import PixelBackbone

        return PixelBackbone.from_pretrained(resolved.folder, **kwargs)
    if resolved.kind == STABLE_DIFFUSION_XL:
        from .sdxl import StableDiffusionXLBackbone

        return StableDiffusionXLBackbone.from_pretrained(resolved.spec, **kwargs)
    from .stable_diffusion import StableDiffusionBackbone

    return StableDiffusionBackbone.from_pretrained(resolved.spec, **kwargs)
