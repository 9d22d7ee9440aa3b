"""A conditional UNet in a VAE's latent space: what Stable Diffusion 1.x/2.x, SDXL and the cost benchmark's bare
UNet share: the UNet call (text conditioning, and SDXL's added conditioning) and the identity LoRA's adapter and
training step."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .base import Backbone, default_device, default_dtype

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]  # attention projections, as DragDiffusion (SDXL's alike)
ADAPTER = "dragnext"


@dataclass(frozen=True)
class XLConditioning:
    """SDXL's conditioning of one prompt: both text encoders' penultimate hidden states, concatenated on channels
    ([1, 77, 768 + 1280]), and ``text_encoder_2``'s pooled, projected embedding ([1, 1280])."""

    prompt_embeds: torch.Tensor
    pooled: torch.Tensor


def conditional_unet_call(unet, latent: torch.Tensor, timestep: torch.Tensor, conditioning: Any, dtype: torch.dtype,
                          vae_factor: int) -> torch.Tensor:
    """The UNet's raw output for a batch of latents, the one prompt's conditioning expanded to the batch (the
    editor runs ``[reference, edited]`` pairs for mutual attention).

    SDXL's micro-conditioning (``added_cond_kwargs``) follows ``StableDiffusionXLPipeline._get_add_time_ids``:
    ``time_ids = original_size + crops_coords_top_left + target_size`` = ``(h, w, 0, 0, h, w)`` in pixels: the
    working image is the whole picture, uncropped, at the size the latent decodes to."""
    batch = latent.shape[0]
    if isinstance(conditioning, XLConditioning):
        height, width = latent.shape[-2] * vae_factor, latent.shape[-1] * vae_factor
        time_ids = torch.tensor([[height, width, 0, 0, height, width]], device=latent.device, dtype=dtype)
        added = {"text_embeds": conditioning.pooled.to(latent.device, dtype).expand(batch, -1),
                 "time_ids": time_ids.expand(batch, -1)}
        context = conditioning.prompt_embeds.to(latent.device, dtype).expand(batch, -1, -1)
        return unet(latent, timestep, encoder_hidden_states=context, added_cond_kwargs=added).sample
    context = conditioning.to(latent.device, dtype).expand(batch, -1, -1)
    return unet(latent, timestep, encoder_hidden_states=context).sample


class LatentUNetBackbone(Backbone):
    """A ``UNet2DConditionModel`` backbone: subclasses add the VAE and text encoders (or, for timing, none)."""

    supports_lora = True
    vae_factor: int = 8  # pixels per latent cell

    def _init_unet(self, unet, scheduler_config: dict, *, device=None, dtype=None, autocast_bf16: bool = False,
                   vae_factor: int = 8) -> None:
        self.device = torch.device(device) if device is not None else default_device()
        self.dtype = dtype or default_dtype(self.device)
        self.unet = unet.to(self.device, self.dtype).eval().requires_grad_(False)
        self.scheduler_config = dict(scheduler_config)
        self.autocast_bf16 = autocast_bf16
        self.vae_factor = vae_factor
        self.size_multiple = vae_factor * 2 ** (len(unet.config.down_block_types) - 1)

    def _unet_call(self, latent: torch.Tensor, timestep: torch.Tensor, conditioning: Any) -> torch.Tensor:
        return conditional_unet_call(self.unet, latent, timestep, conditioning, self.dtype, self.vae_factor)

    # ---------------------------------------------------------------- the LoRA adapter
    def add_lora(self, rank: int) -> None:
        """A rank-``rank`` LoRA on the attention projections (kept if the UNet has one of that rank)."""
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
        self.use_lora()

    def use_lora(self) -> None:
        """Switch the LoRA on for inference: peft's enable_adapters also makes its weights trainable, which
        would make every PBSI backward accumulate gradients into them."""
        self.unet.enable_adapters()
        for name, param in self.unet.named_parameters():
            if "lora_" in name:
                param.requires_grad_(False)
                param.grad = None

    def disable_lora(self) -> None:
        if getattr(self.unet, "peft_config", None):
            self.unet.disable_adapters()

    # ---------------------------------------------------------------- training it
    def noise_scheduler(self):
        """The training-noise scheduler of the LoRA's loss (DDPM, the model's betas and prediction type)."""
        from diffusers import DDPMScheduler

        return DDPMScheduler.from_config(self.scheduler_config)

    def fresh_lora(self, rank: int, generator: torch.Generator) -> list[torch.nn.Parameter]:
        """The adapter's weights restarted from ``generator`` as peft's "gaussian" init draws them (A ~ N(0, 1/r),
        B = 0), in fp32: the parameters to optimise."""
        self.unet.enable_adapters()  # an edit with lora=False may have disabled it: train it, not the base UNet
        params = []
        for name, p in self.unet.named_parameters():
            if "lora_" not in name:
                continue
            start = torch.randn(p.shape, generator=generator) / rank if "lora_A" in name else None
            p.data = start.to(p.device) if start is not None else torch.zeros_like(p.data, dtype=torch.float32)
            params.append(p)
        return params

    @contextlib.contextmanager
    def lora_training(self):
        """The LoRA's weights trainable and the UNet in train mode; afterwards eval, and the adapter on for
        inference with its weights frozen (also on error)."""
        self.unet.enable_adapters()
        for name, p in self.unet.named_parameters():
            if "lora_" in name:
                p.requires_grad_(True)
        self.unet.train()
        try:
            yield
        finally:
            self.unet.eval()
            self.use_lora()

    def lora_step(self, latent: torch.Tensor, conditioning: Any, noise_scheduler, optimizer,
                  generator: torch.Generator) -> torch.Tensor:
        """One step of DragDiffusion's LoRA recipe (inside :meth:`lora_training`): noise and a timestep from
        ``generator``, the plain diffusion loss in the scheduler's prediction type (epsilon, or v for SD 2.x-v)."""
        noise = torch.randn(latent.shape, generator=generator).to(self.device)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (1,), generator=generator).to(self.device)
        noisy = noise_scheduler.add_noise(latent, noise, t)
        target = noise
        if noise_scheduler.config.prediction_type == "v_prediction":
            target = noise_scheduler.get_velocity(latent, noise, t)
        loss = F.mse_loss(self.predict(noisy, t, conditioning), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()  # a tensor: reading its value would wait for the GPU at every step
