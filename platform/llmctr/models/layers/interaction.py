from __future__ import annotations

import torch
from torch import nn


class FactorizationMachine(nn.Module):
    """Second-order FM term: 0.5 * sum_d[(sum_f e_fd)^2 - sum_f e_fd^2], over [B, F, D] → [B]."""

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        square_of_sum = emb.sum(dim=1).pow(2)
        sum_of_square = emb.pow(2).sum(dim=1)
        return 0.5 * (square_of_sum - sum_of_square).sum(dim=1)
