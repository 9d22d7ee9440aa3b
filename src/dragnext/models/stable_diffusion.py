"""Stable Diffusion 1.x / 2.x through diffusers: VAE latents, CLIP text conditioning, an optional LoRA."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..config import DEFAULT_MODEL_ID
from ..files import write_atomic
from .base import (
    LOAD_ERRORS,
    Backbone,
    ModelLoadError,
    default_device,
    default_dtype,
    image_to_tensor,
    load_error_reason,
    tensor_to_image,
)

logger = logging.getLogger(__name__)

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]  # attention projections, as DragDiffusion
ADAPTER = "dragnext"


def lora_cache_dir() -> Path:
    return Path(os.environ.get("DRAGNEXT_CACHE_DIR", Path.home() / ".cache" / "dragnext")) / "lora"


class StableDiffusionBackbone(Backbone):
    name = "stable-diffusion"
    supports_lora = True

    def __init__(self, unet, vae, text_encoder, tokenizer, scheduler_config: dict, *, source: str = "",
                 device: torch.device | None = None, dtype: torch.dtype | None = None, autocast_bf16: bool = False):
        self.device = torch.device(device) if device is not None else default_device()
        self.dtype = dtype or default_dtype(self.device)
        self.unet = unet.to(self.device, self.dtype).eval().requires_grad_(False)
        self.vae = vae.to(self.device, self.dtype).eval().requires_grad_(False)
        self.text_encoder = text_encoder.to(self.device, self.dtype).eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.scheduler_config = dict(scheduler_config)
        self.source = source
        self.autocast_bf16 = autocast_bf16
        vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        unet_factor = 2 ** (len(unet.config.down_block_types) - 1)
        self.size_multiple = vae_factor * unet_factor
        self._lora_key: str | None = None
        self._lora_memory: dict[str, dict[str, torch.Tensor]] = {}

    @classmethod
    def from_pretrained(cls, model: str = DEFAULT_MODEL_ID, **kwargs) -> StableDiffusionBackbone:
        """Load from a hub id or a local diffusers folder (``unet/ vae/ text_encoder/ tokenizer/ scheduler/``)."""
        from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        local = Path(model).expanduser()
        if local.is_dir():
            model = str(local)
        elif model.startswith((".", "/", "~")) or model.count("/") > 1:
            raise ModelLoadError(f"--model: no model folder at '{model}'")
        try:
            unet = UNet2DConditionModel.from_pretrained(model, subfolder="unet")
            vae = AutoencoderKL.from_pretrained(model, subfolder="vae")
            text_encoder = CLIPTextModel.from_pretrained(model, subfolder="text_encoder")
            tokenizer = CLIPTokenizer.from_pretrained(model, subfolder="tokenizer")
            scheduler = DDIMScheduler.from_pretrained(model, subfolder="scheduler")
        except LOAD_ERRORS as error:
            raise ModelLoadError(
                f"could not load Stable Diffusion weights '{model}' ({load_error_reason(error)}). Download them on a "
                f"connected machine (huggingface-cli download {model} --local-dir DIR) and pass --model DIR, "
                "or use --model bundled"
            ) from error
        return cls(unet, vae, text_encoder, tokenizer, scheduler.config, source=model, **kwargs)

    # ---------------------------------------------------------------- images, prompts, UNet
    def encode_image(self, image: np.ndarray) -> torch.Tensor:
        pixels = image_to_tensor(image)
        with torch.no_grad():
            latent = self.vae.encode(pixels.to(self.device, self.dtype)).latent_dist.mean
        return latent.float() * self.vae.config.scaling_factor

    def decode_latent(self, latent: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            pixels = self.vae.decode((latent / self.vae.config.scaling_factor).to(self.dtype)).sample
        return tensor_to_image(pixels)

    def encode_prompt(self, prompt: str) -> torch.Tensor:
        tokens = self.tokenizer(
            prompt, padding="max_length", max_length=self.tokenizer.model_max_length, truncation=True,
            return_tensors="pt",
        )
        with torch.no_grad():
            return self.text_encoder(tokens.input_ids.to(self.device))[0]

    def _unet_call(self, latent: torch.Tensor, timestep: torch.Tensor, conditioning: Any) -> torch.Tensor:
        conditioning = conditioning.to(self.dtype).expand(latent.shape[0], -1, -1)
        return self.unet(latent, timestep, encoder_hidden_states=conditioning).sample

    # ---------------------------------------------------------------- identity-preserving LoRA
    def _lora_cache_key(self, image: np.ndarray, prompt: str, config, seed: int) -> str:
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(image).tobytes())
        digest.update(repr((image.shape, prompt, self.source, config.lora_rank, config.lora_steps,
                            config.lora_learning_rate, seed)).encode())
        return digest.hexdigest()[:32]

    def _ensure_adapter(self, rank: int) -> None:
        from peft import LoraConfig

        existing = getattr(self.unet, "peft_config", {}) or {}
        if ADAPTER in existing and existing[ADAPTER].r == rank:
            return
        if ADAPTER in existing:
            self.unet.delete_adapters(ADAPTER)
        lora = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=LORA_TARGETS)
        self.unet.add_adapter(lora, adapter_name=ADAPTER)

    def _set_lora_weights(self, state: dict[str, torch.Tensor]) -> None:
        from peft.utils import set_peft_model_state_dict

        set_peft_model_state_dict(self.unet, state, adapter_name=ADAPTER)
        self._use_adapter()

    def _use_adapter(self) -> None:
        """Switch the LoRA on for inference: peft's enable_adapters also makes its weights trainable, which
        would make every PBSI backward accumulate gradients into them."""
        self.unet.enable_adapters()
        for name, param in self.unet.named_parameters():
            if "lora_" in name:
                param.requires_grad_(False)
                param.grad = None

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
        self._ensure_adapter(config.lora_rank)
        if key == self._lora_key:
            self._use_adapter()
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

        from diffusers import DDPMScheduler

        noise_scheduler = DDPMScheduler.from_config(self.scheduler_config)
        latent = self.encode_image(image)
        conditioning = self.encode_prompt(prompt)
        generator = torch.Generator(device="cpu").manual_seed(seed)
        self.unet.enable_adapters()  # an edit with lora=False may have disabled it: train it, not the base UNet
        params = []
        for name, p in self.unet.named_parameters():
            if "lora_" not in name:
                continue
            # a fresh start, as peft's "gaussian" init draws it (A ~ N(0, 1/r), B = 0), from the edit's generator
            start = torch.randn(p.shape, generator=generator) / config.lora_rank if "lora_A" in name else None
            p.data = start.to(p.device) if start is not None else torch.zeros_like(p.data, dtype=torch.float32)
            p.requires_grad_(True)
            params.append(p)
        optimizer = torch.optim.AdamW(params, lr=config.lora_learning_rate)
        # the adapter is trained in place: until training ends it belongs to no image, so a stopped or failed
        # run (the UI's time limit) cannot leave half-trained weights under the previous image's key
        self._lora_key = None
        self.unet.train()
        try:
            for step in range(config.lora_steps):
                noise = torch.randn(latent.shape, generator=generator).to(self.device)
                t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (1,), generator=generator)
                t = t.to(self.device)
                noisy = noise_scheduler.add_noise(latent, noise, t)
                target = noise
                if noise_scheduler.config.prediction_type == "v_prediction":
                    target = noise_scheduler.get_velocity(latent, noise, t)
                loss = F.mse_loss(self.predict(noisy, t, conditioning), target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if progress:
                    progress("lora", step + 1, config.lora_steps)
        finally:
            self.unet.eval()
            self._use_adapter()
        state = {k: v.detach().clone() for k, v in get_peft_model_state_dict(self.unet, adapter_name=ADAPTER).items()}
        self._lora_memory[key], self._lora_key = state, key
        try:
            disk.parent.mkdir(parents=True, exist_ok=True)
            payload = save({k: v.cpu().contiguous() for k, v in state.items()})
            write_atomic(disk, lambda stream: stream.write(payload))
        except OSError as error:  # a read-only home must not fail the edit
            logger.warning("could not cache the LoRA on disk: %s", error)
        return config.lora_steps

    def disable_lora(self) -> None:
        if getattr(self.unet, "peft_config", None):
            self.unet.disable_adapters()
