from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn


class Backbone(nn.Module):
    """Every backbone: field embeddings [B, F, D] (+ optional extra per-sample vector [B, E]) in,
    ``(logit [B], representation [B, H])`` out, where ``representation`` is the last hidden vector.

    ``first_order``: the wrapping model adds a learnt per-feature bias term (FM family).
    """

    first_order: ClassVar[bool] = False
    representation_dim: int

    def __init__(self, num_fields: int, embedding_dim: int, extra_dim: int = 0):
        super().__init__()
        self.num_fields = num_fields
        self.embedding_dim = embedding_dim
        self.extra_dim = extra_dim

    @staticmethod
    def flat_input(emb: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
        """Flattened embeddings with the extra vector concatenated (the DNN-side input)."""
        flat = emb.flatten(1)
        return flat if extra is None else torch.cat([flat, extra], dim=1)
