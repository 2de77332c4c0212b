"""The LLM head's context from the request's own history, chosen through the items' LLM vectors.

A record carries the items its user rated before it (a ``sequence`` field such as ML-1M's ``history``, most recent
first, with ``<field>_label``). Of those, the ``k`` liked and the ``k`` disliked items whose entity vectors (the
semantic tables' ``entities.<item>``: title and genres through the encoder) are most similar to the candidate's
are shown to the head, rendered as ``llmctr.semantics.rag`` renders retrieved neighbours. Where the candidate has
no vector (an unseen item) the most recent ones are shown. Unlike a retriever over the training split, this context
holds the interactions right before the row, in training and when served alike, and needs no lookup by user: the
request brings its history (or the router's history store fills it in).

Stored with the head (``history_context.safetensors`` + ``history_context.json``: vectors by raw item id), so a
served head needs neither the dataset nor the tables.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from llmctr.data.feature_map import FIRST_ID, normalize_value

VECTORS, META = "history_context.safetensors", "history_context.json"
UNRATED = -1


class HistoryContext:
    """``item_ids``: raw item ids (normalised); ``vectors``: their LLM vectors, one row each, in that order."""

    def __init__(self, item_ids: Sequence[str], vectors: np.ndarray, history_field: str, item_field: str,
                 label_field: str | None):
        if len(item_ids) != len(vectors):
            raise ValueError(f"{len(item_ids)} item ids for {len(vectors)} vectors")
        self.item_ids = [str(i) for i in item_ids]
        self.row = {raw: r for r, raw in enumerate(self.item_ids)}
        vectors = np.asarray(vectors, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.vectors = vectors / np.where(norms > 0, norms, 1.0)
        self.history_field, self.item_field, self.label_field = history_field, item_field, label_field

    @classmethod
    def from_entity_table(cls, table: np.ndarray, vocab: Sequence[Any], history_field: str, item_field: str,
                          label_field: str | None) -> HistoryContext:
        """From a semantic table's entity rows (indexed by feature-map id: 0 padding, 1 OOV, then ``vocab``)."""
        table = np.asarray(table)
        if len(table) != FIRST_ID + len(vocab):
            raise ValueError(f"the entity table has {len(table)} rows for a vocabulary of {len(vocab)}")
        return cls([normalize_value(v) for v in vocab], table[FIRST_ID:], history_field, item_field, label_field)

    def _pairs(self, record: Mapping[str, Any]) -> list[tuple[str, int]]:
        items = record.get(self.history_field) or []
        labels = record.get(self.label_field) if self.label_field else None
        labels = list(labels) if labels is not None else [UNRATED] * len(items)
        candidate = normalize_value(record.get(self.item_field))
        return [(raw, int(lab)) for raw, lab in zip(map(normalize_value, items), labels) if raw != candidate]

    def neighbours(self, records: Sequence[Mapping[str, Any]], k: int) -> list[list[tuple[str, int]]]:
        """Per record, (raw item id, label) of up to ``k`` liked and ``k`` disliked (or unlabelled) history items,
        the most similar to the candidate first; without a candidate vector, the most recent first."""
        out = []
        for record in records:
            pairs = self._pairs(record)
            cand = self.row.get(normalize_value(record.get(self.item_field)))
            if cand is not None and pairs:
                rows = [self.row.get(raw) for raw, _ in pairs]
                known = np.array([r is not None for r in rows])
                sims = np.full(len(pairs), -2.0, dtype=np.float32)  # below any cosine: items without a vector
                if known.any():
                    sims[known] = self.vectors[[r for r in rows if r is not None]] @ self.vectors[cand]
                order = np.argsort(-sims, kind="stable")  # ties keep recency
                pairs = [pairs[i] for i in order]
            chosen = []
            for label in sorted({lab for _, lab in pairs}, reverse=True):
                chosen += [p for p in pairs if p[1] == label][:k]
            out.append(chosen)
        return out

    def save(self, folder: Path) -> None:
        save_file({"vectors": torch.from_numpy(np.ascontiguousarray(self.vectors.astype(np.float16)))},
                  str(folder / VECTORS))
        (folder / META).write_text(json.dumps({"item_ids": self.item_ids, "history_field": self.history_field,
                                               "item_field": self.item_field, "label_field": self.label_field}))

    @classmethod
    def load(cls, folder: Path) -> HistoryContext | None:
        """The context stored with a head, or None when the head reads a retriever's neighbours instead."""
        if not (folder / VECTORS).is_file():
            return None
        meta = json.loads((folder / META).read_text())
        vectors = load_file(str(folder / VECTORS))["vectors"].float().numpy()
        return cls(meta["item_ids"], vectors, meta["history_field"], meta["item_field"], meta["label_field"])
