"""Mutual self-attention (MasaCtrl, Cao et al. 2023) as diffusers attention processors.

The UNet runs on a batch ``[reference, edited]``. In the chosen self-attention layers the edited half's
queries read the *reference* half's keys and values, so the edited image keeps the appearance of the input
while its layout follows the optimised latent. Cross-attention and the reference half are left as they are.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0


@dataclass
class MutualAttentionSwitch:
    """Shared by all processors of one edit; the editor turns it on from ``mutual_attention_start_step``."""

    active: bool = True


class MutualSelfAttentionProcessor:
    """Self-attention whose second batch half attends to the keys and values of the first half."""

    def __init__(self, switch: MutualAttentionSwitch):
        self.switch = switch
        self.plain = AttnProcessor2_0()

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states=None,
                 attention_mask=None, temb=None, *args, **kwargs) -> torch.Tensor:
        batch = hidden_states.shape[0]
        if encoder_hidden_states is not None or attention_mask is not None or not self.switch.active or batch % 2:
            return self.plain(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)

        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        spatial = hidden_states.ndim == 4
        if spatial:
            _, channels, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channels, height * width).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        half = batch // 2
        reference = hidden_states[:half]
        key = attn.to_k(reference).repeat(2, 1, 1)
        value = attn.to_v(reference).repeat(2, 1, 1)

        head_dim = key.shape[-1] // attn.heads
        query, key, value = (x.view(batch, -1, attn.heads, head_dim).transpose(1, 2) for x in (query, key, value))
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        out = F.scaled_dot_product_attention(query, key, value, dropout_p=0.0, is_causal=False)
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if spatial:
            out = out.transpose(-1, -2).reshape(batch, channels, height, width)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def attention_modules(unet: torch.nn.Module) -> dict[str, Attention]:
    """Every diffusers ``Attention`` module by name (works for models without ``attn_processors``, e.g. UNet2DModel)."""
    return {name: module for name, module in unet.named_modules() if isinstance(module, Attention)}


def self_attention_layers(unet: torch.nn.Module) -> list[str]:
    """Names of the UNet's self-attention modules in execution order: down, mid, up."""
    names = [name for name, module in attention_modules(unet).items() if not module.is_cross_attention]
    stage = {"down_blocks": 0, "mid_block": 1, "up_blocks": 2}
    return sorted(names, key=lambda n: (stage.get(n.split(".")[0], 3), names.index(n)))


def mutual_attention_processors(unet: torch.nn.Module, start_layer: int,
                                switch: MutualAttentionSwitch) -> dict[str, MutualSelfAttentionProcessor]:
    """Processors, by attention-module name, for the self-attention layers from the ``start_layer``-th (1-based) on."""
    layers = self_attention_layers(unet)
    processor = MutualSelfAttentionProcessor(switch)
    return {name: processor for name in layers[start_layer - 1 :]}


@contextlib.contextmanager
def installed_processors(unet: torch.nn.Module, processors: dict) -> Iterator[None]:
    """Set the given processors (by attention-module name) for the block; the previous ones are always restored."""
    modules = attention_modules(unet)
    unknown = set(processors) - set(modules)
    if unknown:
        raise ValueError(f"no attention module named {sorted(unknown)[0]!r}")
    previous = {name: modules[name].get_processor() for name in processors}
    try:
        for name, processor in processors.items():
            modules[name].set_processor(processor)
        yield
    finally:
        for name, processor in previous.items():
            modules[name].set_processor(processor)
