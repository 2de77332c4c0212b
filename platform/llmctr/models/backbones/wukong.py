"""WuKong (Zhang et al., 2024), as in FuxiCTR: ``num_layers`` stacked layers over X [B, F, D], each
X ← LayerNorm(X + W·[FMB(X); LCB(X)]), then an MLP over flatten(X) (⊕ extra).

FMB(X) = ReLU(MLP(LayerNorm(flatten(X Xᵀ Y)))) with Y [F, k] a learnt projection (an optimised FM over all
field pairs); LCB(X) = Dropout(W_c flatten(X)) (a linear compression). Representation: the MLP's last hidden.
"""

from __future__ import annotations

import torch
from torch import nn

from llmctr.models.backbones.base import Backbone
from llmctr.models.layers import MLP
from llmctr.models.registry import register


class WuKongLayer(nn.Module):
    def __init__(self, num_fields: int, embedding_dim: int, project_dim: int, fmb_units: list[int],
                 fmb_dim: int, compression_dim: int, dropout: float):
        super().__init__()
        width = num_fields * embedding_dim
        self.projection = nn.Parameter(torch.randn(num_fields, project_dim))
        self.fmb = nn.Sequential(nn.LayerNorm(num_fields * project_dim),
                                 MLP(num_fields * project_dim, list(fmb_units), output_dim=fmb_dim), nn.ReLU())
        self.lcb = nn.Sequential(nn.Linear(width, compression_dim), nn.Dropout(dropout))
        self.transform = nn.Linear(fmb_dim + compression_dim, width)
        self.norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        fm = torch.bmm(x, torch.matmul(x.transpose(1, 2), self.projection))  # X Xᵀ Y: [B, F, k]
        out = self.transform(torch.cat([self.fmb(fm.flatten(1)), self.lcb(flat)], dim=1))
        return self.norm(out + flat).view_as(x)


@register("wukong")
class WuKong(Backbone):
    def __init__(self, num_fields: int, embedding_dim: int, extra_dim: int = 0,
                 num_layers: int = 3, compression_dim: int = 40, fmb_units: list[int] = (200, 200),
                 fmb_dim: int = 40, project_dim: int = 8, dropout: float = 0.2,
                 hidden_units: list[int] = (32, 32), activation: str = "relu", mlp_dropout: float = 0.0,
                 batch_norm: bool = False):
        super().__init__(num_fields, embedding_dim, extra_dim)
        self.layers = nn.Sequential(*(
            WuKongLayer(num_fields, embedding_dim, project_dim, fmb_units, fmb_dim, compression_dim, dropout)
            for _ in range(num_layers)))
        self.mlp = MLP(num_fields * embedding_dim + extra_dim, list(hidden_units), activation, mlp_dropout,
                       batch_norm)
        self.head = nn.Linear(self.mlp.output_dim, 1)
        self.representation_dim = self.mlp.output_dim

    def forward(self, emb: torch.Tensor, extra: torch.Tensor | None = None):
        rep = self.mlp(self.flat_input(self.layers(emb), extra))
        return self.head(rep).squeeze(-1), rep
