"""Shared fixtures: one tiny random Stable Diffusion model, built offline once per test session.

Tests that run whole edits, a browser or a whole dataset are marked ``slow``. The README's command runs
everything; ``pytest -m "not slow"`` is the quick suite for local work."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class TinySD:
    folder: Path  # a diffusers folder (unet/ vae/ text_encoder/ tokenizer/ scheduler/)
    backbone: object  # dragnext.models.StableDiffusionBackbone loaded from it (shared: tests may add a LoRA)
    cache_dir: Path  # DRAGNEXT_CACHE_DIR for the session


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory):
    """The tiny SD folder and one backbone loaded from it; DRAGNEXT_CACHE_DIR points at a session tmp folder.

    Torch runs on one thread while the session uses the model: the components are tiny, and several threads
    spin-waiting on a busy machine make an edit ten times slower than one thread does.
    """
    import torch
    from tiny_sd import build_tiny_sd

    from dragnext.models import load_backbone

    root = tmp_path_factory.mktemp("tiny_sd")
    cache_dir = root / "cache"
    previous_cache = os.environ.get("DRAGNEXT_CACHE_DIR")
    previous_threads = torch.get_num_threads()
    os.environ["DRAGNEXT_CACHE_DIR"] = str(cache_dir)
    torch.set_num_threads(1)
    try:
        folder = build_tiny_sd(root / "model")
        yield TinySD(folder=folder, backbone=load_backbone(str(folder), device="cpu"), cache_dir=cache_dir)
    finally:
        torch.set_num_threads(previous_threads)
        if previous_cache is None:
            os.environ.pop("DRAGNEXT_CACHE_DIR", None)
        else:
            os.environ["DRAGNEXT_CACHE_DIR"] = previous_cache


@pytest.fixture(scope="session")
def tiny_sd2v(tiny_sd, tmp_path_factory: pytest.TempPathFactory) -> TinySD:
    """A tiny SD-2.x-v folder (OpenCLIP-style UNet, v-prediction) and a backbone from it; the tiny_sd session's
    cache folder and threads."""
    from tiny_sd import build_tiny_sd2v

    from dragnext.models import load_backbone

    folder = build_tiny_sd2v(tmp_path_factory.mktemp("tiny_sd2v") / "model")
    return TinySD(folder=folder, backbone=load_backbone(str(folder), device="cpu"), cache_dir=tiny_sd.cache_dir)


@pytest.fixture(scope="session")
def tiny_sdxl(tiny_sd, tmp_path_factory: pytest.TempPathFactory) -> TinySD:
    """A tiny SDXL pipeline folder (SDXL's UNet layout, two text encoders) and a backbone from it."""
    from tiny_sd import build_tiny_sdxl

    from dragnext.models import load_backbone

    folder = build_tiny_sdxl(tmp_path_factory.mktemp("tiny_sdxl") / "model")
    return TinySD(folder=folder, backbone=load_backbone(str(folder), device="cpu"), cache_dir=tiny_sd.cache_dir)


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    """An empty output folder."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder
