"""Multi-head self-attention over fields (AutoInt's interacting layer)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MultiHeadSelfAttention(nn.Module):
    """[B, F, d_in] → [B, F, d_att]: relu(MultiHead(X W_q, X W_k, X W_v) + X W_res) (AutoInt, Song et al. 2019).

    ``use_scale=False`` (AutoInt's choice) leaves the dot products unscaled; ``W_res`` is the identity when
    ``d_in == d_att``."""

    def __init__(self, input_dim: int, attention_dim: int, num_heads: int = 1, dropout: float = 0.0,
                 use_residual: bool = True, use_scale: bool = False, layer_norm: bool = False):
        super().__init__()
        if attention_dim % num_heads:
            raise ValueError(f"attention_dim={attention_dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.dropout = dropout
        self.scale = None if use_scale else 1.0
        self.qkv = nn.Linear(input_dim, 3 * attention_dim, bias=False)
        self.residual = None
        if use_residual:
            self.residual = (nn.Identity() if input_dim == attention_dim
                             else nn.Linear(input_dim, attention_dim, bias=False))
        self.norm = nn.LayerNorm(attention_dim) if layer_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, f, _ = x.shape
        q, k, v = self.qkv(x).view(b, f, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                             scale=self.scale)
        out = out.transpose(1, 2).reshape(b, f, -1)
        if self.residual is not None:
            out = out + self.residual(x)
        if self.norm is not None:
            out = self.norm(out)
        return out.relu()
