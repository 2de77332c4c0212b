"""The LLM head's input text: the request's features as sentences, then the user's retrieved interactions.

"The user's gender is male. ... The movie's genres are Drama. The user liked: Heat (1995), Action, Crime,
Thriller; Casino (1995), Drama, Thriller. The user disliked: Nixon (1995), Drama."

The request is rendered as the semantic layer renders a sample (``sample_text``: field descriptions and
value labels). A neighbour item is rendered by its values only (``value_tokens`` of the item entity's
fields, e.g. title and genres): five neighbours as full sentences would take ~150 tokens, and the encoder's
cost grows with the length. The candidate item itself is never its own neighbour (a training row would
otherwise read its own label). Kept apart from the model and the trainer: the Serve graph calls
:func:`build_contexts` with its retriever.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from llmctr.data.feature_map import FIRST_ID, OOV_ID, FeatureMap, normalize_value
from llmctr.data.schema import DatasetConfig, FieldSpec
from llmctr.semantics.text import sample_text, value_tokens

LIKED, DISLIKED, UNRATED = 1, 0, -1
Neighbour = tuple[int, int, float]  # (item feature-map id, label 1 / 0 / -1, similarity)


class HistoryRetriever(Protocol):
    """What the LLM head needs of a retriever (the LightGCN one, or :class:`RecentHistory`)."""

    user_field: str
    item_field: str

    def history_neighbours(self, user_ids: np.ndarray, item_ids: np.ndarray, k: int) -> list[list[Neighbour]]:
        """Per request, up to ``k`` of the user's train interactions most similar to the candidate."""

    def raw_values(self, field: str, ids: Sequence[int]) -> list: ...

    def encode_ids(self, field: str, raw_values: Sequence[Any]) -> np.ndarray: ...


def entity_fields(dataset: DatasetConfig, key: str) -> tuple[str, list[FieldSpec]]:
    """(entity name, describing fields) of the entity whose key field is ``key`` (e.g. movie_id -> item)."""
    specs = {f.name: f for f in dataset.fields}
    for name, entity in dataset.entities.items():
        if entity.key == key:
            return name, [specs[f] for f in entity.fields]
    raise ValueError(f"dataset {dataset.name!r} has no entity keyed by {key!r} (entities: "
                     f"{ {n: e.key for n, e in dataset.entities.items()} })")


def item_text(record: Mapping[str, Any], fields: Sequence[FieldSpec]) -> str:
    """An item by its values: "Heat (1995), Action, Crime, Thriller"."""
    return ", ".join(t for f in fields for t in value_tokens(f, record.get(f.name)))


def item_texts(data_dir: Path, fmap: FeatureMap, dataset: DatasetConfig, item_key: str) -> dict[str, str]:
    """Raw item id -> :func:`item_text`, for every item of the prepared splits."""
    from llmctr.semantics.tables import entity_records

    _, fields = entity_fields(dataset, item_key)
    records = entity_records(Path(data_dir), fmap, item_key, [f.name for f in fields])
    return {key: item_text(record, fields) for key, record in records.items()}


def render_context(neighbours: Sequence[tuple[str, int]], subject: str = "user") -> str:
    """(item text, label) pairs as "The user liked: A; B. The user disliked: C. Related items: D.". Label -1 is
    an item related to the candidate with no rating by this user (the retriever's answer for an unknown user)."""
    if not neighbours:
        return f"The {subject} has no history."
    parts = []
    for label, lead in ((LIKED, f"The {subject} liked"), (DISLIKED, f"The {subject} disliked"),
                        (UNRATED, "Related items")):
        texts = [text for text, lab in neighbours if lab == label]
        if texts:
            parts.append(f"{lead}: {'; '.join(texts)}.")
    return " ".join(parts)


def build_contexts(records: Sequence[Mapping[str, Any]], retriever: HistoryRetriever, items: Mapping[str, str],
                   k: int, subject: str = "user") -> list[str]:
    """The context sentence of each record: up to ``k`` retrieved interactions of its user, the candidate item
    left out, each neighbour shown by ``items[raw id]``."""
    return contexts_from_neighbours(retrieve_neighbours(records, retriever, k), items, subject)


def retrieve_neighbours(records: Sequence[Mapping[str, Any]], retriever: HistoryRetriever, k: int
                        ) -> list[list[tuple[str, int]]]:
    """Per record, up to ``k`` (raw item id, label) of its user's retrieved interactions, the candidate left out
    (what the Serve graph's Retriever deployment returns to the LLM head)."""
    users = retriever.encode_ids(retriever.user_field, [r.get(retriever.user_field) for r in records])
    candidates = retriever.encode_ids(retriever.item_field, [r.get(retriever.item_field) for r in records])
    found = retriever.history_neighbours(np.asarray(users), np.asarray(candidates), k + 1)
    kept = [[(int(i), int(lab)) for i, lab, _ in row if int(i) != int(cand)][:k] for row, cand in
            zip(found, candidates)]
    flat = sorted({i for row in kept for i, _ in row})
    raw = dict(zip(flat, retriever.raw_values(retriever.item_field, flat)))
    return [[(normalize_value(raw[i]), lab) for i, lab in row] for row in kept]


def contexts_from_neighbours(neighbours: Sequence[Sequence[tuple[str, int]]], items: Mapping[str, str],
                             subject: str = "user") -> list[str]:
    """Each record's (raw item id, label) neighbours as its context sentence; items without a text are skipped."""
    return [render_context([(items[i], lab) for i, lab in row if i in items], subject) for row in neighbours]


def render_contexts(records: Sequence[Mapping[str, Any]], retriever: HistoryRetriever, spec: Mapping[str, Any],
                    k: int | None = None) -> list[str]:
    """:func:`build_contexts` from a head's context spec (``EarlyExitHead.context_spec()``: ``items``,
    ``subject``, ``neighbours``); ``k`` overrides the number of neighbours the head was trained with."""
    return build_contexts(records, retriever, spec["items"], spec["neighbours"] if k is None else k, spec["subject"])


def request_texts(records: Sequence[Mapping[str, Any]], fields: Sequence[FieldSpec], contexts: Sequence[str]
                  ) -> list[str]:
    """What the LLM head reads: the request's feature sentences, then its context (truncation cuts the end,
    so the request itself survives a long history)."""
    if len(contexts) != len(records):
        raise ValueError(f"{len(contexts)} contexts for {len(records)} records")
    return [f"{sample_text(r, fields)} {c}".strip() for r, c in zip(records, contexts)]


class RecentHistory:
    """The fallback retriever: a user's most recent train interactions (the split is in time order), newest
    first, similarity 0. Same interface as the learnt retriever."""

    def __init__(self, train: pd.DataFrame, fmap: FeatureMap, user_field: str, item_field: str, label: str):
        self.fmap, self.user_field, self.item_field = fmap, user_field, item_field
        frame = train[[user_field, item_field, label]].iloc[::-1]
        self._history = {int(u): (g[item_field].to_numpy(np.int64), g[label].to_numpy(np.int64))
                         for u, g in frame.groupby(user_field, sort=False)}

    def history_neighbours(self, user_ids: np.ndarray, item_ids: np.ndarray, k: int) -> list[list[Neighbour]]:
        empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
        out = []
        for user, item in zip(np.asarray(user_ids), np.asarray(item_ids)):
            items, labels = self._history.get(int(user), empty) if int(user) != OOV_ID else empty
            keep = items != int(item)
            out.append([(int(i), int(lab), 0.0) for i, lab in zip(items[keep][:k], labels[keep][:k])])
        return out

    def raw_values(self, field: str, ids: Sequence[int]) -> list:
        vocab = self.fmap.field(field).vocab
        return [vocab[i - FIRST_ID] if FIRST_ID <= i < FIRST_ID + len(vocab) else None for i in map(int, ids)]

    def encode_ids(self, field: str, raw_values: Sequence[Any]) -> np.ndarray:
        return self.fmap.field(field).encode(pd.Series(list(raw_values), dtype=object))

    @classmethod
    def from_split(cls, split_dir: Path, fmap: FeatureMap, user_field: str, item_field: str) -> RecentHistory:
        frame = pd.read_parquet(split_dir, columns=[user_field, item_field, fmap.label])
        return cls(frame, fmap, user_field, item_field, fmap.label)

