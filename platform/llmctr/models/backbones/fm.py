"""FM (Rendle, 2010): y = w0 + sum_i w_i + sum_{i<j} <e_i, e_j>.

Representation: the Bi-Interaction vector sum_{i<j} e_i ⊙ e_j [B, D] (its sum is the second-order term),
followed by the extra vector's hidden layer when ``extra_dim > 0``.
"""

from __future__ import annotations

import torch

from llmctr.models.backbones.base import Backbone
from llmctr.models.layers import ExtraHead, bi_interaction
from llmctr.models.registry import register


@register("fm")
class FM(Backbone):
    first_order = True

    def __init__(self, num_fields: int, embedding_dim: int, extra_dim: int = 0):
        super().__init__(num_fields, embedding_dim, extra_dim)
        self.extra_head = ExtraHead(extra_dim, embedding_dim)
        self.representation_dim = embedding_dim + self.extra_head.output_dim

    def forward(self, emb: torch.Tensor, extra: torch.Tensor | None = None):
        vec = bi_interaction(emb)
        return self.extra_head(vec.sum(dim=1), vec, extra)
