"""SD 2.x-v and SDXL backbones on tiny random folders, and the one model resolution (``models.resolve``)."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from dragnext.cli import main
from dragnext.config import PRESETS, STABLE_DIFFUSION, STABLE_DIFFUSION_XL
from dragnext.models.resolve import (
    BUNDLED,
    ResolvedModel,
    native_resolution,
    resolve_model,
)
from dragnext.models.resolve import (
    STABLE_DIFFUSION_XL as XL,
)

SD = "stable-diffusion"
HEIGHT, WIDTH = 30, 42
# every backbone: 3 inverted steps, 2 optimised timesteps of at most 2 iterations, 1 LoRA step
FLAGS = ["--steps", "6", "--strength", "0.5", "--pbsi-timesteps", "2", "--iterations", "2", "--set", "lora_steps=1"]
SMALL_SD = ["--set", "feature_blocks=up_blocks.0,up_blocks.1", "--set", "mutual_attention_start_layer=2"]


def config_folder(folder: Path, files: dict[str, dict]) -> Path:
    """A folder of configs only (no weights): enough to resolve, never to load."""
    for name, document in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(json.dumps(document))
    return folder


# ------------------------------------------------------------------------------------------ resolution


@pytest.mark.parametrize(("files", "kind"), [
    ({"model_index.json": {"_class_name": "StableDiffusionXLPipeline"}, "unet/config.json": {}}, XL),
    ({"text_encoder_2/config.json": {}, "unet/config.json": {}}, XL),
    ({"unet/config.json": {"_class_name": "UNet2DConditionModel", "addition_embed_type": "text_time"}}, XL),
    ({"model_index.json": {"_class_name": "StableDiffusionPipeline"}, "unet/config.json": {}}, SD),
    ({"unet/config.json": {"_class_name": "UNet2DConditionModel", "use_linear_projection": True}}, SD),
    ({"unet/config.json": {"_class_name": "UNet2DModel"}}, BUNDLED),
    ({"model_index.json": {"_class_name": 5}, "unet/config.json": []}, SD),  # unreadable: loading will say why
])
def test_a_folder_resolves_to_its_kind_and_preset(tmp_path, files, kind):
    resolved = resolve_model(str(config_folder(tmp_path, files)))
    assert resolved == ResolvedModel(str(tmp_path), kind, kind, tmp_path)
    assert resolved.preset in PRESETS
    assert resolve_model(resolved) is resolved  # resolved once, passed on


@pytest.mark.parametrize(("hub_id", "kind"), [
    ("stabilityai/stable-diffusion-xl-base-1.0", XL), ("stabilityai/sdxl-turbo", XL), ("someone/juggernaut-xl", XL),
    ("stable-diffusion-v1-5/stable-diffusion-v1-5", SD), ("stabilityai/stable-diffusion-2-1", SD),
    ("someone/xlarge-model", SD),
])
def test_a_hub_id_resolves_by_its_name_when_the_cache_has_no_index(hub_id, kind, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert resolve_model(hub_id) == ResolvedModel(hub_id, kind, kind, None)
    assert resolve_model("bundled").kind == BUNDLED


def test_resolution_imports_no_torch(tmp_path):
    import subprocess
    import sys

    code = ("import sys\nfrom dragnext.models import resolve_model\n"
            f"assert resolve_model({str(tmp_path)!r}).kind == 'stable-diffusion'\n"
            "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_native_resolutions_of_the_published_architectures():
    from dragnext.models.factory import ARCHITECTURES

    def native(name):
        return native_resolution(dict(ARCHITECTURES[name].unet), dict(ARCHITECTURES[name].vae))

    assert (native("sd15"), native("sd2-v"), native("sdxl")) == (512, 768, 1024)
    assert (native("tiny-sd1"), native("tiny-sd2-v"), native("tiny-sdxl")) == (32, 48, 64)  # the same ratios
    assert native_resolution({"sample_size": 64}) == 64  # pixel space: the bundled model


@pytest.mark.parametrize(("size", "native", "multiple", "expected"), [
    ((512, 512), 512, 64, (512, 512)),
    ((30, 42), 512, 64, (384, 512)),  # upscaled: the longer side to native, 365.7 rounds to 384
    ((1080, 1920), 1024, 32, (576, 1024)),  # 576 = 1024 * 9 / 16
    ((1920, 1080), 768, 64, (768, 448)),  # 432 rounds to 448
    ((100, 4000), 1024, 32, (32, 1024)),  # a panorama: at least one multiple
    ((64, 64), 64, 8, (64, 64)),
])
def test_working_size_scales_the_longer_side_to_the_native_one(size, native, multiple, expected):
    from dragnext.models.base import working_size

    assert working_size(*size, native, multiple) == expected
    assert expected[0] * expected[1] <= native * native


def test_working_size_stays_under_its_pixel_cap():
    from dragnext.models.base import working_size

    # native 100 is no multiple of 32: the longer side rounds up to 96 or down; the cap keeps pixels <= 100^2
    height, width = working_size(100, 99, 100, 32)
    assert height * width <= 100 * 100 and height % 32 == width % 32 == 0
    assert working_size(300, 400, 512, 64, max_pixels=512 * 256) == (256, 384)  # 320 x 448 would be over


def test_each_backbone_knows_its_native_size(tiny_sd, tiny_sd2v, tiny_sdxl):
    from dragnext.models import load_backbone

    assert load_backbone("bundled", device="cpu").native_size == 64
    assert (tiny_sd.backbone.native_size, tiny_sd2v.backbone.native_size, tiny_sdxl.backbone.native_size) == (
        32, 48, 64)
    assert tiny_sdxl.backbone.working_size(HEIGHT, WIDTH) == (48, 64)
    assert tiny_sd2v.backbone.working_size(HEIGHT, WIDTH) == (36, 48)


# ------------------------------------------------------------------------------------------ SD 2.x-v


def test_v_prediction_reaches_every_scheduler_of_an_edit(tiny_sd2v, monkeypatch):
    """The editor builds DDIMScheduler (denoising, PBSI steps) and DDIMInverseScheduler (inversion) from
    ``scheduler_config``, the LoRA a DDPMScheduler; each must read the model's v-prediction."""
    from diffusers import DDIMInverseScheduler, DDIMScheduler, DDPMScheduler

    backbone = tiny_sd2v.backbone
    assert backbone.name == SD and backbone.scheduler_config["prediction_type"] == "v_prediction"
    for scheduler in (DDIMScheduler, DDIMInverseScheduler, DDPMScheduler):
        assert scheduler.from_config(backbone.scheduler_config).config.prediction_type == "v_prediction"
    assert backbone.scheduler_config["clip_sample"] is False
    # the LoRA's target is the velocity
    calls = []
    original = DDPMScheduler.get_velocity
    monkeypatch.setattr(DDPMScheduler, "get_velocity", lambda self, *a: calls.append(1) or original(self, *a))
    from dragnext.config import PAPER

    image = np.random.default_rng(70).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert backbone.finetune_lora(image, "", PAPER.override(lora_steps=2), seed=70) == 2
    assert len(calls) == 2


def test_a_v_prediction_inversion_inverts_with_velocities(tiny_sd2v):
    """One DDIM inversion step reads the UNet's output as v: the same output read as epsilon gives another latent."""
    from diffusers import DDIMInverseScheduler

    config = dict(tiny_sd2v.backbone.scheduler_config)
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    output = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    steps = []
    for prediction in ("v_prediction", "epsilon"):
        inverse = DDIMInverseScheduler.from_config({**config, "prediction_type": prediction})
        inverse.set_timesteps(6)
        t = inverse.timesteps[2]
        steps.append(inverse.step(output, t, latent).prev_sample)
    assert not torch.allclose(steps[0], steps[1])


def edit_counts(capsys, argv) -> tuple[int, int, int]:
    assert main(argv) == 0, capsys.readouterr().err
    line = capsys.readouterr().out
    found = re.search(r"UNet passes: (\d+) forward, (\d+) truncated, (\d+) backward", line)
    assert found, line
    return tuple(int(n) for n in found.groups())


def check_counts(counts: tuple[int, int, int]) -> None:
    """3 inverted steps, 3 denoising pairs, 1 LoRA step; the first optimised timestep starts at its own target
    (nothing spent, or, where the start moved anything outside the editable mask, its target and 2 iterations)."""
    forward, truncated, backward = counts
    assert forward == 3 + 2 * 3 + 1
    assert (truncated, backward) in ((1 + 2, 2 + 1), (2 + 4, 4 + 1))


@pytest.fixture(autouse=True)
def own_lora_cache(tmp_path, monkeypatch):
    """Pass counts include the LoRA's steps: a LoRA another test cached for the same picture would hide them."""
    monkeypatch.setenv("DRAGNEXT_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def instructions(tmp_path):
    from test_cli import write_instructions

    return write_instructions(tmp_path / "request")


def test_dragnext_edit_runs_an_sd2_v_folder_with_the_counts_of_sd1(tiny_sd, tiny_sd2v, instructions, out_dir,
                                                                    capsys):
    from PIL import Image

    counts = {}
    for name, folder in (("sd1", tiny_sd.folder), ("sd2-v", tiny_sd2v.folder)):
        output = out_dir / f"{name}.png"
        counts[name] = edit_counts(capsys, ["edit", str(instructions), "-o", str(output), "--model", str(folder),
                                            *FLAGS, *SMALL_SD])
        with Image.open(output) as picture:
            assert picture.size == (WIDTH, HEIGHT)
        check_counts(counts[name])
    assert counts["sd1"][0] == counts["sd2-v"][0]


# ------------------------------------------------------------------------------------------ SDXL


def test_sdxl_prompt_embeddings_are_both_encoders_penultimate_states_and_the_pooled_projection(tiny_sdxl):
    backbone = tiny_sdxl.backbone
    conditioning = backbone.encode_prompt("a photo of a cat")
    assert conditioning.prompt_embeds.shape == (1, 77, 32 + 32) == (1, 77, backbone.unet.config.cross_attention_dim)
    assert conditioning.pooled.shape == (1, 32)
    tokens = backbone.tokenizer("a photo of a cat", padding="max_length", max_length=77, truncation=True,
                                return_tensors="pt").input_ids
    with torch.no_grad():
        first = backbone.text_encoder(tokens, output_hidden_states=True).hidden_states[-2]
        second = backbone.text_encoder_2(tokens, output_hidden_states=True)
    assert torch.equal(conditioning.prompt_embeds[..., :32], first)
    assert torch.equal(conditioning.prompt_embeds[..., 32:], second.hidden_states[-2])
    assert torch.equal(conditioning.pooled, second.text_embeds)


def test_sdxl_unet_calls_expand_the_conditioning_and_pass_the_time_ids(tiny_sdxl, monkeypatch):
    backbone = tiny_sdxl.backbone
    conditioning = backbone.encode_prompt("")
    seen = {}
    forward = backbone.unet.forward

    def spy(sample, timestep, encoder_hidden_states=None, added_cond_kwargs=None, **kwargs):
        seen.update(context=encoder_hidden_states.shape, **added_cond_kwargs)
        return forward(sample, timestep, encoder_hidden_states=encoder_hidden_states,
                       added_cond_kwargs=added_cond_kwargs, **kwargs)

    monkeypatch.setattr(backbone.unet, "forward", spy)
    latents = torch.randn(2, 4, 6, 8, generator=torch.Generator().manual_seed(0))
    both = backbone.predict(latents, 400, conditioning)
    assert seen["context"] == (2, 77, 64) and seen["text_embeds"].shape == (2, 32)
    # (original h, w, crop top, left, target h, w) in pixels: the latent's size times the VAE's factor (2)
    assert seen["time_ids"].tolist() == [[12, 16, 0, 0, 12, 16]] * 2
    one = backbone.predict(latents[1:], 400, conditioning)
    assert torch.allclose(both[1:], one, atol=1e-5)


def test_the_sdxl_preset_names_parts_its_unet_has(tiny_sdxl):
    """The preset's feature blocks and its mutual-attention layer exist in SDXL's layout (70 self-attentions, as
    MasaCtrl counts them), checked on the tiny folder, which keeps the layout, and on SDXL's own config."""
    from diffusers import UNet2DConditionModel

    from dragnext.attention import self_attention_layers
    from dragnext.editor import check_config
    from dragnext.models.factory import SDXL_UNET

    assert PRESETS[XL]["default"] is STABLE_DIFFUSION_XL
    for config in PRESETS[XL].values():
        check_config(tiny_sdxl.backbone, config)
    assert len(self_attention_layers(tiny_sdxl.backbone.unet)) == 70
    with torch.device("meta"):
        real = UNet2DConditionModel(**SDXL_UNET)
    names = dict(real.named_modules())
    assert all(block in names for block in STABLE_DIFFUSION_XL.feature_blocks) and "up_blocks.3" not in names
    assert len(self_attention_layers(real)) == 70 >= STABLE_DIFFUSION_XL.mutual_attention_start_layer


def test_sdxl_lora_sits_on_the_attention_projections_and_trains(tiny_sdxl):
    from peft.tuners.tuners_utils import BaseTunerLayer

    from dragnext.config import PAPER

    backbone = tiny_sdxl.backbone
    image = np.random.default_rng(80).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert backbone.finetune_lora(image, "a cat", PAPER.override(lora_steps=2), seed=80) == 2
    layers = [name for name, module in backbone.unet.named_modules() if isinstance(module, BaseTunerLayer)]
    assert layers and {name.rsplit(".", 1)[-1] for name in layers} <= {"to_q", "to_k", "to_v", "0"}
    assert all(".attn1." in name or ".attn2." in name for name in layers)


def test_the_cli_chooses_the_preset_from_the_folder(tiny_sd, tiny_sd2v, tiny_sdxl):
    from dragnext.cli.common import config_from_args

    def chosen(folder, settings):
        args = argparse.Namespace(model=str(folder), preset="default", set=settings, steps=None, strength=None,
                                  pbsi_timesteps=None, iterations=None, lr=None, no_lora=False)
        return config_from_args(args), args.resolved_model

    # the tiny SD folders have fewer blocks and layers than SD's preset names (checked from their configs)
    small = STABLE_DIFFUSION.override(feature_blocks=("up_blocks.0", "up_blocks.1"), mutual_attention_start_layer=2)
    small_flags = [SMALL_SD[1], SMALL_SD[3]]
    for fixture, settings, expected, kind in ((tiny_sd, small_flags, small, SD), (tiny_sd2v, small_flags, small, SD),
                                              (tiny_sdxl, None, STABLE_DIFFUSION_XL, XL)):
        config, resolved = chosen(fixture.folder, settings)
        assert config == expected and resolved.kind == kind


def test_dragnext_edit_runs_an_sdxl_folder_with_its_preset(tiny_sdxl, instructions, out_dir, capsys):
    from PIL import Image

    output = out_dir / "edited.png"
    counts = edit_counts(capsys, ["edit", str(instructions), "-o", str(output), "--model", str(tiny_sdxl.folder),
                                  *FLAGS])  # the SDXL preset's own feature blocks and attention layer
    check_counts(counts)
    with Image.open(output) as picture:
        assert picture.size == (WIDTH, HEIGHT)


@pytest.mark.slow
@pytest.mark.parametrize(("fixture", "kind", "preset_config", "small"), [
    ("tiny_sdxl", XL, STABLE_DIFFUSION_XL, {}),
    # the tiny SD folders have two up blocks and fewer attention layers than SD's preset names (as SMALL_SD)
    ("tiny_sd2v", "stable-diffusion", STABLE_DIFFUSION,
     {"feature_blocks": ("up_blocks.0", "up_blocks.1"), "mutual_attention_start_layer": 2}),
])
def test_the_ui_runner_edits_with_an_sdxl_or_sd2_v_folder(fixture, kind, preset_config, small, request, tmp_path):
    """The page loads models as the CLI does (``load_model`` -> ``load_backbone``); one edit through its runner."""
    from dragnext.cli.common import load_model
    from dragnext.ui.runner import EditRunner
    from dragnext.ui.session import Session
    from dragnext.ui.settings import Settings

    folder = request.getfixturevalue(fixture).folder
    base = preset_config.override(num_steps=6, strength=0.5, iterations=2, lora_steps=1, **small)
    runner = EditRunner(load_model(str(folder), "cpu", False), base)
    assert runner.backbone.name == kind and preset_of(runner) == preset_config
    session = Session()
    session.load_image(np.random.default_rng(22).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8))
    session.points = [(10.0, 10.0), (16.0, 12.0)]
    region = np.zeros((HEIGHT, WIDTH), dtype=bool)
    region[5:15, 5:15] = True
    session.add_operation("translate", region)
    outcome = runner.run(session, None, Settings.from_config(base, seed=3), "a photo", tmp_path)
    assert outcome.ok, outcome.message
    assert outcome.result.image.shape == (HEIGHT, WIDTH, 3)


def preset_of(runner):
    from dragnext.config import preset

    return preset(runner.backbone.name)


def test_the_sdxl_vae_runs_in_fp32_when_the_unet_runs_in_fp16(tiny_sd, tiny_sdxl):
    """SDXL's VAE overflows in fp16 (``force_upcast``, as the SDXL pipeline handles it); SD 1.x's VAE keeps the
    model's dtype, as before."""
    from dragnext.models import load_backbone

    sdxl = load_backbone(str(tiny_sdxl.folder), device="cpu", dtype=torch.float16)
    assert sdxl.dtype == torch.float16 and sdxl.vae_dtype == torch.float32
    assert next(sdxl.vae.parameters()).dtype == torch.float32 and next(sdxl.unet.parameters()).dtype == torch.float16
    sd = load_backbone(str(tiny_sd.folder), device="cpu", dtype=torch.float16)
    assert sd.vae_dtype == torch.float16


# ------------------------------------------------------------------------------------------ outlines


@pytest.mark.parametrize("name", ["SD15_UNET", "SD2V_UNET", "SDXL_UNET", "TINY_UNET", "TINY_SD1_UNET",
                                  "TINY_SD2V_UNET", "TINY_SDXL_UNET", "bundled"])
def test_a_unets_outline_from_its_config_matches_the_unet_diffusers_builds(name):
    """Built on the meta device (no memory, no weights): the blocks and self-attention layers the CLI reads from
    a config before loading are the modules the editor finds after."""
    from diffusers import UNet2DConditionModel, UNet2DModel

    from dragnext.attention import self_attention_layers
    from dragnext.config import BUNDLED_DIR
    from dragnext.models import factory
    from dragnext.models.resolve import read_model_config, unet_outline

    if name == "bundled":
        config = read_model_config(BUNDLED_DIR / "unet" / "config.json")
        model_class = UNet2DModel
    else:
        config, model_class = {**getattr(factory, name), "_class_name": "UNet2DConditionModel"}, UNet2DConditionModel
    outline = unet_outline(config)
    with torch.device("meta"):
        unet = model_class(**{k: v for k, v in config.items() if not k.startswith("_")})
    modules = dict(unet.named_modules())
    assert outline.self_attention_layers == len(self_attention_layers(unet))
    top = {n for n in modules
           if n == "mid_block" or (n.count(".") == 1 and n.startswith(("up_blocks.", "down_blocks.")))}
    assert set(outline.blocks) == top


def test_the_cli_refuses_feature_blocks_and_layers_a_local_model_lacks_before_loading_it(tiny_sdxl, instructions,
                                                                                          out_dir, capsys,
                                                                                          monkeypatch):
    from dragnext import models

    monkeypatch.setattr(models, "load_backbone", lambda *a, **k: pytest.fail("the model was loaded"))
    output = out_dir / "x.png"
    for setting, message in (("feature_blocks=no.such.block", "feature_blocks: the UNet has no block 'no.such.block'"),
                             ("feature_blocks=up_blocks.3", "it has up_blocks.0, up_blocks.1, up_blocks.2"),
                             ("mutual_attention_start_layer=71", "past the UNet's 70 self-attention layers")):
        status = main(["edit", str(instructions), "-o", str(output), "--model", str(tiny_sdxl.folder), "--quiet",
                       "--set", setting])
        err = capsys.readouterr().err
        assert status == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not output.exists()


@pytest.mark.parametrize(("layout", "message"), [
    ({}, "it has no unet/config.json"),
    ({"unet/config.json": '{"a": NaN}', "scheduler/scheduler_config.json": "{}"}, "is not valid JSON"),
    ({"unet/config.json": "{}"}, "it has no scheduler/scheduler_config.json"),
])
def test_a_local_model_folder_without_its_configs_is_refused_in_one_line(layout, message, instructions, out_dir,
                                                                       tmp_path, capsys):
    folder = tmp_path / "model"
    folder.mkdir()
    for name, text in layout.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    status = main(["edit", str(instructions), "-o", str(out_dir / "x.png"), "--model", str(folder), "--quiet"])
    err = capsys.readouterr().err
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1, err
