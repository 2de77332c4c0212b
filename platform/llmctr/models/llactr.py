"""LLaCTR plug-ins (Cui et al., 2025, "Field Matters", arXiv 2505.14057): field-level semantic knowledge from an
LLM encoder enhances any backbone of the zoo.

- FRE (feature representation enhancement): a linear adaptor maps each field's semantic vector h_k into the
  CTR embedding space; a KL term pulls the softmax of every feature embedding of field k towards the softmax
  of its adapted field vector: L_KL = KL(softmax(W h_k + b) || softmax(e_k)), summed over fields, averaged over
  the batch (the authors' code), weighted by ``lambda_kl``. Training only: it adds a loss, not a logit.
- FIE (feature interaction enhancement): m_kl = cos(h_k, h_l) for every field pair k < l, a linear adaptor
  over the pair vector gives m'_kl, and y_FIE = sum_{k<l} m'_kl <e_k, e_l> is added to the logit with weight
  ``lambda_fm``. At serving time the only extra cost is this pairwise term.

Defaults lambda_kl = lambda_fm = 0.1: the middle of the authors' grid ({0.01, 0.05, 0.1, 0.3, 0.5, 0.7}).
Deviations (opt-in): ``fre_target: feature`` takes the target from each feature's own semantic vector (rows of
the feature table, aligned with the feature-map ids) instead of its field's; ``fre_target: entity`` does the same
but describes the key field of each entity of the dataset YAML (ML-1M: ``user_id``, ``movie_id``) by its entity
text ("The movie's title and release year is ... The movie's genres are ...") instead of "The movie's id is
1193.", which carries nothing. Those tables are non-persistent buffers, present only when the model is built for
training with the semantic tables.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic.dataclasses import dataclass
from torch import nn

from llmctr.config import STRICT


@dataclass(config=STRICT)
class LLaCTRConfig:
    """Switches and weights of the plug-ins. ``semantic_dim`` is filled in from the semantic tables when the
    model is first built, so a saved artifact can be rebuilt without them."""

    fre: bool = True
    fie: bool = True
    lambda_kl: float = 0.1
    lambda_fm: float = 0.1
    fre_target: Literal["field", "feature", "entity"] = "field"
    semantic_dim: int = 0


class LLaCTRPlugin(nn.Module):
    """FRE + FIE around the [B, F, D] field embeddings of a CTR model.

    ``field_semantics`` [F, S] (persistent: FIE needs it at inference) is ordered like the model's input fields.
    ``feature_semantics``: {field name: [vocab, S]} for ``fre_target: feature | entity`` (training only; for
    ``entity`` the caller has already put the entity tables in place of the key fields' feature tables).
    """

    def __init__(self, field_names: list[str], embedding_dim: int, config: LLaCTRConfig,
                 field_semantics: torch.Tensor | None = None,
                 feature_semantics: dict[str, torch.Tensor] | None = None):
        super().__init__()
        if config.semantic_dim <= 0:
            raise ValueError("LLaCTRConfig.semantic_dim is unset: build the model with the semantic tables")
        num_fields, dim = len(field_names), config.semantic_dim
        self.config = config
        self.field_names = list(field_names)
        if field_semantics is None:
            field_semantics = torch.zeros(num_fields, dim)
        if tuple(field_semantics.shape) != (num_fields, dim):
            raise ValueError(f"field semantics of shape {tuple(field_semantics.shape)}, expected ({num_fields}, {dim})")
        self.register_buffer("field_semantics", field_semantics.float().clone())
        left, right = torch.triu_indices(num_fields, num_fields, offset=1)
        self.register_buffer("left", left, persistent=False)
        self.register_buffer("right", right, persistent=False)
        self.fre_adaptor = nn.Linear(dim, embedding_dim) if config.fre else None
        self.fie_adaptor = None
        if config.fie and len(left) > 0:
            self.fie_adaptor = nn.Linear(len(left), len(left))
            # start at m' = m (the cosine similarities); the authors' code starts from PyTorch's random init
            nn.init.eye_(self.fie_adaptor.weight)
            nn.init.zeros_(self.fie_adaptor.bias)
        self.feature_fields: list[tuple[int, str]] = []
        if config.fre and config.fre_target != "field" and feature_semantics:
            for i, name in enumerate(self.field_names):
                if name in feature_semantics:
                    table = torch.as_tensor(np.asarray(feature_semantics[name]), dtype=torch.float32)
                    self.register_buffer(f"feature_semantics_{i}", table, persistent=False)
                    self.feature_fields.append((i, name))

    def pair_weights(self) -> torch.Tensor:
        """m'_kl for every field pair k < l: [P]."""
        h = F.normalize(self.field_semantics, dim=-1)
        similarity = (h[self.left] * h[self.right]).sum(-1)
        return self.fie_adaptor(similarity)

    def interaction_logit(self, emb: torch.Tensor) -> torch.Tensor:
        """FIE's term sum_{k<l} m'_kl <e_k, e_l> [B], scaled by lambda_fm."""
        inner = (emb.index_select(1, self.left) * emb.index_select(1, self.right)).sum(-1)
        return self.config.lambda_fm * (inner @ self.pair_weights())

    def fre_targets(self, features: dict[str, torch.Tensor], batch_size: int) -> torch.Tensor:
        """Semantic vectors per sample and field [B, F, S] (or [1, F, S] when they are per field only)."""
        target = self.field_semantics.unsqueeze(0)
        if not self.feature_fields:
            return target
        target = target.expand(batch_size, -1, -1).clone()
        for i, name in self.feature_fields:
            ids = features[name]
            table = getattr(self, f"feature_semantics_{i}")
            if ids.dim() == 1:
                target[:, i] = table[ids]
            else:  # multi-valued: mean over the non-padding ids
                mask = (ids != 0).unsqueeze(-1).to(table.dtype)
                target[:, i] = (table[ids] * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return target

    def kl_loss(self, emb: torch.Tensor, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """FRE's KL(softmax(adapted semantics) || softmax(e)), summed over fields, batch mean, times lambda_kl."""
        target = self.fre_adaptor(self.fre_targets(features, emb.shape[0])).expand_as(emb)
        kl = F.kl_div(F.log_softmax(emb, dim=-1), F.log_softmax(target, dim=-1), reduction="batchmean",
                      log_target=True)
        return self.config.lambda_kl * kl

    def forward(self, emb: torch.Tensor, features: dict[str, torch.Tensor]
                ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(logit term or None, auxiliary loss or None; the loss only while training)."""
        logit = self.interaction_logit(emb) if self.fie_adaptor is not None else None
        aux = self.kl_loss(emb, features) if self.fre_adaptor is not None and self.training else None
        return logit, aux
