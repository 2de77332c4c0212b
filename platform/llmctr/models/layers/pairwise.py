"""Pairwise field interactions: Bi-Interaction pooling and the (left, right) embeddings of every field pair."""

from __future__ import annotations

import torch
from torch import nn


def bi_interaction(emb: torch.Tensor) -> torch.Tensor:
    """sum_{i<j} e_i ⊙ e_j over [B, F, D] → [B, D] (its sum over D is the FM second-order term)."""
    return 0.5 * (emb.sum(dim=1).pow(2) - emb.pow(2).sum(dim=1))


class FieldPairs(nn.Module):
    """The embeddings of every field pair i < j: [B, F, D] → (left [B, P, D], right [B, P, D]), P = F(F-1)/2."""

    def __init__(self, num_fields: int):
        super().__init__()
        left, right = torch.triu_indices(num_fields, num_fields, offset=1)
        self.register_buffer("left", left, persistent=False)
        self.register_buffer("right", right, persistent=False)
        self.num_pairs = len(left)

    def forward(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return emb.index_select(1, self.left), emb.index_select(1, self.right)
