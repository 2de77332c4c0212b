"""Embedding of categorical, multi-valued categorical and numeric fields into one [B, F, D] tensor.

Sequence fields (behaviour histories) are not columns of that tensor: their ids live in their ``of`` field's id
space and are embedded with that field's rows (``FeatureEmbedding.lookup``) by the history layer
(``llmctr.models.layers.history``), DIN-style, so a history item and the same candidate item share one vector."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from llmctr.data.feature_map import FeatureMap


@dataclass(frozen=True)
class FieldInput:
    """What the model needs to know about one input field. A ``sequence`` field holds up to ``max_len`` ids of its
    ``of`` field (0 = padding), with a ``<name>_label`` input (1 liked, 0 disliked) when ``with_label``."""

    name: str
    kind: Literal["categorical", "multi_categorical", "numeric", "sequence"]
    vocab_size: int = 0
    of: str | None = None
    max_len: int = 0
    with_label: bool = False

    @staticmethod
    def from_feature_map(fmap: FeatureMap) -> list[FieldInput]:
        out = []
        for f in fmap.input_fields:
            if f.kind == "sequence":
                of = getattr(f, "of", None)
                out.append(FieldInput(f.name, "sequence", fmap.field(of).vocab_size if of else 0, of=of,
                                      max_len=f.max_len, with_label=bool(getattr(f, "with_label", False))))
                continue
            kind = "categorical" if (f.kind == "numeric" and f.boundaries) else f.kind
            out.append(FieldInput(f.name, kind, f.vocab_size if f.is_categorical else 0))
        return out


class FeatureEmbedding(nn.Module):
    """All single-valued categorical fields share one table (one gather per batch, offsets per field);
    multi-valued fields are mean-pooled over their non-padding ids; numeric fields scale a learnt vector.
    Sequence fields are left out (no parameters, no output column): ``lookup`` embeds their ids."""

    def __init__(self, fields: list[FieldInput], dim: int, init_std: float = 1e-4):
        super().__init__()
        fields = [f for f in fields if f.kind != "sequence"]
        self.fields = fields
        self.dim = dim
        self.cat_names = [f.name for f in fields if f.kind == "categorical"]
        sizes = [f.vocab_size for f in fields if f.kind == "categorical"]
        offsets = torch.tensor([0, *sizes[:-1]], dtype=torch.long).cumsum(0) if sizes else torch.zeros(0)
        self.register_buffer("offsets", offsets.long(), persistent=False)
        self.table = nn.Embedding(max(sum(sizes), 1), dim)
        self.multi = nn.ModuleDict({f.name: nn.Embedding(f.vocab_size, dim, padding_idx=0)
                                    for f in fields if f.kind == "multi_categorical"})
        self.numeric = nn.ParameterDict({f.name: nn.Parameter(torch.empty(dim))
                                         for f in fields if f.kind == "numeric"})
        for p in [self.table.weight, *(m.weight for m in self.multi.values()), *self.numeric.values()]:
            nn.init.normal_(p, std=init_std)
        for m in self.multi.values():
            with torch.no_grad():
                m.weight[0].zero_()
        kinds = {f.name: f.kind for f in fields}
        cat_pos = {n: i for i, n in enumerate(self.cat_names)}
        self._order = [(kinds[f.name], f.name, cat_pos.get(f.name, -1)) for f in fields]
        self._cat_pos = cat_pos

    def lookup(self, name: str, ids: torch.Tensor) -> torch.Tensor:
        """Per-id embeddings [..., D] of ids of the (multi-)categorical field ``name``, from that field's own rows:
        a history of item ids gets the vectors the candidate item gets."""
        if name in self._cat_pos:
            return self.table(ids + self.offsets[self._cat_pos[name]])
        if name in self.multi:
            return self.multi[name](ids)
        raise KeyError(f"no categorical field {name!r} to look ids up in; categorical fields: "
                       f"{self.cat_names + list(self.multi)}")

    @property
    def num_fields(self) -> int:
        return len(self.fields)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        cat = None
        if self.cat_names:
            ids = torch.stack([features[n] for n in self.cat_names], dim=1) + self.offsets
            cat = self.table(ids)
        if not self.multi and not self.numeric:
            return cat
        columns = []
        for kind, name, pos in self._order:
            if kind == "categorical":
                columns.append(cat[:, pos])
            elif kind == "multi_categorical":
                ids = features[name]
                mask = (ids != 0).unsqueeze(-1).to(self.table.weight.dtype)
                pooled = (self.multi[name](ids) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                columns.append(pooled)
            else:
                columns.append(features[name].unsqueeze(-1).to(self.table.weight.dtype) * self.numeric[name])
        return torch.stack(columns, dim=1)

    def l2(self) -> torch.Tensor:
        """Squared norm of all embedding parameters (for embedding regularisation)."""
        return sum((p.pow(2).sum() for p in self.parameters()), torch.zeros((), device=self.table.weight.device))
