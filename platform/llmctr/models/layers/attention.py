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
        self.scale = (attention_dim // num_heads) ** -0.5 if use_scale else 1.0
        self.qkv = nn.Linear(input_dim, 3 * attention_dim, bias=False)
        self.residual = None
        if use_residual:
            self.residual = (nn.Identity() if input_dim == attention_dim
                             else nn.Linear(input_dim, attention_dim, bias=False))
        self.norm = nn.LayerNorm(attention_dim) if layer_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, f, _ = x.shape
        h = self.num_heads
        # heads folded into the batch: q, k, v [B*H, F, d_head]
        q, k, v = self.qkv(x).view(b, f, 3, h, -1).permute(2, 0, 3, 1, 4).reshape(3, b * h, f, -1)
        # Scores laid out [B*H, key, query] so the softmax reduces over a strided dim (size F): on CPU, softmax
        # over a short last dim is ~2.4x slower (fwd+bwd on [8192, 7, 7]: 4.7 vs 1.95 ms). Same maths as SDPA.
        scores_t = torch.bmm(k, q.transpose(1, 2))
        if self.scale != 1.0:
            scores_t = scores_t * self.scale
        attn_t = scores_t.softmax(dim=1)
        if self.training and self.dropout > 0:
            attn_t = F.dropout(attn_t, self.dropout)
        out = torch.bmm(attn_t.transpose(1, 2), v).view(b, h, f, -1).transpose(1, 2).reshape(b, f, -1)
        if self.residual is not None:
            out = out + self.residual(x)
        if self.norm is not None:
            out = self.norm(out)
        return out.relu()
