"""FinalMLP (Mao et al., 2023): two MLP streams over feature-selected inputs, fused by multi-head bilinear
aggregation.

x_k = 2·sigmoid(MLP_gk(c_k)) ⊙ [flatten(E) ⊕ extra] (c_k: a learnt context vector, or the embeddings
of the fields listed in ``fs{k}_context``, by index); h_k = MLP_k(x_k);
y = w_1·h_1 + w_2·h_2 + sum_heads h_1h^T W_h h_2h + b. Representation: [h_1; h_2].
"""

from __future__ import annotations

import torch
from torch import nn

from llmctr.config import ConfigError
from llmctr.models.backbones.base import Backbone
from llmctr.models.layers import MLP
from llmctr.models.registry import register


class FeatureGate(nn.Module):
    """Stream-specific feature selection: input ⊙ 2·sigmoid(MLP(context))."""

    def __init__(self, num_fields: int, embedding_dim: int, context: list[int], hidden_units: list[int],
                 output_dim: int):
        super().__init__()
        if any(not 0 <= i < num_fields for i in context):
            raise ConfigError(f"finalmlp: context field indices {context} out of range [0, {num_fields})")
        self.context = list(context)
        self.bias = None if self.context else nn.Parameter(torch.zeros(1, embedding_dim))
        self.gate = MLP(embedding_dim * max(1, len(self.context)), list(hidden_units), output_dim=output_dim)

    def forward(self, emb: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx = self.bias.expand(len(x), -1) if self.bias is not None else emb[:, self.context].flatten(1)
        return x * 2 * torch.sigmoid(self.gate(ctx))


class BilinearFusion(nn.Module):
    """y = w_x·x + w_y·y + b + sum_h x_h^T W_h y_h with x, y split into ``num_heads`` chunks."""

    def __init__(self, x_dim: int, y_dim: int, num_heads: int):
        super().__init__()
        if x_dim % num_heads or y_dim % num_heads:
            raise ConfigError(f"finalmlp: stream output dims {x_dim}, {y_dim} not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.w_x, self.w_y = nn.Linear(x_dim, 1), nn.Linear(y_dim, 1, bias=False)
        w = torch.empty(num_heads, x_dim // num_heads, y_dim // num_heads)
        self.w_xy = nn.Parameter(nn.init.normal_(w, std=(2.0 / (1 + w.numel())) ** 0.5))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        hx, hy = x.view(len(x), self.num_heads, -1), y.view(len(y), self.num_heads, -1)
        bilinear = (torch.einsum("bhi,hij->bhj", hx, self.w_xy) * hy).sum(dim=(1, 2))
        return (self.w_x(x) + self.w_y(y)).squeeze(-1) + bilinear


@register("finalmlp")
class FinalMLP(Backbone):
    def __init__(self, num_fields: int, embedding_dim: int, extra_dim: int = 0,
                 mlp1_hidden_units: list[int] = (400, 400, 400), mlp2_hidden_units: list[int] = (800,),
                 activation: str = "relu", dropout: float = 0.0, batch_norm: bool = False,
                 use_fs: bool = True, fs_hidden_units: list[int] = (800,), fs1_context: list[int] = (),
                 fs2_context: list[int] = (), num_heads: int = 2):
        super().__init__(num_fields, embedding_dim, extra_dim)
        input_dim = num_fields * embedding_dim + extra_dim
        self.gates = None
        if use_fs:
            self.gates = nn.ModuleList(FeatureGate(num_fields, embedding_dim, ctx, fs_hidden_units, input_dim)
                                       for ctx in (fs1_context, fs2_context))
        self.mlp1 = MLP(input_dim, list(mlp1_hidden_units), activation, dropout, batch_norm)
        self.mlp2 = MLP(input_dim, list(mlp2_hidden_units), activation, dropout, batch_norm)
        self.fusion = BilinearFusion(self.mlp1.output_dim, self.mlp2.output_dim, num_heads)
        self.representation_dim = self.mlp1.output_dim + self.mlp2.output_dim

    def forward(self, emb: torch.Tensor, extra: torch.Tensor | None = None):
        x = self.flat_input(emb, extra)
        x1, x2 = (x, x) if self.gates is None else (self.gates[0](emb, x), self.gates[1](emb, x))
        h1, h2 = self.mlp1(x1), self.mlp2(x2)
        return self.fusion(h1, h2), torch.cat([h1, h2], dim=1)
