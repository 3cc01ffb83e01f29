"""Finding multi-head attention in a model, and its heads' channels, in both projection layouts."""

from __future__ import annotations

import pytest
import torch
from models import SeparateProjectionAttention, separate_projections, tiny_vit

from fastdfkd_plugin import FastDFKDError
from fastdfkd_plugin.teacher.attention import (
    attention_modules,
    head_channels,
    head_width,
    prunable_attention,
    set_head_count,
    value_channels,
)
from fastdfkd_plugin.teacher.loading import fit_layers_to_state_dict


def test_attention_modules_are_the_outermost_ones():
    model = tiny_vit()
    found = attention_modules(model)
    assert [type(m).__name__ for m in found] == ["Attention"]
    mha = torch.nn.Sequential(torch.nn.LayerNorm(4), torch.nn.MultiheadAttention(4, 2))
    assert attention_modules(mha) == [mha[1]]


def test_prunable_attention_needs_a_head_count_and_linear_projections():
    assert list(prunable_attention(tiny_vit())) == ["blocks.0.attn"]
    assert list(prunable_attention(separate_projections())) == ["attention"]
    # PyTorch's own attention keeps its projections in one parameter, not in Linear layers
    assert prunable_attention(torch.nn.Sequential(torch.nn.MultiheadAttention(4, 2))) == {}


def test_a_fused_projection_holds_each_head_in_three_slices():
    attention = tiny_vit().blocks[0].attn  # dim 16, 2 heads: q 0–15, k 16–31, v 32–47
    assert head_width(attention) == 8
    assert head_channels(attention, 1) == [*range(8, 16), *range(24, 32), *range(40, 48)]
    assert value_channels(attention, 1) == (attention.qkv, list(range(40, 48)))


def test_separate_projections_hold_a_head_in_one_slice_each_and_keep_all_head_size():
    attention = SeparateProjectionAttention(16, 4)
    assert head_width(attention) == 4
    assert head_channels(attention, 2) == [8, 9, 10, 11]
    assert value_channels(attention, 2) == (attention.value, [8, 9, 10, 11])
    for layer in (attention.query, attention.key, attention.value):
        layer.weight.data, layer.bias.data = layer.weight.data[:8], layer.bias.data[:8]
        layer.out_features = 8
    set_head_count(attention, 2)
    assert (attention.num_attention_heads, attention.all_head_size) == (2, 8)


def test_a_file_not_pruned_by_whole_heads_is_refused_in_one_sentence():
    model = tiny_vit()
    state = {key: value[:30] if key.startswith("blocks.0.attn.qkv") else value for key, value in model.state_dict().items()}
    with pytest.raises(FastDFKDError, match="not a whole number of 8-wide heads"):
        fit_layers_to_state_dict(model, state)
