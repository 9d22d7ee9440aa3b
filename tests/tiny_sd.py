"""Tiny, randomly initialised Stable Diffusion components built offline (nothing is downloaded)."""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch


def write_clip_tokenizer(folder: Path) -> Path:
    """A CLIP BPE tokenizer over single characters: vocab and merges written here, not fetched."""
    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(string.ascii_lowercase + string.digits + ".,!?'- ")
    vocab = {"<|startoftext|>": 0, "!": 1, "<|endoftext|>": 2}
    for symbol in symbols:
        for token in (symbol, symbol + "</w>"):
            vocab.setdefault(token, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return folder


def build_tiny_sd(folder: Path, seed: int = 0) -> Path:
    """Save a tiny SD-1.x-layout model (unet, vae, text_encoder, tokenizer, scheduler) to ``folder``."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, norm_num_groups=16, attention_head_dim=8,
    )
    vae = AutoencoderKL(
        block_out_channels=(16, 32), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=16,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=0, eos_token_id=2, pad_token_id=1, hidden_size=32, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=2, vocab_size=128, max_position_embeddings=77,
    ))
    tokenizer = CLIPTokenizer(
        str(write_clip_tokenizer(folder / "_tokenizer_src") / "vocab.json"),
        str(folder / "_tokenizer_src" / "merges.txt"), model_max_length=77,
    )
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    text_encoder.save_pretrained(folder / "text_encoder")
    tokenizer.save_pretrained(folder / "tokenizer")
    scheduler.save_pretrained(folder / "scheduler")
    return folder
