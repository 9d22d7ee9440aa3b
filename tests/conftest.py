"""Shared fixtures: one tiny random Stable Diffusion model, built offline once per test session."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


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


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    """An empty output folder."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder
