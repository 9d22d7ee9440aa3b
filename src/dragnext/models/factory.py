"""Random-weight models of a named architecture, built offline: for the cost benchmark, the SD-size script and
the tests (no machine here downloads weights, and compute does not depend on them).

- :func:`build_unet_backbone`: a bare conditional UNet seen as a backbone (``UNetOnlyBackbone``), for timing its
  passes with the real UNet call, feature hooks and LoRA step of the Stable Diffusion backbones;
- :func:`build_model_folder`: a whole diffusers folder (unet, vae, text encoder(s), tokenizer(s), scheduler,
  ``model_index.json``) that ``load_backbone`` reads like a downloaded model.

Architectures (:data:`ARCHITECTURES`): ``sd15``, ``sd2-v`` and ``sdxl`` are the published models' shapes (their
``config.json`` fields that shape the compute; the rest are diffusers' defaults); the ``tiny*`` ones keep a
layout with tiny widths, for tests. A tiny model's native side keeps its real model's ratio to SD 1.x's
(tiny-sd1 32 px, tiny-sd2-v 48 px, tiny-sdxl 64 px: 512 : 768 : 1024).
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .base import default_device, default_dtype, seeded_construction
from .latent import LatentUNetBackbone, XLConditioning
from .resolve import STABLE_DIFFUSION, STABLE_DIFFUSION_XL

TEXT_TOKENS = 77  # CLIP's sequence length

_SD_DOWN = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]
_SD_UP = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]
_XL_DOWN = ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"]
_XL_UP = ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"]
_SMALL_DOWN = ["DownBlock2D", "CrossAttnDownBlock2D"]
_SMALL_UP = ["CrossAttnUpBlock2D", "UpBlock2D"]

# Stable Diffusion 1.5's unet/config.json, the fields that shape its compute.
SD15_UNET: dict[str, Any] = {
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
    "block_out_channels": [320, 640, 1280, 1280], "down_block_types": _SD_DOWN, "up_block_types": _SD_UP,
    "cross_attention_dim": 768, "attention_head_dim": 8, "norm_num_groups": 32, "act_fn": "silu",
    "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "mid_block_scale_factor": 1,
    "norm_eps": 1e-5, "center_input_sample": False,
}
# SD 2.x 768-v (stabilityai/stable-diffusion-2-1): OpenCLIP-H text (1024 wide), linear projections, 96 x 8 = 768 px.
SD2V_UNET: dict[str, Any] = {**SD15_UNET, "sample_size": 96, "cross_attention_dim": 1024,
                             "attention_head_dim": [5, 10, 20, 20], "use_linear_projection": True,
                             "upcast_attention": True}
# SDXL base 1.0's unet/config.json: 3 levels, 1/2/10 transformer layers (70 self-attentions), micro-conditioning
# ("text_time": pooled text 1280 + 6 time ids x 256 = 2816), 128 x 8 = 1024 px.
SDXL_UNET: dict[str, Any] = {
    "sample_size": 128, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
    "block_out_channels": [320, 640, 1280], "down_block_types": _XL_DOWN, "up_block_types": _XL_UP,
    "transformer_layers_per_block": [1, 2, 10], "cross_attention_dim": 2048, "attention_head_dim": [5, 10, 20],
    "use_linear_projection": True, "addition_embed_type": "text_time", "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816, "norm_num_groups": 32, "act_fn": "silu",
}
# SD 1.5's layout, tiny (PAPER's feature blocks and its 10th self-attention layer exist): --cost-unet tiny.
TINY_UNET: dict[str, Any] = {
    "sample_size": 8, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
    "block_out_channels": [16, 16, 32, 32], "down_block_types": _SD_DOWN, "up_block_types": _SD_UP,
    "cross_attention_dim": 32, "attention_head_dim": 2, "norm_num_groups": 8,
}
# Two levels, one cross-attention level each way: the tests' SD 1.x folder (size multiple 4, 4 self-attentions).
TINY_SD1_UNET: dict[str, Any] = {
    "sample_size": 16, "in_channels": 4, "out_channels": 4, "layers_per_block": 1, "block_out_channels": [32, 64],
    "down_block_types": _SMALL_DOWN, "up_block_types": _SMALL_UP, "cross_attention_dim": 32, "norm_num_groups": 16,
    "attention_head_dim": 8,
}
# As SD 2.x-v: linear projections, per-level head counts, the text encoder's own width (48), 24 x 2 = 48 px.
TINY_SD2V_UNET: dict[str, Any] = {**TINY_SD1_UNET, "sample_size": 24, "cross_attention_dim": 48,
                                  "attention_head_dim": [4, 8], "use_linear_projection": True,
                                  "upcast_attention": True}
# SDXL's layout (3 levels, 1/2/10 transformer layers: 70 self-attentions, 3 up blocks), tiny widths; pooled text
# 32 + 6 time ids x 8 = 80; 32 x 2 = 64 px.
TINY_SDXL_UNET: dict[str, Any] = {
    "sample_size": 32, "in_channels": 4, "out_channels": 4, "layers_per_block": 2, "block_out_channels": [16, 32, 32],
    "down_block_types": _XL_DOWN, "up_block_types": _XL_UP, "transformer_layers_per_block": [1, 2, 10],
    "cross_attention_dim": 64, "attention_head_dim": [2, 4, 4], "use_linear_projection": True,
    "addition_embed_type": "text_time", "addition_time_embed_dim": 8, "projection_class_embeddings_input_dim": 80,
    "norm_num_groups": 8,
}

_VAE4 = {"in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2,
         "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4}
SD15_VAE = {**_VAE4, "sample_size": 512, "block_out_channels": [128, 256, 512, 512]}
SD2V_VAE = {**SD15_VAE, "sample_size": 768}
SDXL_VAE = {**SD15_VAE, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True}
TINY_VAE = {**_VAE4, "block_out_channels": [8, 8, 16, 16], "norm_num_groups": 8}
TINY_VAE2 = {"in_channels": 3, "out_channels": 3, "latent_channels": 4, "block_out_channels": [16, 32],
             "norm_num_groups": 16, "down_block_types": ["DownEncoderBlock2D"] * 2,
             "up_block_types": ["UpDecoderBlock2D"] * 2}

_CLIP_IDS = {"bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1, "max_position_embeddings": TEXT_TOKENS}
CLIP_L = {**_CLIP_IDS, "hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
          "num_hidden_layers": 12, "vocab_size": 49408, "projection_dim": 768, "hidden_act": "quick_gelu"}
OPENCLIP_H = {**_CLIP_IDS, "hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16,
              "num_hidden_layers": 23, "vocab_size": 49408, "projection_dim": 512, "hidden_act": "gelu"}
OPENCLIP_BIGG = {**_CLIP_IDS, "hidden_size": 1280, "intermediate_size": 5120, "num_attention_heads": 20,
                 "num_hidden_layers": 32, "vocab_size": 49408, "projection_dim": 1280, "hidden_act": "gelu"}
TINY_TEXT = {**_CLIP_IDS, "hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4,
             "num_hidden_layers": 2, "vocab_size": 128, "projection_dim": 32}
TINY_TEXT_48 = {**TINY_TEXT, "hidden_size": 48, "hidden_act": "gelu"}

_SD_SCHEDULER = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "clip_sample": False,
                 "set_alpha_to_one": False, "steps_offset": 1}
# SDXL ships an Euler scheduler; the backbones run DDIM from its betas (as MasaCtrl's SDXL script does)
_XL_SCHEDULER = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "steps_offset": 1,
                 "timestep_spacing": "leading", "prediction_type": "epsilon"}


@dataclass(frozen=True)
class Architecture:
    kind: str  # resolve.KINDS: which backbone loads it
    unet: Mapping[str, Any]
    vae: Mapping[str, Any]
    text: Mapping[str, Any]
    text_2: Mapping[str, Any] | None = None  # SDXL's second encoder (CLIPTextModelWithProjection)
    scheduler: Mapping[str, Any] = field(default_factory=lambda: dict(_SD_SCHEDULER))
    scheduler_class: str = "DDIMScheduler"


ARCHITECTURES: dict[str, Architecture] = {
    "sd15": Architecture(STABLE_DIFFUSION, SD15_UNET, SD15_VAE, CLIP_L),
    "sd2-v": Architecture(STABLE_DIFFUSION, SD2V_UNET, SD2V_VAE, OPENCLIP_H,
                          scheduler={**_SD_SCHEDULER, "prediction_type": "v_prediction"}),
    "sdxl": Architecture(STABLE_DIFFUSION_XL, SDXL_UNET, SDXL_VAE, CLIP_L, OPENCLIP_BIGG, _XL_SCHEDULER,
                         "EulerDiscreteScheduler"),
    "tiny": Architecture(STABLE_DIFFUSION, TINY_UNET, TINY_VAE, TINY_TEXT),
    "tiny-sd1": Architecture(STABLE_DIFFUSION, TINY_SD1_UNET, TINY_VAE2, TINY_TEXT),
    "tiny-sd2-v": Architecture(STABLE_DIFFUSION, TINY_SD2V_UNET, TINY_VAE2, TINY_TEXT_48,
                               scheduler={**_SD_SCHEDULER, "prediction_type": "v_prediction"}),
    "tiny-sdxl": Architecture(STABLE_DIFFUSION_XL, TINY_SDXL_UNET, TINY_VAE2, TINY_TEXT, TINY_TEXT, _XL_SCHEDULER,
                              "EulerDiscreteScheduler"),
}


def architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}") from None


# ------------------------------------------------------------------------------------------------ a UNet alone


class UNetOnlyBackbone(LatentUNetBackbone):
    """A bare conditional UNet seen as a backbone, for timing its passes (no VAE, no text encoder): the UNet call,
    feature hooks and LoRA step are the Stable Diffusion backbones' own."""

    name = "cost"

    def __init__(self, unet, device: torch.device, dtype: torch.dtype, vae_factor: int = 8):
        self._init_unet(unet, {}, device=device, dtype=dtype, vae_factor=vae_factor)

    def encode_image(self, image):
        raise NotImplementedError("the cost measurement runs the UNet only")

    def decode_latent(self, latent):
        raise NotImplementedError("the cost measurement runs the UNet only")

    def encode_prompt(self, prompt):
        raise NotImplementedError("the cost measurement runs the UNet only")

    def random_conditioning(self, generator: torch.Generator):
        """Conditioning of the shapes the UNet takes (one prompt): CLIP-length context, and for SDXL the pooled
        text embedding that completes its added conditioning."""
        config = self.unet.config
        context = torch.randn(1, TEXT_TOKENS, config.cross_attention_dim, generator=generator)
        context = context.to(self.device, self.dtype)
        if config.addition_embed_type != "text_time":
            return context
        pooled_width = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
        pooled = torch.randn(1, pooled_width, generator=generator).to(self.device, self.dtype)
        return XLConditioning(context, pooled)


def build_unet_backbone(config: Mapping[str, Any] | str, device=None, dtype=None, seed: int = 0) -> UNetOnlyBackbone:
    """A randomly initialised ``UNet2DConditionModel`` from a config dict or an architecture name, built on
    ``device`` (initialised there), its weights drawn from ``seed`` without touching the caller's RNG."""
    from diffusers import UNet2DConditionModel

    if isinstance(config, str):
        config = architecture(config).unet
    device = torch.device(device) if device is not None else default_device()
    dtype = dtype or default_dtype(device)
    with seeded_construction(seed, device), device:
        unet = UNet2DConditionModel(**config)
    return UNetOnlyBackbone(unet.to(dtype).eval().requires_grad_(False), device, dtype)


# ------------------------------------------------------------------------------------------------ whole folders


def write_clip_tokenizer(folder: Path, max_length: int = TEXT_TOKENS):
    """A CLIP BPE tokenizer over single characters, its vocabulary written here (the real one cannot be fetched,
    and token ids do not change the compute)."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "!": 1, "<|endoftext|>": 2}
    for symbol in string.ascii_lowercase + string.digits + ".,!?'- ":
        for token in (symbol, symbol + "</w>"):
            vocab.setdefault(token, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=max_length)


def build_model_folder(name: str, folder: Path, seed: int = 0) -> Path:
    """Save a random-weight diffusers folder of architecture ``name`` to ``folder`` (``model_index.json``, unet,
    vae, text_encoder, tokenizer, scheduler; SDXL also text_encoder_2 and tokenizer_2)."""
    import diffusers
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    arch = architecture(name)
    folder = Path(folder)
    with seeded_construction(seed):
        UNet2DConditionModel(**arch.unet).save_pretrained(folder / "unet")
        AutoencoderKL(**arch.vae).save_pretrained(folder / "vae")
        CLIPTextModel(CLIPTextConfig(**arch.text)).save_pretrained(folder / "text_encoder")
        if arch.text_2 is not None:
            CLIPTextModelWithProjection(CLIPTextConfig(**arch.text_2)).save_pretrained(folder / "text_encoder_2")
    tokenizer = write_clip_tokenizer(folder / "_tokenizer_src")
    tokenizer.save_pretrained(folder / "tokenizer")
    getattr(diffusers, arch.scheduler_class)(**arch.scheduler).save_pretrained(folder / "scheduler")
    components = {"unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
                  "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
                  "scheduler": ["diffusers", arch.scheduler_class]}
    pipeline = "StableDiffusionPipeline"
    if arch.text_2 is not None:
        tokenizer.save_pretrained(folder / "tokenizer_2")
        components |= {"text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
                       "tokenizer_2": ["transformers", "CLIPTokenizer"]}
        pipeline = "StableDiffusionXLPipeline"
    index = {"_class_name": pipeline, "_diffusers_version": diffusers.__version__, **components}
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    return folder
