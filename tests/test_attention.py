"""Mutual self-attention processors against plain attention computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from dragnext.attention import (
    MutualAttentionSwitch,
    MutualSelfAttentionProcessor,
    mutual_attention_processors,
    self_attention_layers,
)

HEADS, DIM_HEAD = 4, 8


def token_attention() -> Attention:
    """A transformer-block self-attention (as attn1 in the SD UNet): [B, N, C] tokens."""
    torch.manual_seed(0)
    return Attention(query_dim=32, heads=HEADS, dim_head=DIM_HEAD).eval()


def spatial_attention() -> Attention:
    """An attention block as UNet2DModel builds it: [B, C, H, W] input, group norm, residual, output rescale."""
    torch.manual_seed(1)
    return Attention(32, heads=HEADS, dim_head=DIM_HEAD, norm_num_groups=8, eps=1e-6, residual_connection=True,
                     bias=True, upcast_softmax=True, rescale_output_factor=2.0, _from_deprecated_attn_block=True).eval()


def inputs(attn: Attention, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    shape = (1, 32, 3, 5) if attn.group_norm is not None else (1, 15, 32)
    return torch.randn(shape, generator=generator)


def by_hand(attn: Attention, queries_from: torch.Tensor, keys_from: torch.Tensor) -> torch.Tensor:
    """Attention of ``queries_from``'s queries on ``keys_from``'s keys and values, written out (one sample)."""
    residual = queries_from

    def tokens(x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            x = x.flatten(2).transpose(1, 2)  # [1, C, H, W] -> [1, HW, C]
        if attn.group_norm is not None:
            x = attn.group_norm(x.transpose(1, 2)).transpose(1, 2)
        return x

    def heads(x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], -1, HEADS, DIM_HEAD).transpose(1, 2)

    q, k, v = heads(attn.to_q(tokens(queries_from))), heads(attn.to_k(tokens(keys_from))), heads(attn.to_v(
        tokens(keys_from)))
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(DIM_HEAD), dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(1, -1, HEADS * DIM_HEAD)
    out = attn.to_out[1](attn.to_out[0](out))
    if queries_from.ndim == 4:
        out = out.transpose(1, 2).reshape(queries_from.shape)
    if attn.residual_connection:
        out = out + residual
    return out / attn.rescale_output_factor


ATTENTIONS = [pytest.param(token_attention, id="tokens"), pytest.param(spatial_attention, id="group-norm-residual")]


@pytest.mark.parametrize("make", ATTENTIONS)
def test_same_reference_and_edited_gives_plain_attention(make):
    attn = make()
    x = inputs(attn, seed=0)
    batch = torch.cat([x, x])
    with torch.no_grad():
        mutual = MutualSelfAttentionProcessor(MutualAttentionSwitch(active=True))(attn, batch)
        plain = AttnProcessor2_0()(attn, batch)
    assert mutual.shape == batch.shape
    torch.testing.assert_close(mutual, plain, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("make", ATTENTIONS)
def test_edited_half_reads_the_reference_keys_and_values(make):
    attn = make()
    reference, edited = inputs(attn, seed=0), inputs(attn, seed=1)
    with torch.no_grad():
        out = MutualSelfAttentionProcessor(MutualAttentionSwitch(active=True))(attn, torch.cat([reference, edited]))
        expected_edited = by_hand(attn, edited, reference)
        expected_reference = by_hand(attn, reference, reference)
        plain_edited = by_hand(attn, edited, edited)
    torch.testing.assert_close(out[1:], expected_edited, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[:1], expected_reference, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # the hand formula is diffusers' attention where queries and keys come from one input
        torch.testing.assert_close(expected_reference, AttnProcessor2_0()(attn, reference), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out[1:], plain_edited, atol=1e-3)  # the inputs differ enough to tell them apart


@pytest.mark.parametrize("make", ATTENTIONS)
def test_inactive_switch_gives_plain_attention(make):
    attn = make()
    batch = torch.cat([inputs(attn, seed=0), inputs(attn, seed=1)])
    switch = MutualAttentionSwitch(active=False)
    processor = MutualSelfAttentionProcessor(switch)
    with torch.no_grad():
        off = processor(attn, batch)
        plain = AttnProcessor2_0()(attn, batch)
        switch.active = True
        on = processor(attn, batch)
    torch.testing.assert_close(off, plain, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(on, plain, atol=1e-3)  # the same processor object follows the shared switch


def test_cross_attention_is_untouched():
    torch.manual_seed(2)
    attn = Attention(query_dim=32, cross_attention_dim=16, heads=HEADS, dim_head=DIM_HEAD).eval()
    generator = torch.Generator().manual_seed(3)
    hidden = torch.randn(2, 15, 32, generator=generator)
    context = torch.randn(2, 7, 16, generator=generator)
    with torch.no_grad():
        mutual = MutualSelfAttentionProcessor(MutualAttentionSwitch(active=True))(attn, hidden, context)
        plain = AttnProcessor2_0()(attn, hidden, context)
    torch.testing.assert_close(mutual, plain, atol=1e-6, rtol=1e-6)


def test_odd_batch_gives_plain_attention():
    attn = token_attention()
    x = torch.randn(3, 15, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        mutual = MutualSelfAttentionProcessor(MutualAttentionSwitch(active=True))(attn, x)
        plain = AttnProcessor2_0()(attn, x)
    torch.testing.assert_close(mutual, plain, atol=1e-6, rtol=1e-6)


# ------------------------------------------------------------------------------------------ on the tiny UNet

TINY_SELF_ATTENTION = [  # attention-module names; a trailing ".processor" (attn_processors' keys) is ignored
    "down_blocks.1.attentions.0.transformer_blocks.0.attn1",
    "mid_block.attentions.0.transformer_blocks.0.attn1",
    "up_blocks.0.attentions.0.transformer_blocks.0.attn1",
    "up_blocks.0.attentions.1.transformer_blocks.0.attn1",
]


def module_names(names) -> list[str]:
    return [name.removesuffix(".processor") for name in names]


def test_self_attention_layers_lists_attn1_in_execution_order(tiny_sd):
    unet = tiny_sd.backbone.unet
    assert len(unet.attn_processors) == 8  # four self- and four cross-attention layers
    # the UNet registers up_blocks before mid_block, so its own order is not the execution order
    assert module_names(self_attention_layers(unet)) == TINY_SELF_ATTENTION


def test_mutual_attention_processors_cover_layers_from_the_start_layer(tiny_sd):
    unet = tiny_sd.backbone.unet
    switch = MutualAttentionSwitch()
    processors = mutual_attention_processors(unet, start_layer=2, switch=switch)
    assert module_names(processors) == TINY_SELF_ATTENTION[1:]
    assert all(isinstance(p, MutualSelfAttentionProcessor) and p.switch is switch for p in processors.values())
    assert module_names(mutual_attention_processors(unet, start_layer=1, switch=switch)) == TINY_SELF_ATTENTION


def test_mutual_attention_on_the_unet_keeps_the_reference_branch(tiny_sd):
    """Installed in the UNet, the processors leave the reference half as a lone forward and change the edited half."""
    backbone = tiny_sd.backbone
    conditioning = backbone.encode_prompt("")
    generator = torch.Generator().manual_seed(5)
    reference, edited = torch.randn(1, 4, 8, 8, generator=generator), torch.randn(1, 4, 8, 8, generator=generator)
    with torch.no_grad():
        alone = backbone.predict(edited, 501, conditioning)
        alone_reference = backbone.predict(reference, 501, conditioning)
        processors = mutual_attention_processors(backbone.unet, 2, MutualAttentionSwitch(active=True))
        modules = {name: backbone.unet.get_submodule(name) for name in module_names(processors)}
        previous = {name: module.get_processor() for name, module in modules.items()}
        try:
            for name, processor in zip(modules, processors.values(), strict=True):
                modules[name].set_processor(processor)
            both = backbone.predict(torch.cat([reference, edited]), 501, conditioning)
        finally:
            for name, processor in previous.items():
                modules[name].set_processor(processor)
    torch.testing.assert_close(both[:1], alone_reference, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(both[1:], alone, atol=1e-4)
