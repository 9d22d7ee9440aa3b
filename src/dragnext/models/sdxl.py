"""Stable Diffusion XL through diffusers: two CLIP text encoders, micro-conditioning, a VAE that runs in fp32.

A ``StableDiffusionXLPipeline`` folder or hub id: ``unet/ vae/ text_encoder/`` (CLIPTextModel, ViT-L)
``text_encoder_2/`` (CLIPTextModelWithProjection, OpenCLIP bigG) ``tokenizer/ tokenizer_2/ scheduler/``. The
prompt's conditioning is built as ``StableDiffusionXLPipeline.encode_prompt`` builds it without guidance: the
penultimate hidden states of both encoders concatenated, and ``text_encoder_2``'s pooled projection; the time ids
come with each UNet call (``latent.conditional_unet_call``). Everything else (inversion, LoRA on the attention
projections, features, mutual attention) is Stable Diffusion's.
"""

from __future__ import annotations

import torch

from .latent import XLConditioning
from .stable_diffusion import StableDiffusionBackbone


class StableDiffusionXLBackbone(StableDiffusionBackbone):
    name = "stable-diffusion-xl"
    label = "Stable Diffusion XL"
    upcast_vae = True  # SDXL's VAE overflows in fp16 (its config says force_upcast); the pipeline upcasts it too

    def __init__(self, unet, vae, text_encoder, tokenizer, text_encoder_2, tokenizer_2, scheduler_config: dict,
                 **kwargs):
        super().__init__(unet, vae, text_encoder, tokenizer, scheduler_config, **kwargs)
        self.text_encoder_2 = text_encoder_2.to(self.device, self.dtype).eval().requires_grad_(False)
        self.tokenizer_2 = tokenizer_2

    @classmethod
    def _load_parts(cls, model: str) -> dict:
        from transformers import CLIPTextModelWithProjection, CLIPTokenizer

        parts = super()._load_parts(model)
        parts["text_encoder_2"] = CLIPTextModelWithProjection.from_pretrained(model, subfolder="text_encoder_2")
        parts["tokenizer_2"] = CLIPTokenizer.from_pretrained(model, subfolder="tokenizer_2")
        return parts

    def encode_prompt(self, prompt: str) -> XLConditioning:
        hidden, pooled = [], None
        with torch.no_grad():
            for tokenizer, encoder in ((self.tokenizer, self.text_encoder), (self.tokenizer_2, self.text_encoder_2)):
                tokens = tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length,
                                   truncation=True, return_tensors="pt")
                output = encoder(tokens.input_ids.to(self.device), output_hidden_states=True)
                if output[0].ndim == 2:  # CLIPTextModelWithProjection's text_embeds: the pooled projection
                    pooled = output[0]
                hidden.append(output.hidden_states[-2])
        if pooled is None:
            raise ValueError("text_encoder_2 gave no pooled embedding; it must be a CLIPTextModelWithProjection")
        return XLConditioning(torch.cat(hidden, dim=-1), pooled)
