"""Semantic history: the user's behaviour history read through LLM vectors of its items.

Beside the id history (``history.py``), which learns one embedding per item id and so knows nothing of an item it
saw rarely, this reads every history item and the candidate through a frozen table of LLM vectors (an entity's
vectors from the semantic tables, one row per id of the history's ``of`` field: llmctr.semantics.tables). Two more
fields enter the backbone:

- the candidate's projected vector's DIN-style target attention over the projected history vectors (liked and
  disliked pooled apart, as the id history does);
- the cosines between the candidate's vector and the mean vector of the liked (and of the disliked) items, in the
  LLM's own space, as one numeric field (each cosine times a learnt vector).

The table is a persistent buffer: a trained model's weights carry it, so the served scorer looks vectors up and never
runs the LLM per request. Its width is kept in the config (``dim``) so a trained model rebuilds without the tables.

Cold-start texts (``cold_texts``): a candidate whose id is OOV (unseen in training) would get the table's one
"unknown" row; instead it may get the vector of its own record's text (its entity's describing fields, rendered as
the tables render them: llmctr.semantics.entity_texts). The batch carries that override per row, as
``<of>__text_row`` (an index into the layer's ``texts`` table, set once offline with ``set_texts``; 0: none) or as
``<of>__text_vector`` (the vector itself, [B, S], zero rows: none; what the served scorer passes). History items keep
the table's rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic.dataclasses import dataclass
from torch import nn

from llmctr.config import STRICT
from llmctr.data.feature_map import OOV_ID


def text_row_key(of: str) -> str:
    """The batch column of the candidates' rows in the layer's ``texts`` table (0: no text of its own)."""
    return f"{of}__text_row"


def text_vector_key(of: str) -> str:
    """The batch column of the candidates' own text vectors, [B, S] (zero rows: none)."""
    return f"{of}__text_vector"


@dataclass(config=STRICT)
class SemanticHistoryConfig:
    """``history.semantic`` of a model config. ``entity``: whose vectors (an entity of the dataset YAML keyed by the
    history's ``of`` field; None: the one that is); ``dim``: the vectors' width, set from the tables when the model
    is first built; ``cosines``: the candidate-to-history cosine field; ``candidate``: the candidate's own projected
    vector as one more field (off by default: alone, without history, it lowered AUC in the issue's probe)."""

    entity: str | None = None
    dim: int = 0
    cosines: bool = True
    candidate: bool = False
    #: a candidate unseen in training reads the vector of its own record's text (see the module's docstring)
    cold_texts: bool = False


class SemanticHistory(nn.Module):
    """(candidate ids [B], history ids [B, L], mask [B, L], labels [B, L] or None) → fields [B, K, D]."""

    def __init__(self, dim: int, vocab_size: int, config: SemanticHistoryConfig, pooling: nn.Module,
                 table: torch.Tensor | None = None):
        super().__init__()
        if table is not None:
            if table.dim() != 2 or table.shape[0] != vocab_size:
                raise ValueError(f"semantic history table of shape {tuple(table.shape)} does not have one row per "
                                 f"id of the history's item field ({vocab_size} ids)")
            config.dim = int(table.shape[1])
        if config.dim <= 0:
            raise ValueError("history.semantic needs its item vectors (semantic tables) to be built the first time")
        self.config = config
        start = torch.zeros(vocab_size, config.dim) if table is None else F.normalize(table.float(), dim=-1)
        self.register_buffer("table", start)  # unit rows (padding row 0 stays zero); persistent: served with the model
        # the offline text table of ``<of>__text_row`` (row 0: none); not saved: it belongs to the data, not the model
        self.register_buffer("texts", torch.zeros(1, config.dim), persistent=False)
        self.project = nn.Linear(config.dim, dim)
        self.pool = pooling  # a HistoryPooling over the projected vectors
        self.cosine = nn.Linear(2 if pooling.split else 1, dim, bias=False) if config.cosines else None
        self._cached: tuple | None = None  # (weights' identity, projected table), see projected_table

    @property
    def num_fields(self) -> int:
        return 1 + (self.cosine is not None) + self.config.candidate

    def forward(self, candidate: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor,
                labels: torch.Tensor | None, text: torch.Tensor | None = None) -> torch.Tensor:
        """``text``: [B, S] the candidates' own text vectors (``text_vectors``), used where the candidate is OOV."""
        projected = self.projected_table()
        cand, vectors = projected[candidate], self.table[candidate]
        if text is not None:
            use = ((candidate == OOV_ID) & (text.abs().sum(-1) > 0)).unsqueeze(-1)
            unit = F.normalize(text.to(vectors.dtype), dim=-1)
            cand, vectors = torch.where(use, self.project(unit), cand), torch.where(use, unit, vectors)
        fields = [self.pool(cand, projected[ids], mask, labels)]
        if self.cosine is not None:
            fields.append(self.cosine(self.cosines(vectors, ids, mask, labels)))
        if self.config.candidate:
            fields.append(cand)
        return torch.stack(fields, dim=1)

    def text_vectors(self, features: dict[str, torch.Tensor], of: str) -> torch.Tensor | None:
        """The batch's per-row text override (None without ``cold_texts`` or when the batch carries none)."""
        if not self.config.cold_texts:
            return None
        if text_vector_key(of) in features:
            return features[text_vector_key(of)]
        rows = features.get(text_row_key(of))
        if rows is None:
            return None
        if len(rows) and int(rows.max()) >= len(self.texts):
            raise ValueError(f"the batch's {text_row_key(of)} indexes a text table of {int(rows.max()) + 1}+ rows; "
                             f"this layer holds {len(self.texts)} (give it the split's table with set_texts)")
        return self.texts[rows]

    def set_texts(self, table: torch.Tensor) -> None:
        """The offline text table ``<of>__text_row`` indexes: [K + 1, S], row 0 zeros (no text)."""
        if table.dim() != 2 or table.shape[1] != self.config.dim or not table.shape[0] or table[0].any():
            raise ValueError(f"a text table must be [rows, {self.config.dim}] with a zero row 0, got "
                             f"{tuple(table.shape)}")
        self.texts = table.to(self.table.device, self.table.dtype)

    def projected_table(self) -> torch.Tensor:
        """[V, D]: the table through the projection, cheaper than projecting every gathered position; kept between
        calls while no gradient is taken and neither the weights nor the table changed (a served model projects
        it once, not per request)."""
        if torch.is_grad_enabled():
            self._cached = None
            return self.project(self.table)
        # inference tensors (weights loaded under inference mode) keep no version counter: their identity is their
        # storage, and loading a state dict or training clears the cache anyway
        key = tuple((t.data_ptr(), None if t.is_inference() else t._version)
                    for t in (self.project.weight, self.project.bias, self.table))
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, self.project(self.table))
        return self._cached[1]

    def train(self, mode: bool = True):
        self._cached = None
        return super().train(mode)

    def _load_from_state_dict(self, *args, **kwargs):
        self._cached = None
        super()._load_from_state_dict(*args, **kwargs)

    def cosines(self, cand: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor,
                labels: torch.Tensor | None) -> torch.Tensor:
        """[B, 1 or 2]: cosine of the candidate's vector ``cand`` [B, S] with the mean vector of the (liked,
        disliked) history items; 0 where that part of the history is empty or the candidate has no vector."""
        vectors = self.table[ids]  # [B, L, S], unit rows
        parts = [mask] if not self.pool.split else [mask & (labels == 1), mask & (labels != 1)]
        out = []
        for part in parts:
            mean = torch.einsum("bl,bls->bs", part.to(vectors.dtype), vectors)
            out.append(F.cosine_similarity(cand, mean, dim=-1, eps=1e-6))
        return torch.stack(out, dim=-1)
