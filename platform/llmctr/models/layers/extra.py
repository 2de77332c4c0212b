"""The extra per-sample vector for backbones without a DNN (FM family): a small ReLU layer adds a logit term."""

from __future__ import annotations

import torch
from torch import nn

from llmctr.models.layers.mlp import MLP


class ExtraHead(nn.Module):
    """``extra [B, E]`` → hidden ``h = relu(W extra + b) [B, H]``; adds ``w·h`` to the logit and appends ``h``
    to the representation. With ``extra_dim == 0`` it is the identity and ``output_dim`` is 0."""

    def __init__(self, extra_dim: int, hidden_dim: int):
        super().__init__()
        self.mlp = MLP(extra_dim, [hidden_dim], output_dim=None) if extra_dim else None
        self.out = nn.Linear(hidden_dim, 1) if extra_dim else None
        self.output_dim = hidden_dim if extra_dim else 0

    def forward(self, logit: torch.Tensor, rep: torch.Tensor, extra: torch.Tensor | None):
        if self.mlp is None:
            if extra is not None:
                raise ValueError("got an extra vector but this backbone was built with extra_dim=0")
            return logit, rep
        if extra is None:
            raise ValueError("this backbone was built with extra_dim > 0 but got no extra vector")
        h = self.mlp(extra)
        return logit + self.out(h).squeeze(-1), torch.cat([rep, h], dim=1)
