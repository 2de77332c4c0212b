"""AutoInt (Song et al., 2019): stacked multi-head self-attention "interacting layers" with residual
connections over the field embeddings; with ``hidden_units`` it is AutoInt+ (a parallel DNN).

y = w·[flatten(attention(E)); DNN(flatten(E) ⊕ extra)] + b; the representation is that concatenated vector.
Without a DNN the extra vector is concatenated to the attention output directly.
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn

from llmctr.models.backbones.base import Backbone
from llmctr.models.layers import MLP, MultiHeadSelfAttention
from llmctr.models.registry import register


@register("autoint")
class AutoInt(Backbone):
    def __init__(self, num_fields: int, embedding_dim: int, extra_dim: int = 0,
                 attention_layers: int = 3, num_heads: int = 2, attention_dim: int = 32,
                 use_residual: bool = True, use_scale: bool = False, layer_norm: bool = False,
                 hidden_units: list[int] = (400, 400), activation: str = "relu", dropout: float = 0.0,
                 batch_norm: bool = False):
        super().__init__(num_fields, embedding_dim, extra_dim)
        dims = [embedding_dim] + [attention_dim] * attention_layers
        self.attention = nn.Sequential(*(
            MultiHeadSelfAttention(d_in, d_out, num_heads, dropout, use_residual, use_scale, layer_norm)
            for d_in, d_out in pairwise(dims)))
        self.dnn = None
        if hidden_units:
            self.dnn = MLP(num_fields * embedding_dim + extra_dim, list(hidden_units), activation, dropout,
                           batch_norm)
        self.representation_dim = num_fields * dims[-1] + (self.dnn.output_dim if self.dnn else extra_dim)
        self.head = nn.Linear(self.representation_dim, 1)

    def forward(self, emb: torch.Tensor, extra: torch.Tensor | None = None):
        parts = [self.attention(emb).flatten(1)]
        if self.dnn is not None:
            parts.append(self.dnn(self.flat_input(emb, extra)))
        elif extra is not None:
            parts.append(extra)
        rep = torch.cat(parts, dim=1)
        return self.head(rep).squeeze(-1), rep
