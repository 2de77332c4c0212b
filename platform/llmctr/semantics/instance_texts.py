"""ELEC's instance texts: a few sentences per row, from the row's candidate and its own history, e.g.

    "The movie's title and release year is Heat (1995). The movie's genres are Action, Crime, Thriller.
     The user recently liked Fargo (1996); Seven (Se7en) (1995) and disliked Batman & Robin (1997)."

The candidate comes first, as its entity's text (what the semantic tables encode), so an encoder that truncates
(``max_length``) drops the oldest history items, not the candidate. The history is a ``sequence`` field with labels
(ML-1M's ``history``: the items the user rated before the row, most recent first, ``<field>_label`` 1 for liked);
the ``liked`` most recent liked and ``disliked`` most recent disliked items are named by their entity's first
describing field (the title). The texts of all rows are encoded once through the embedding job (Ray Data actors or in
process) and its content-addressed cache: a table of the distinct texts' vectors and each row's index in it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import Field
from pydantic.dataclasses import dataclass

from llmctr.config import STRICT
from llmctr.data import DatasetConfig
from llmctr.data.feature_map import RAW_PREFIX, normalize_value
from llmctr.semantics.encoders import EncoderConfig
from llmctr.semantics.entity_texts import index_texts
from llmctr.semantics.text import sample_text

log = logging.getLogger(__name__)


@dataclass(config=STRICT)
class InstanceTextsConfig:
    """``distill.instance_texts``: which history field, and how many of its most recent liked / disliked items."""

    history_field: str = "history"
    liked: int = Field(3, ge=0)
    disliked: int = Field(2, ge=0)


class InstanceTextRenderer:
    """Renders rows of a prepared split (their ``raw__`` columns and the history's labels) as instance texts."""

    def __init__(self, dataset: DatasetConfig, config: InstanceTextsConfig):
        specs = {f.name: f for f in dataset.fields}
        history = specs.get(config.history_field)
        if history is None or history.kind != "sequence" or not history.with_label:
            raise ValueError(f"instance texts need a labelled sequence field (history of liked / disliked items); "
                             f"{config.history_field!r} of dataset {dataset.name!r} is not one")
        entity = next((e for e in dataset.entities.values() if e.key == history.of), None)
        if entity is None or not entity.fields:
            raise ValueError(f"instance texts need an entity keyed by {history.of!r} with describing fields "
                             f"(dataset {dataset.name!r}'s entities: {sorted(dataset.entities)})")
        self.config, self.key = config, history.of
        self.fields = [specs[f] for f in entity.fields]
        self.name_field = entity.fields[0]

    @property
    def columns(self) -> list[str]:
        """The split columns the texts are rendered from."""
        raw = [self.config.history_field, self.key, *(f.name for f in self.fields)]
        return [RAW_PREFIX + c for c in raw] + [f"{self.config.history_field}_label"]

    def names(self, frames: Sequence[pd.DataFrame]) -> dict[str, str]:
        """Raw item id → its name (the entity's first field), from the candidates of ``frames``."""
        out: dict[str, str] = {}
        for frame in frames:
            ids, names = frame[RAW_PREFIX + self.key], frame[RAW_PREFIX + self.name_field]
            out.update((normalize_value(i), str(n)) for i, n in zip(ids, names) if n is not None)
        return out

    def text(self, history: Sequence[Any], labels: Sequence[int], candidate: Mapping[str, Any],
             names: Mapping[str, str]) -> str:
        liked, disliked = [], []
        for item, label in zip(history, labels):
            if len(liked) >= self.config.liked and len(disliked) >= self.config.disliked:
                break  # the most recent ones are taken: the rest of a long history is not read
            name = names.get(normalize_value(item))
            side, wanted = (liked, self.config.liked) if int(label) == 1 else (disliked, self.config.disliked)
            if name is not None and len(side) < wanted:
                side.append(name)
        parts = [f"liked {'; '.join(liked)}" if liked else "", f"disliked {'; '.join(disliked)}" if disliked else ""]
        seen = " and ".join(p for p in parts if p)
        history = f"The user recently {seen}." if seen else "The user has rated nothing yet."
        return f"{sample_text(candidate, self.fields)} {history}"

    def texts(self, frame: pd.DataFrame, names: Mapping[str, str]) -> list[str]:
        """One text per row of ``frame`` (a split with ``columns``)."""
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise ValueError(f"instance texts need the split's columns {missing}")
        h = self.config.history_field
        candidates = frame[[RAW_PREFIX + f.name for f in self.fields]].set_axis(
            [f.name for f in self.fields], axis=1).to_dict("records")
        return [self.text(hist if hist is not None else [], lab if lab is not None else [], cand, names)
                for hist, lab, cand in zip(frame[RAW_PREFIX + h], frame[f"{h}_label"], candidates)]


def encode_instance_texts(frames: Mapping[str, pd.DataFrame], dataset: DatasetConfig, config: InstanceTextsConfig,
                          encoder: EncoderConfig, cache_root: str | Path | None = None, use_ray: bool = True
                          ) -> tuple[torch.Tensor, dict[str, np.ndarray], dict[str, Any]]:
    """(table [K + 1, S] of the distinct texts' vectors, row 0 zeros; each split's rows' indices; what it took)."""
    from llmctr.semantics.encode_job import encode_texts

    renderer = InstanceTextRenderer(dataset, config)
    t0 = time.perf_counter()
    names = renderer.names(list(frames.values()))
    texts = {split: renderer.texts(frame, names) for split, frame in frames.items()}
    distinct, rows = index_texts(texts)
    render_seconds = time.perf_counter() - t0
    result = encode_texts(distinct, encoder, cache_root=cache_root, use_ray=use_ray)
    vectors = torch.from_numpy(result.vectors)
    table = torch.cat([torch.zeros(1, vectors.shape[1]), vectors])
    info = {"rows": sum(len(r) for r in rows.values()), "distinct_texts": len(distinct),
            "encoded": result.encoded, "cache_hits": result.cache_hits, "encode_seconds": result.seconds,
            "render_seconds": render_seconds, "actors": result.actors, "encoder_key": result.key,
            "example": distinct[0] if distinct else None}
    log.info("instance texts: %d rows, %d distinct, %d encoded in %.0f s", info["rows"], len(distinct),
             result.encoded, result.seconds)
    return table, rows, info
