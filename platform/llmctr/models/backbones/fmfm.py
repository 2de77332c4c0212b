"""FmFM / FM² (Sun et al., 2021): y = w0 + sum_i w_i + sum_{i<j} <e_i M_{f(i),f(j)}, e_j>.

``field_interaction_type="matrixed"``: a learnt D×D matrix per field pair; ``"vectorized"``: a learnt D-vector
per field pair (FvFM). Representation: sum_{i<j} (e_i M_ij) ⊙ e_j [B, D], followed by the extra vector's
hidden layer when ``extra_dim > 0``.
"""

from __future__ import annotations

import torch
from torch import nn

from llmctr.config import ConfigError
from llmctr.models.backbones.base import Backbone
from llmctr.models.layers import ExtraHead, FieldPairs
from llmctr.models.registry import register


@register("fmfm")
class FmFM(Backbone):
    first_order = True

    def __init__(self, num_fields: int, embedding_dim: int, extra_dim: int = 0,
                 field_interaction_type: str = "matrixed"):
        super().__init__(num_fields, embedding_dim, extra_dim)
        if field_interaction_type not in ("matrixed", "vectorized"):
            raise ConfigError(f"fmfm: field_interaction_type must be 'matrixed' or 'vectorized', "
                              f"got {field_interaction_type!r}")
        self.matrixed = field_interaction_type == "matrixed"
        self.pairs = FieldPairs(num_fields)
        shape = (self.pairs.num_pairs, embedding_dim, embedding_dim) if self.matrixed else \
            (self.pairs.num_pairs, embedding_dim)
        self.pair_weight = nn.Parameter(nn.init.xavier_normal_(torch.empty(shape)))
        self.extra_head = ExtraHead(extra_dim, embedding_dim)
        self.representation_dim = embedding_dim + self.extra_head.output_dim

    def forward(self, emb: torch.Tensor, extra: torch.Tensor | None = None):
        left, right = self.pairs(emb)
        if self.matrixed:
            left = torch.einsum("bpd,pde->bpe", left, self.pair_weight)
        else:
            left = left * self.pair_weight
        vec = (left * right).sum(dim=1)
        return self.extra_head(vec.sum(dim=1), vec, extra)
