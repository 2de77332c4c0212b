from __future__ import annotations

import torch
from torch import nn

from llmctr.models.layers.pairwise import bi_interaction


class FactorizationMachine(nn.Module):
    """Second-order FM term: sum_{i<j} <e_i, e_j> over [B, F, D] → [B]."""

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return bi_interaction(emb).sum(dim=1)
