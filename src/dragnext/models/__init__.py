"""Backbone adapters: the only code that knows diffusers model classes."""

from __future__ import annotations

from pathlib import Path

from ..config import local_model_folder, preset_name_for_model, read_model_config
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
    if model == "bundled" and not (BUNDLED_DIR / "unet" / "config.json").is_file():
        raise ModelLoadError(f"the bundled model is missing from {BUNDLED_DIR}; reinstall dragnext")
    folder = local_model_folder(model)
    if folder is not None:
        _check_configs(folder)
    if preset_name_for_model(model) == "bundled":
        return PixelBackbone.from_pretrained(folder, **kwargs)
    return StableDiffusionBackbone.from_pretrained(model, **kwargs)


# The JSON configs of a diffusers folder that the loaders read, where present (a missing one is theirs to report).
CONFIG_FILES = ("unet/config.json", "vae/config.json", "text_encoder/config.json", "tokenizer/tokenizer_config.json",
                "scheduler/scheduler_config.json")


def _check_configs(folder: Path) -> None:
    """Each config a loader will read must be a JSON object. diffusers takes a malformed one for something else:
    ``[]`` ends in an AttributeError, a JSON string is read as a hub id and fetched."""
    for name in CONFIG_FILES:
        path = folder / name
        if not path.exists():
            continue
        try:
            read_model_config(path)
        except (OSError, ValueError) as error:
            raise ModelLoadError(f"could not load the model from '{folder}': {error}") from None
