"""Tiny, randomly initialised Stable Diffusion folders built offline (nothing is downloaded), through the one
factory of random-weight models (``dragnext.models.factory``), which also builds the SD-size ones."""

from __future__ import annotations

from pathlib import Path

from dragnext.models.factory import build_model_folder, write_clip_tokenizer

__all__ = ["build_tiny_sd", "build_tiny_sd2v", "build_tiny_sdxl", "write_clip_tokenizer"]


def build_tiny_sd(folder: Path, seed: int = 0) -> Path:
    """A tiny SD-1.x-layout model (unet, vae, text_encoder, tokenizer, scheduler): 2 levels, size multiple 4,
    4 self-attention layers, native side 32 px."""
    return build_model_folder("tiny-sd1", folder, seed)


def build_tiny_sd2v(folder: Path, seed: int = 0) -> Path:
    """A tiny SD-2.x-v model: OpenCLIP-style (linear projections, per-level head counts, a 48-wide text encoder),
    v-prediction scheduler, native side 48 px (1.5 x the tiny SD 1.x's, as 768 is of 512)."""
    return build_model_folder("tiny-sd2-v", folder, seed)


def build_tiny_sdxl(folder: Path, seed: int = 0) -> Path:
    """A tiny SDXL pipeline folder: SDXL's UNet layout (3 levels, 70 self-attention layers, text_time added
    conditioning), two text encoders, an Euler scheduler config; native side 64 px (2 x, as 1024 is of 512)."""
    return build_model_folder("tiny-sdxl", folder, seed)
