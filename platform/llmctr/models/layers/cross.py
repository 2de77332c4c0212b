"""Cross network v2 (Wang et al., DCN-V2, 2021) with full-rank cross matrices."""

from __future__ import annotations

import torch
from torch import nn


class CrossNetV2(nn.Module):
    """x_{l+1} = x_0 ⊙ (W_l x_l + b_l) + x_l, for l = 0..num_layers-1; [B, d] → [B, d]."""

    def __init__(self, input_dim: int, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(input_dim, input_dim) for _ in range(num_layers))
        self.output_dim = input_dim

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = x + x0 * layer(x)
        return x
