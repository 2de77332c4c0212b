"""FwFM (Pan et al., 2018): y = w0 + sum_i w_i + sum_{i<j} r_{f(i),f(j)} <e_i, e_j>.

One learnt weight r per field pair (initialised to 1, i.e. FM at the start). The first-order term is the
per-feature bias of the wrapping model (the paper's "LW" linear term). Representation:
sum_{i<j} r_ij e_i ⊙ e_j [B, D], followed by the extra vector's hidden layer when ``extra_dim > 0``.
"""

from __future__ import annotations

import torch
from torch import nn

from llmctr.models.backbones.base import Backbone
from llmctr.models.layers import ExtraHead, FieldPairs
from llmctr.models.registry import register


@register("fwfm")
class FwFM(Backbone):
    first_order = True

    def __init__(self, num_fields: int, embedding_dim: int, extra_dim: int = 0):
        super().__init__(num_fields, embedding_dim, extra_dim)
        self.pairs = FieldPairs(num_fields)
        self.pair_weight = nn.Parameter(torch.ones(self.pairs.num_pairs))
        self.extra_head = ExtraHead(extra_dim, embedding_dim)
        self.representation_dim = embedding_dim + self.extra_head.output_dim

    def forward(self, emb: torch.Tensor, extra: torch.Tensor | None = None):
        left, right = self.pairs(emb)
        vec = torch.einsum("bpd,p->bd", left * right, self.pair_weight)
        return self.extra_head(vec.sum(dim=1), vec, extra)
