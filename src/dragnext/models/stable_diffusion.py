"""Stable Diffusion 1.x / 2.x through diffusers: VAE latents, CLIP text conditioning, an optional LoRA.

SD 2.x is the same layout with an OpenCLIP text encoder (its last layer already dropped in the diffusers folder, so
the encoder's output is the penultimate layer SD 2 was trained on); a v-prediction model (768-v) says so in its
scheduler config, which the DDIM schedulers of the inversion, the optimised steps and the denoising, and the
LoRA's loss, all read from ``scheduler_config``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import torch

from ..config import DEFAULT_MODEL_ID
from ..files import write_atomic
from .base import LOAD_ERRORS, ModelLoadError, image_to_tensor, load_error_reason, tensor_to_image
from .latent import ADAPTER, LORA_TARGETS, LatentUNetBackbone
from .resolve import native_resolution

logger = logging.getLogger(__name__)

__all__ = ["ADAPTER", "LORA_TARGETS", "StableDiffusionBackbone", "lora_cache_dir", "ddim_config"]

# What a latent-diffusion DDIM schedule needs where a folder's scheduler config does not say (SDXL ships an Euler
# config, which has neither): no clipping of the predicted latent to [-1, 1], and the last step to alpha_0 of the
# training schedule, as SD's own DDIM configs (and MasaCtrl's SDXL script) set them. A config that says wins.
LATENT_DDIM_DEFAULTS = {"clip_sample": False, "set_alpha_to_one": False}


def lora_cache_dir() -> Path:
    return Path(os.environ.get("DRAGNEXT_CACHE_DIR", Path.home() / ".cache" / "dragnext")) / "lora"


def ddim_config(model: str) -> dict:
    """The DDIM scheduler config of a folder or hub id: its scheduler's config (``prediction_type`` included)
    read as DDIM's, with :data:`LATENT_DDIM_DEFAULTS` where it is silent."""
    from diffusers import DDIMScheduler

    raw = DDIMScheduler.load_config(model, subfolder="scheduler")
    return dict(DDIMScheduler.from_config({**LATENT_DDIM_DEFAULTS, **raw}).config)


def checked_model_path(model: str) -> str:
    local = Path(model).expanduser()
    if local.is_dir():
        return str(local)
    if model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise ModelLoadError(f"--model: no model folder at '{model}'")
    return model


class StableDiffusionBackbone(LatentUNetBackbone):
    name = "stable-diffusion"
    label = "Stable Diffusion"  # for messages
    upcast_vae = False  # run the VAE in fp32 when its config says force_upcast (SDXL)

    def __init__(self, unet, vae, text_encoder, tokenizer, scheduler_config: dict, *, source: str = "",
                 device: torch.device | None = None, dtype: torch.dtype | None = None, autocast_bf16: bool = False):
        self._init_unet(unet, scheduler_config, device=device, dtype=dtype, autocast_bf16=autocast_bf16,
                        vae_factor=2 ** (len(vae.config.block_out_channels) - 1))
        upcast = self.upcast_vae and getattr(vae.config, "force_upcast", False) and self.dtype == torch.float16
        self.vae_dtype = torch.float32 if upcast else self.dtype
        self.vae = vae.to(self.device, self.vae_dtype).eval().requires_grad_(False)
        self.text_encoder = text_encoder.to(self.device, self.dtype).eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.source = source
        self.native_size = native_resolution(dict(unet.config), dict(vae.config))
        self._lora_key: str | None = None
        self._lora_memory: dict[str, dict[str, torch.Tensor]] = {}

    @classmethod
    def _load_parts(cls, model: str) -> dict:
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        return {
            "unet": UNet2DConditionModel.from_pretrained(model, subfolder="unet"),
            "vae": AutoencoderKL.from_pretrained(model, subfolder="vae"),
            "text_encoder": CLIPTextModel.from_pretrained(model, subfolder="text_encoder"),
            "tokenizer": CLIPTokenizer.from_pretrained(model, subfolder="tokenizer"),
            "scheduler_config": ddim_config(model),
        }

    @classmethod
    def from_pretrained(cls, model: str = DEFAULT_MODEL_ID, **kwargs) -> StableDiffusionBackbone:
        """Load from a hub id or a local diffusers folder (``unet/ vae/ text_encoder/ tokenizer/ scheduler/``)."""
        model = checked_model_path(model)
        try:
            parts = cls._load_parts(model)
        except LOAD_ERRORS as error:
            raise ModelLoadError(
                f"could not load {cls.label} weights '{model}' ({load_error_reason(error)}). Download them on a "
                f"connected machine (huggingface-cli download {model} --local-dir DIR) and pass --model DIR, "
                "or use --model bundled"
            ) from error
        return cls(**parts, source=model, **kwargs)

    # ---------------------------------------------------------------- images, prompts
    def encode_image(self, image: np.ndarray) -> torch.Tensor:
        pixels = image_to_tensor(image)
        with torch.no_grad():
            latent = self.vae.encode(pixels.to(self.device, self.vae_dtype)).latent_dist.mean
        return latent.float() * self.vae.config.scaling_factor

    def decode_latent(self, latent: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            pixels = self.vae.decode((latent / self.vae.config.scaling_factor).to(self.vae_dtype)).sample
        return tensor_to_image(pixels)

    def encode_prompt(self, prompt: str) -> torch.Tensor:
        tokens = self.tokenizer(
            prompt, padding="max_length", max_length=self.tokenizer.model_max_length, truncation=True,
            return_tensors="pt",
        )
        with torch.no_grad():
            return self.text_encoder(tokens.input_ids.to(self.device))[0]

    # ---------------------------------------------------------------- identity-preserving LoRA
    def _lora_cache_key(self, image: np.ndarray, prompt: str, config, seed: int) -> str:
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(image).tobytes())
        digest.update(repr((image.shape, prompt, self.source, config.lora_rank, config.lora_steps,
                            config.lora_learning_rate, seed)).encode())
        return digest.hexdigest()[:32]

    def finetune_lora(self, image: np.ndarray, prompt: str, config, progress=None, *, seed: int = 0) -> int:
        """Fit a rank-``lora_rank`` LoRA to the image with the plain diffusion loss (DragDiffusion's recipe).

        The adapter's starting weights, noise and timesteps come from a generator seeded with ``seed`` (the
        edit's), so a fit depends neither on the process's global RNG nor on the images fitted before it.
        Cached by image, prompt, model, settings and seed, in memory and in ``$DRAGNEXT_CACHE_DIR/lora``: a
        second edit of the same image loads the weights instead of training. Returns the UNet passes spent.
        """
        from peft.utils import get_peft_model_state_dict
        from safetensors.torch import load_file, save

        key = self._lora_cache_key(image, prompt, config, seed)
        self.add_lora(config.lora_rank)
        if key == self._lora_key:
            self.use_lora()
            return 0
        disk = lora_cache_dir() / f"{key}.safetensors"
        state = self._lora_memory.get(key)
        if state is None and disk.is_file():
            state = load_file(disk)
        if state is not None:
            self._set_lora_weights(state)
            self._lora_memory[key], self._lora_key = state, key
            logger.info("LoRA for this image loaded from the cache")
            return 0

        noise_scheduler = self.noise_scheduler()
        latent = self.encode_image(image)
        conditioning = self.encode_prompt(prompt)
        generator = torch.Generator(device="cpu").manual_seed(seed)
        optimizer = torch.optim.AdamW(self.fresh_lora(config.lora_rank, generator), lr=config.lora_learning_rate)
        # the adapter is trained in place: until training ends it belongs to no image, so a stopped or failed
        # run (the UI's time limit) cannot leave half-trained weights under the previous image's key
        self._lora_key = None
        with self.lora_training():
            for step in range(config.lora_steps):
                self.lora_step(latent, conditioning, noise_scheduler, optimizer, generator)
                if progress:
                    progress("lora", step + 1, config.lora_steps)
        state = {k: v.detach().clone() for k, v in get_peft_model_state_dict(self.unet, adapter_name=ADAPTER).items()}
        self._lora_memory[key], self._lora_key = state, key
        try:
            disk.parent.mkdir(parents=True, exist_ok=True)
            payload = save({k: v.cpu().contiguous() for k, v in state.items()})
            write_atomic(disk, lambda stream: stream.write(payload))
        except OSError as error:  # a read-only home must not fail the edit
            logger.warning("could not cache the LoRA on disk: %s", error)
        return config.lora_steps
