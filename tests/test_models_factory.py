"""The factory of random-weight models (``models.factory``) and the cost benchmark built on it, SDXL included."""

from __future__ import annotations

import json

import pytest
import torch

from dragnext.bench.cost import BACKBONES, KINDS, cost_comparison, default_recipes, recipe_counts
from dragnext.cli import main
from dragnext.config import STABLE_DIFFUSION_XL
from dragnext.models.factory import ARCHITECTURES, build_unet_backbone
from dragnext.models.latent import XLConditioning


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models on one torch thread: on a busy machine several threads spin-wait and run ten times slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_every_architecture_names_a_known_backbone_kind():
    from dragnext.models.resolve import KINDS as BACKBONE_KINDS

    assert {"sd15", "sd2-v", "sdxl", "tiny", "tiny-sd1", "tiny-sd2-v", "tiny-sdxl"} <= set(ARCHITECTURES)
    assert all(arch.kind in BACKBONE_KINDS for arch in ARCHITECTURES.values())
    sdxl = ARCHITECTURES["sdxl"]
    # SDXL's added conditioning: pooled text (text_encoder_2's projection) + 6 time ids x addition_time_embed_dim
    assert sdxl.unet["projection_class_embeddings_input_dim"] == sdxl.text_2["projection_dim"] + 6 * 256
    assert sdxl.unet["cross_attention_dim"] == sdxl.text["hidden_size"] + sdxl.text_2["hidden_size"]
    tiny = ARCHITECTURES["tiny-sdxl"]
    assert tiny.unet["projection_class_embeddings_input_dim"] == tiny.text_2["projection_dim"] + 6 * 8


def test_a_unet_backbone_is_built_reproducibly_without_touching_the_global_rng():
    state = torch.random.get_rng_state()
    first, second = (build_unet_backbone("tiny-sdxl", device="cpu", seed=3) for _ in range(2))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(a, b) for a, b in zip(first.unet.parameters(), second.unet.parameters(), strict=True))
    conditioning = first.random_conditioning(torch.Generator().manual_seed(0))
    assert isinstance(conditioning, XLConditioning) and conditioning.pooled.shape == (1, 32)
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    maps = first.features(latent, 500, conditioning, STABLE_DIFFUSION_XL.feature_blocks, None)
    assert [m.shape[-1] for m in maps] == [4, 8]  # 1/2 and 1/1 of the latent side
    assert isinstance(build_unet_backbone("tiny", device="cpu").random_conditioning(torch.Generator()), torch.Tensor)


def test_the_sdxl_recipes_are_the_sdxl_presets_with_the_same_pass_counts():
    recipes = default_recipes("sdxl")
    assert recipes["v2"] == STABLE_DIFFUSION_XL
    assert recipe_counts(recipes) == recipe_counts(default_recipes("sd"))  # the presets differ in blocks, not passes
    assert BACKBONES["sdxl"].image_size == 1024 and BACKBONES["sdxl"].unet == "sdxl"


def test_cost_only_sdxl_on_a_tiny_sdxl_unet(tmp_path, capsys):
    """``dragnext bench --cost-only --backbone sdxl`` end to end, shrunk to the tiny SDXL layout (the real run:
    docs/benchmarks.md, "Cost at SDXL scale")."""
    status = main(["bench", "--cost-only", "--backbone", "sdxl", "--cost-unet", "tiny-sdxl", "--cost-size", "64",
                   "--cost-repeats", "1", "--device", "cpu", "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "time ratio to DragDiffusion: v2 " in captured.out and "tiny-sdxl UNet, 64 px" in captured.out
    report = json.loads((tmp_path / "cost.json").read_text())
    assert report["backbone"] == "sdxl" and report["unet"] == "tiny-sdxl"
    assert set(report["kinds"]) == set(KINDS) and all(kind["seconds"] > 0 for kind in report["kinds"].values())
    assert "stable-diffusion-xl presets" in (tmp_path / "cost.md").read_text()


def test_a_unet_of_the_other_backbone_is_refused():
    with pytest.raises(ValueError, match="not a UNet of --backbone sdxl"):
        cost_comparison("tiny", 64, 1, "cpu", backbone="sdxl")
    with pytest.raises(ValueError, match="not a UNet of --backbone sd"):
        cost_comparison("tiny-sdxl", 64, 1, "cpu", backbone="sd")
