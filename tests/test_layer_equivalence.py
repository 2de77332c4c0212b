"""Layers restructured for speed compute the same function (and gradients) as the textbook formulation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from llmctr.models.layers import MultiHeadSelfAttention


def reference_attention(layer: MultiHeadSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """relu(softmax(Q Kᵀ · scale) V + residual) per head with torch's SDPA, [B, F, d] → [B, F, d_att]."""
    b, f, _ = x.shape
    q, k, v = layer.qkv(x).view(b, f, 3, layer.num_heads, -1).permute(2, 0, 3, 1, 4)
    out = F.scaled_dot_product_attention(q, k, v, scale=layer.scale).transpose(1, 2).reshape(b, f, -1)
    if layer.residual is not None:
        out = out + layer.residual(x)
    if layer.norm is not None:
        out = layer.norm(out)
    return out.relu()


@pytest.mark.parametrize("input_dim,att_dim,heads,use_scale,residual,layer_norm", [
    (16, 32, 2, False, True, False), (32, 32, 2, True, True, False), (8, 24, 3, False, False, True),
    (32, 32, 1, True, True, True)])
def test_attention_matches_sdpa(input_dim, att_dim, heads, use_scale, residual, layer_norm):
    torch.manual_seed(0)
    layer = MultiHeadSelfAttention(input_dim, att_dim, heads, use_residual=residual, use_scale=use_scale,
                                   layer_norm=layer_norm)
    x = torch.randn(64, 7, input_dim, requires_grad=True)
    out = layer(x)
    ref = reference_attention(layer, x)
    assert torch.allclose(out, ref, rtol=1e-5, atol=1e-6)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, [x, *layer.parameters()], grad)
    want = torch.autograd.grad(ref, [x, *layer.parameters()], grad)
    for g, w in zip(got, want):
        assert torch.allclose(g, w, rtol=1e-4, atol=1e-5)


def test_attention_scale():
    layer = MultiHeadSelfAttention(8, 16, 2, use_scale=True)
    assert layer.scale == pytest.approx(8 ** -0.5)
    assert MultiHeadSelfAttention(8, 16, 2, use_scale=False).scale == 1.0
