"""The history layer: a user's behaviour history (a sequence field) pooled into one more field embedding.

The pooled vector enters the backbone as field F+1 of its [B, F+1, D] input, so every backbone of the zoo gains the
history without changing its file. ``target_attention`` is DIN's local activation unit (Zhou et al., 2018,
arXiv 1706.06978): the candidate item's embedding scores each history item, so the same history says different
things about different candidates; ``mean`` is the order- and candidate-blind baseline.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic.dataclasses import dataclass
from torch import nn

from llmctr.config import STRICT
from llmctr.models.layers.embedding import FieldInput
from llmctr.models.layers.mlp import MLP
from llmctr.models.layers.semantic_history import SemanticHistoryConfig


@dataclass(config=STRICT)
class HistoryConfig:
    """``history:`` of a model config. ``split_by_label``: liked and disliked items (the sequence's labels) are
    pooled apart and the two vectors projected back to D, so a disliked item cannot pass for a liked one; it has
    no effect on a sequence without labels. ``field``: which sequence field (None: the only one)."""

    pooling: Literal["target_attention", "mean"] = "target_attention"
    #: hidden units of DIN's attention MLP over [q, k, q - k, q * k]
    attention_units: list[int] = (64, 32)
    split_by_label: bool = True
    #: in training, each history position is dropped with this probability (a set-level dropout: the model cannot
    #: lean on any one remembered item, and a history does not act as a second user id)
    item_dropout: float = 0.0
    #: the history reads the item embeddings without training them (only the candidate position trains them)
    stop_gradient: bool = False
    #: pool only the most recent ``max_len`` entries of the sequence field (None: all it holds)
    max_len: int | None = None
    field: str | None = None
    #: the history also read through the items' LLM vectors (layers/semantic_history.py); None: ids only
    semantic: SemanticHistoryConfig | None = None

    def __post_init__(self) -> None:
        self.attention_units = list(self.attention_units)
        if not 0.0 <= self.item_dropout < 1.0:
            raise ValueError(f"history.item_dropout must be in [0, 1), got {self.item_dropout}")
        if self.max_len is not None and self.max_len < 1:
            raise ValueError(f"history.max_len must be at least 1, got {self.max_len}")

    def pick_field(self, fields: list[FieldInput]) -> FieldInput:
        """The sequence field this config pools, or a ValueError naming the fields there are."""
        sequences = [f for f in fields if f.kind == "sequence"]
        names = [f.name for f in fields]
        if not sequences:
            raise ValueError(f"model config has 'history' but no input field is a sequence (fields: {names})")
        if self.field is None:
            if len(sequences) > 1:
                raise ValueError(f"several sequence fields {[f.name for f in sequences]}: name one in history.field")
            return sequences[0]
        for f in sequences:
            if f.name == self.field:
                return f
        raise ValueError(f"history.field {self.field!r} is not a sequence field; sequence fields: "
                         f"{[f.name for f in sequences]} (fields: {names})")


class HistoryPooling(nn.Module):
    """(candidate [B, D], history [B, L, D], mask [B, L] bool, labels [B, L] or None) → [B, D].

    Attention weights are a softmax over the non-padding positions, not DIN's unnormalised scores: the pooled
    vector then stays on the scale of one item embedding whatever the history length, which matters here because
    it is one more field beside the others (the FM family takes its dot products with them as they are); how
    *many* liked items there are is what DIN's unnormalised sum keeps and this drops. Padding gets a large
    negative score and its weight is zeroed after the softmax, so padding contributes exactly nothing and an
    all-padding row (or an empty liked/disliked half) pools to the zero vector, never NaN.
    """

    def __init__(self, dim: int, config: HistoryConfig, split: bool):
        super().__init__()
        self.config = config
        self.split = split
        self.attention = None
        if config.pooling == "target_attention":  # PReLU: DIN's activation before its Dice
            self.attention = MLP(4 * dim, config.attention_units, activation="prelu", output_dim=1)
        self.project = nn.Linear(2 * dim, dim) if split else None

    def forward(self, candidate: torch.Tensor, history: torch.Tensor, mask: torch.Tensor,
                labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.config.stop_gradient:
            history = history.detach()
        if self.training and self.config.item_dropout > 0:
            mask = mask & (torch.rand(mask.shape, device=mask.device) >= self.config.item_dropout)
        history = history.masked_fill(~mask.unsqueeze(-1), 0.0)
        scores = None if self.attention is None else self.scores(candidate, history)
        if self.project is None:
            return self._pool(history, mask, scores)
        if labels is None:
            raise ValueError("this history layer pools liked and disliked items apart but got no history labels")
        liked = labels == 1
        halves = [self._pool(history, mask & liked, scores), self._pool(history, mask & ~liked, scores)]
        return self.project(torch.cat(halves, dim=-1))

    def scores(self, candidate: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """[B, L]: DIN's attention MLP over [q, k, q - k, q * k] per position (one score shared by the liked and
        disliked pools). Its first layer is computed by parts, q (Wq + Wd) + k (Wk - Wd) + (q * k) Wp, which equals
        the layer on the concatenation but takes the candidate's term once per row and never builds [B, L, 4D]."""
        first, *rest = self.attention
        wq, wk, wd, wp = first.weight.split(candidate.shape[-1], dim=1)
        per_row = torch.addmm(first.bias, candidate, (wq + wd).T).unsqueeze(1)
        hidden = history @ (wk - wd).T + (candidate.unsqueeze(1) * history) @ wp.T + per_row
        for layer in rest:
            hidden = layer(hidden)
        return hidden.squeeze(-1)

    @staticmethod
    def _pool(history: torch.Tensor, mask: torch.Tensor, scores: torch.Tensor | None) -> torch.Tensor:
        weights = mask.to(history.dtype)
        if scores is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
            weights = torch.softmax(scores, dim=-1) * weights
        else:
            weights = weights / weights.sum(-1, keepdim=True).clamp(min=1.0)
        return torch.einsum("bl,bld->bd", weights, history)
