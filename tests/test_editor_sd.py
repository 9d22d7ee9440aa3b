"""The editing pipeline on a tiny random Stable Diffusion model (offline, CPU, a second or so per edit)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dragnext import config as config_module
from dragnext.attention import MutualSelfAttentionProcessor
from dragnext.config import PAPER
from dragnext.editor import DragEditor, PassCounts, TimestepContext
from dragnext.instructions import DragRequest, make_operation
from dragnext.models import load_backbone

SMALL = PAPER.override(num_steps=6, strength=0.5, pbsi_timesteps=2, iterations=3, lora_steps=2,
                       feature_blocks=("up_blocks.0", "up_blocks.1"), mutual_attention_start_layer=2)
PHASES = {"start", "encode", "lora", "inversion", "pbsi", "denoise", "decode"}


def random_image(height: int, width: int, seed: int) -> np.ndarray:
    """Each test that trains a LoRA uses its own seed, so the shared backbone's LoRA cache never hits by accident."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def box(height: int, width: int, rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    mask[rows, cols] = True
    return mask


def two_operation_request(seed: int) -> DragRequest:
    """30 x 42 (not a multiple of 4): a translate and a rotate, and an editable mask that leaves a frame fixed."""
    height, width = 30, 42
    operations = (
        make_operation("translate", box(height, width, slice(5, 12), slice(5, 12)), (8, 8), (14, 10)),
        make_operation("rotate", box(height, width, slice(15, 25), slice(24, 34)), (33, 20), (29, 25),
                       center=(29, 20)),
    )
    editable = box(height, width, slice(2, 28), slice(2, 37))
    return DragRequest(image=random_image(height, width, seed), operations=operations, editable_mask=editable)


def square_request(seed: int = 100) -> DragRequest:
    """32 x 32, already a multiple of the working size: for calling ``_optimise`` directly."""
    region = box(32, 32, slice(4, 14), slice(4, 14))
    return DragRequest(image=random_image(32, 32, seed), operations=(make_operation("translate", region, (8, 8),
                                                                                   (12, 10)),))


def processor_snapshot(unet) -> dict[str, object]:
    return dict(unet.attn_processors)


def lora_layers(unet) -> list:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [module for module in unet.modules() if isinstance(module, BaseTunerLayer)]


# ------------------------------------------------------------------------------------------ one full edit


@pytest.fixture(scope="module")
def full_edit(tiny_sd):
    backbone = tiny_sd.backbone
    request = two_operation_request(seed=1)
    before = processor_snapshot(backbone.unet)
    phases: list[str] = []
    result = DragEditor(backbone, SMALL)(request, seed=0, progress=lambda phase, done, total: phases.append(phase))
    return request, result, before, phases


def test_full_edit_returns_an_image_of_the_input_size_that_keeps_pixels_outside_the_mask(full_edit):
    request, result, _, _ = full_edit
    assert result.image.dtype == np.uint8
    assert result.image.shape == request.image.shape == (30, 42, 3)
    outside = ~request.editable_mask
    assert np.array_equal(result.image[outside], request.image[outside])
    # the model redrew the inside (a random tiny VAE cannot reproduce random pixels)
    assert not np.array_equal(result.image[request.editable_mask], request.image[request.editable_mask])
    assert np.array_equal(result.editable_mask, request.editable_mask)


def test_full_edit_ran_at_the_models_native_size_keeping_the_aspect_ratio(full_edit, tiny_sd):
    """30 x 42 on a model of native side 32 and multiple 4: the longer side scaled to 32, the shorter with it."""
    _, result, _, _ = full_edit
    backbone = tiny_sd.backbone
    assert (backbone.native_size, backbone.size_multiple) == (32, 4)
    assert result.working_size == backbone.working_size(30, 42) == (24, 32)
    assert result.image.shape[:2] == (30, 42)


def test_full_edit_result_carries_config_timings_and_loss_history(full_edit):
    _, result, _, phases = full_edit
    assert result.config is SMALL
    assert set(result.timings) == PHASES
    assert all(seconds >= 0 for seconds in result.timings.values())
    assert result.seconds == pytest.approx(sum(result.timings.values()))
    assert len(result.loss_history) == SMALL.pbsi_timesteps
    assert all(len(history) == SMALL.iterations for history in result.loss_history)
    assert all(np.isfinite(loss) and loss > 0 for history in result.loss_history for loss in history)
    assert set(phases) == {"lora", "inversion", "pbsi", "denoise"}


def test_full_edit_pass_counts_follow_the_config(full_edit):
    _, result, _, _ = full_edit
    steps = round(SMALL.num_steps * SMALL.strength)
    assert steps == SMALL.inversion_steps == 3
    # LoRA: one forward and one backward per step. Inversion: one forward per step. Denoising: every inverted
    # timestep is one DDIM step on the batch [reference, edited] = two forwards (mutual attention is on).
    assert result.passes.forward == SMALL.lora_steps + steps + 2 * steps
    # PBSI: per timestep one truncated forward for the reference features plus one per iteration
    assert result.passes.truncated_forward == SMALL.pbsi_timesteps * (SMALL.iterations + 1)
    assert result.passes.backward == SMALL.pbsi_timesteps * SMALL.iterations + SMALL.lora_steps


def test_attention_processors_are_restored_after_an_edit(full_edit, tiny_sd):
    _, _, before, _ = full_edit
    after = processor_snapshot(tiny_sd.backbone.unet)
    assert after.keys() == before.keys()
    assert all(after[name] is before[name] for name in before)
    assert not any(isinstance(p, MutualSelfAttentionProcessor) for p in after.values())


# ------------------------------------------------------------------------------------------ PBSI internals


@pytest.fixture(scope="module")
def pbsi_inputs(tiny_sd):
    """A 32 x 32 request, a noisy latent of it at a mid timestep, and the prompt conditioning."""
    backbone = tiny_sd.backbone
    request = square_request()
    latent = backbone.encode_image(request.image)
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(0))
    return request, latent + 0.5 * noise, torch.tensor(501), backbone.encode_prompt("")


def test_gradients_reach_the_latent_through_the_unet_features(tiny_sd, pbsi_inputs):
    _, latent, t, conditioning = pbsi_inputs
    z = latent.clone().requires_grad_(True)
    features = tiny_sd.backbone.features(z, t, conditioning, SMALL.feature_blocks, (16, 16))
    assert features.shape == (1, 64 + 32, 16, 16)  # up_blocks.0 and up_blocks.1 of the tiny UNet
    features.square().mean().backward()
    assert z.grad is not None
    assert torch.isfinite(z.grad).all()
    assert z.grad.abs().sum() > 0


def test_features_of_the_mid_block_and_an_up_block(tiny_sd, pbsi_inputs):
    _, latent, t, conditioning = pbsi_inputs
    features = tiny_sd.backbone.features(latent, t, conditioning, ("mid_block", "up_blocks.0"), (16, 16))
    assert features.shape == (1, 64 + 64, 16, 16)


def test_a_feature_block_the_unet_lacks_is_a_config_error(tiny_sd):
    from dragnext.config import ConfigError

    with pytest.raises(ConfigError, match="feature_blocks"):
        DragEditor(tiny_sd.backbone, SMALL.override(feature_blocks=("up_blocks.9",)))(square_request())
    with pytest.raises(ConfigError, match="mutual_attention_start_layer"):
        DragEditor(tiny_sd.backbone, SMALL.override(mutual_attention_start_layer=99))(square_request())


def step_at(request, latent, t, conditioning, mask, config, passes) -> TimestepContext:
    """The first optimised timestep, with the latent as its own unedited reference."""
    return TimestepContext(t, 0, latent, conditioning, request, mask, config, passes)


def test_pbsi_changes_the_latent(tiny_sd, pbsi_inputs):
    request, latent, t, conditioning = pbsi_inputs
    mask = torch.ones(1, 1, *latent.shape[-2:])
    passes = PassCounts()
    step = step_at(request, latent, t, conditioning, mask, SMALL, passes)
    out, history = DragEditor(tiny_sd.backbone, SMALL)._optimise(latent, step)
    assert out.shape == latent.shape
    assert not out.requires_grad
    assert (out - latent).abs().max() > 1e-3
    assert len(history) == SMALL.iterations
    assert passes == PassCounts(forward=0, truncated_forward=SMALL.iterations + 1, backward=SMALL.iterations)


def test_loss_falls_over_the_iterations_when_the_target_is_fixed(tiny_sd, pbsi_inputs):
    request, latent, t, conditioning = pbsi_inputs
    config = SMALL.override(progressive=False, iterations=8, learning_rate=2e-2)
    mask = torch.ones(1, 1, *latent.shape[-2:])
    step = step_at(request, latent, t, conditioning, mask, config, PassCounts())
    _, history = DragEditor(tiny_sd.backbone, config)._optimise(latent, step)
    assert len(history) == 8
    assert history[-1] < 0.95 * history[0]


@pytest.mark.parametrize("hard_mask", [True, False])
def test_hard_mask_keeps_the_latent_outside_the_editable_mask(tiny_sd, pbsi_inputs, hard_mask):
    request, latent, t, conditioning = pbsi_inputs
    config = SMALL.override(hard_mask=hard_mask)
    mask = torch.zeros(1, 1, *latent.shape[-2:])
    mask[..., : latent.shape[-1] // 2] = 1  # left half editable; the region moves inside it
    step = step_at(request, latent, t, conditioning, mask, config, PassCounts())
    out, _ = DragEditor(tiny_sd.backbone, config)._optimise(latent, step)
    inside, outside = mask.expand_as(latent) > 0, mask.expand_as(latent) == 0
    assert not torch.equal(out[inside], latent[inside])
    # with the hard mask nothing outside moves; without it, Adam moves it a little (the lambda term is soft)
    assert torch.equal(out[outside], latent[outside]) is hard_mask


# ------------------------------------------------------------------------------------------ robustness


def test_attention_processors_are_restored_when_the_edit_raises(tiny_sd):
    backbone = tiny_sd.backbone
    before = processor_snapshot(backbone.unet)
    seen_during_denoise: list[type] = []

    def progress(phase: str, done: int, total: int) -> None:
        if phase == "denoise":
            seen_during_denoise.extend(type(p) for p in backbone.unet.attn_processors.values())
            raise RuntimeError("stop in denoise")

    with pytest.raises(RuntimeError, match="stop in denoise"):
        DragEditor(backbone, SMALL.override(lora=False))(two_operation_request(seed=2), progress=progress)
    # the mutual processors were in place when it raised (start layer 2: three of the four self-attentions)
    assert seen_during_denoise.count(MutualSelfAttentionProcessor) == 3
    after = processor_snapshot(backbone.unet)
    assert after.keys() == before.keys()
    assert all(after[name] is before[name] for name in before)
    assert [type(p) for p in after.values()] == [type(p) for p in before.values()]


@pytest.mark.slow
def test_same_seed_gives_the_same_output_with_lora(tiny_sd, tmp_path, monkeypatch):
    """Two fresh backbones with empty caches both train the LoRA, and still agree to the last bit."""
    request = two_operation_request(seed=3)
    outputs = []
    for run in ("a", "b"):
        monkeypatch.setenv("DRAGNEXT_CACHE_DIR", str(tmp_path / run))
        backbone = load_backbone(str(tiny_sd.folder), device="cpu")
        result = DragEditor(backbone, SMALL)(request, seed=7)
        assert result.passes.backward == SMALL.pbsi_timesteps * SMALL.iterations + SMALL.lora_steps  # trained
        outputs.append(result.image)
    assert np.array_equal(outputs[0], outputs[1])


def test_a_lora_fit_depends_on_its_seed_not_on_the_global_rng_or_earlier_fits(tiny_sd, tmp_path, monkeypatch):
    """The fit draws its starting weights, noise and timesteps from the edit's seed: a fit after another image's
    fit, with the global RNG in another state, gives the same weights as a fit on a fresh backbone."""
    from peft.utils import get_peft_model_state_dict

    config = SMALL.override(lora_steps=2)
    image_a, image_b = random_image(32, 32, seed=40), random_image(32, 32, seed=41)

    def fitted(backbone) -> dict:
        return {k: v.clone() for k, v in get_peft_model_state_dict(backbone.unet, adapter_name="dragnext").items()}

    monkeypatch.setenv("DRAGNEXT_CACHE_DIR", str(tmp_path / "fresh"))
    fresh = load_backbone(str(tiny_sd.folder), device="cpu")
    assert fresh.finetune_lora(image_a, "", config, seed=5) == config.lora_steps
    alone = fitted(fresh)

    monkeypatch.setenv("DRAGNEXT_CACHE_DIR", str(tmp_path / "after"))
    used = load_backbone(str(tiny_sd.folder), device="cpu")
    used.finetune_lora(image_b, "", config, seed=5)
    torch.randn(1000)  # the global generator moves on
    state = torch.random.get_rng_state()
    assert used.finetune_lora(image_a, "", config, seed=5) == config.lora_steps
    assert torch.equal(torch.random.get_rng_state(), state)  # and the fit left it alone
    after = fitted(used)
    assert alone.keys() == after.keys()
    assert all(torch.equal(alone[k], after[k]) for k in alone)

    other_seed = load_backbone(str(tiny_sd.folder), device="cpu")
    monkeypatch.setenv("DRAGNEXT_CACHE_DIR", str(tmp_path / "other"))
    other_seed.finetune_lora(image_a, "", config, seed=6)
    assert not all(torch.equal(alone[k], v) for k, v in fitted(other_seed).items())


@pytest.mark.slow
def test_lora_is_cached_and_disabled_when_off(tiny_sd):
    backbone = tiny_sd.backbone
    request = two_operation_request(seed=4)
    editor = DragEditor(backbone, SMALL)
    pbsi_backward = SMALL.pbsi_timesteps * SMALL.iterations

    first = editor(request)
    assert first.passes.backward == pbsi_backward + SMALL.lora_steps
    second = editor(request)
    assert second.passes.backward == pbsi_backward  # no LoRA training the second time
    assert second.passes.forward == first.passes.forward - SMALL.lora_steps
    assert np.array_equal(first.image, second.image)
    assert any(tiny_sd.cache_dir.rglob("*.safetensors"))

    # a fresh backbone reads the LoRA from the disk cache
    reloaded = DragEditor(load_backbone(str(tiny_sd.folder), device="cpu"), SMALL)(request)
    assert reloaded.passes.backward == pbsi_backward
    assert np.array_equal(reloaded.image, first.image)

    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    conditioning = backbone.encode_prompt("")
    with_lora = backbone.predict(latent, 501, conditioning)
    assert lora_layers(backbone.unet) and not any(layer.disable_adapters for layer in lora_layers(backbone.unet))

    off = editor(request, SMALL.override(lora=False))
    assert off.passes.backward == pbsi_backward
    assert off.passes.forward == first.passes.forward - SMALL.lora_steps
    assert all(layer.disable_adapters for layer in lora_layers(backbone.unet))
    without_lora = backbone.predict(latent, 501, conditioning)
    plain = load_backbone(str(tiny_sd.folder), device="cpu")  # never had an adapter
    assert torch.allclose(without_lora, plain.predict(latent, 501, plain.encode_prompt("")), atol=1e-6, rtol=0)
    assert not torch.allclose(without_lora, with_lora, atol=1e-7, rtol=0)

    # LoRA on again, for a new image: the disabled adapter is switched back on and trained
    again = editor(two_operation_request(seed=5))
    assert again.passes.backward == pbsi_backward + SMALL.lora_steps
    assert not any(layer.disable_adapters for layer in lora_layers(backbone.unet))


def test_backbone_preset_is_the_default_config(tiny_sd):
    assert tiny_sd.backbone.name == "stable-diffusion"
    assert DragEditor(tiny_sd.backbone).config == config_module.STABLE_DIFFUSION
    assert config_module.PAPER.override(**config_module.ENGINE_V2) == config_module.STABLE_DIFFUSION
    assert DragEditor(tiny_sd.backbone, SMALL).config is SMALL


def test_engine_v2_edits_with_stable_diffusion_end_to_end(tiny_sd):
    """The default preset on an SD layout: the moved start at latent resolution, native-size feature maps of two
    blocks, a deform field, LoRA and mutual attention; the passes add up."""
    from dragnext.config import STABLE_DIFFUSION

    v2 = STABLE_DIFFUSION.override(num_steps=6, strength=0.5, iterations=2, lora_steps=1,
                                   feature_blocks=("up_blocks.0", "up_blocks.1"), mutual_attention_start_layer=2)
    request = two_operation_request(seed=31)
    deform = make_operation("deform", box(30, 42, slice(2, 9), slice(30, 37)), (33, 5), (36, 8))
    request = DragRequest(image=request.image, operations=(*request.operations, deform),
                          editable_mask=request.editable_mask)
    result = DragEditor(tiny_sd.backbone, v2)(request, seed=1)
    assert result.image.shape == (30, 42, 3)
    assert len(result.loss_history) == v2.pbsi_timesteps and all(1 <= len(h) <= 2 for h in result.loss_history)
    # a timestep whose loss is exactly zero (the moved start, its own target) spends no pass
    spent = [h for h in result.loss_history if h != [0.0]]
    iterations = sum(len(h) for h in spent)
    steps = v2.inversion_steps
    assert result.passes.truncated_forward == len(spent) + iterations
    assert result.passes.backward == iterations + v2.lora_steps
    assert result.passes.forward == steps + 2 * steps + v2.lora_steps
    outside = ~request.editable_mask
    assert np.array_equal(result.image[outside], request.image[outside])
