"""Cold-start texts: an entity id unseen in training gets the vector of its own record's text.

The semantic tables (``tables.py``) hold one vector per id of an entity's key field, from the text of its describing
fields (ML-1M's item: title and genres; its user: the demographics); every id the training split never had shares
the OOV row, the "unknown" text. A record carries its own describing values, though, so its text can be rendered
exactly as the table renders a known id's (``text.sample_text``): a new movie with a known title reads the same text,
and so gets the same vector, as the table's row of the movie of that title.

- ``EntityTexts``: what renders and encodes them (the entity, its key, its fields' specs, the encoder that built the
  tables), saved as JSON beside a model that uses them, so a served model needs no dataset config or training code;
- ``record_texts``: the text of each record, None where it has none of the describing fields (it keeps "unknown");
- ``text_table``: offline, the distinct texts of the OOV rows of several splits, encoded once through the embedding
  cache: a small table and each row's index in it (0: none);
- ``TextVectors``: when served, a record's text encoded once and kept in an in-memory LRU keyed by the text.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic.dataclasses import dataclass

from llmctr.config import STRICT, dump_config, parse_config
from llmctr.data.feature_map import OOV_ID
from llmctr.data.schema import DatasetConfig, FieldSpec
from llmctr.semantics.encoders import EncoderConfig, build_encoder, encoder_key
from llmctr.semantics.text import sample_text, value_tokens

#: the file of a model artifact (or any folder) that holds an ``EntityTexts``
ENTITY_TEXTS = "entity_texts.json"


@dataclass(config=STRICT)
class EntityTexts:
    """``entity``: its name in the dataset YAML; ``key``: its key field (the candidate field); ``fields``: the specs of
    its describing fields, in the tables' order; ``encoder`` / ``encoder_key``: the tables' encoder."""

    entity: str
    key: str
    fields: list[FieldSpec]
    encoder: EncoderConfig
    encoder_key: str

    @classmethod
    def of(cls, dataset: DatasetConfig, entity: str, encoder: EncoderConfig, key: str | None = None) -> EntityTexts:
        if entity not in dataset.entities:
            raise ValueError(f"dataset {dataset.name!r} has no entity {entity!r} "
                             f"(entities: {sorted(dataset.entities)})")
        spec = dataset.entities[entity]
        specs = {f.name: f for f in dataset.fields}
        return cls(entity=entity, key=spec.key, fields=[specs[f] for f in spec.fields], encoder=encoder,
                   encoder_key=key or encoder_key(encoder))

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / ENTITY_TEXTS
        path.write_text(json.dumps(dump_config(self), indent=1))
        return path

    @classmethod
    def load(cls, folder: str | Path) -> EntityTexts | None:
        """The folder's ``entity_texts.json``, or None when it has none."""
        path = Path(folder) / ENTITY_TEXTS
        return parse_config(cls, json.loads(path.read_text()), str(path)) if path.is_file() else None


def record_texts(records: Sequence[Mapping[str, Any]], fields: Sequence[FieldSpec]) -> list[str | None]:
    """Each record's text as the entity table renders it; None for a record with none of ``fields``' values."""
    return [sample_text(r, fields) if any(value_tokens(f, r.get(f.name)) for f in fields) else None for r in records]


def oov_texts(records: Sequence[Mapping[str, Any]] | Mapping[int, Mapping[str, Any]], ids: np.ndarray,
              fields: Sequence[FieldSpec]) -> list[str | None]:
    """``record_texts`` of the records whose key encodes to OOV (``ids``: the key's feature-map ids, one per row;
    ``records``: the rows' records, or only the OOV ones by row number); None elsewhere."""
    oov = np.flatnonzero(np.asarray(ids) == OOV_ID)
    out: list[str | None] = [None] * len(ids)
    for i, text in zip(oov, record_texts([records[i] for i in oov], fields)):
        out[i] = text
    return out


def index_texts(texts: Mapping[str, Sequence[str | None]]) -> tuple[list[str], dict[str, np.ndarray]]:
    """(the distinct texts, sorted; per split each row's 1-based index into them, 0 where None)."""
    distinct = sorted({t for column in texts.values() for t in column if t is not None})
    index = {t: i + 1 for i, t in enumerate(distinct)}
    return distinct, {name: np.asarray([index.get(t, 0) if t is not None else 0 for t in column], dtype=np.int64)
                      for name, column in texts.items()}


def text_table(texts: dict[str, list[str | None]], spec: EntityTexts, cache_root: str | Path | None = None,
               dim: int | None = None) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """Offline: (table [K + 1, S], row of each text per split, int64, 0 where None) for the distinct texts of
    ``texts`` (split → one text or None per row), encoded once through the embedding cache (those the tables
    encoded already are read, not encoded, and are the very vectors of the tables' rows)."""
    from llmctr.semantics.encode_job import encode_texts

    distinct, rows = index_texts(texts)
    if not distinct:
        return torch.zeros(1, dim or 1), rows
    result = encode_texts(distinct, spec.encoder, cache_root=cache_root, use_ray=False, progress=False)
    if result.key != spec.encoder_key:
        raise ValueError(f"the encoder's key {result.key} is not the semantic tables' {spec.encoder_key}: its model "
                         "or adapter files changed since the tables were built")
    vectors = torch.from_numpy(result.vectors)
    return torch.cat([torch.zeros(1, vectors.shape[1]), vectors]), rows


class TextVectors:
    """Served: records' own text vectors, each distinct text encoded once and kept in an LRU of ``capacity`` texts.
    The encoder (the tables') loads when this is made, and must still have the tables' key."""

    def __init__(self, spec: EntityTexts, capacity: int = 10_000):
        if capacity < 1:
            raise ValueError(f"text cache capacity must be at least 1, got {capacity}")
        self.spec, self.capacity = spec, capacity
        self.encoder = build_encoder(spec.encoder)
        if self.encoder.key != spec.encoder_key:
            model = spec.encoder.model or "all-MiniLM-L6-v2 (bundled)"
            raise ValueError(f"encoder {model} has key {self.encoder.key}, not the semantic tables' "
                             f"{spec.encoder_key}: its model or adapter files changed since the tables were built")
        self.dim = int(self.encoder.dim)
        self.cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.lock = threading.Lock()

    def vectors(self, texts: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
        """(vectors [n, S], zero rows for None; status [n]: 0 none, 1 encoded by this call, 2 from the cache).
        A text repeated within the call is encoded once (its other records count as cache hits)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        status = np.zeros(len(texts), dtype=np.int8)
        with self.lock:
            new = {t for t in texts if t is not None and t not in self.cache}
            if new:
                ordered = sorted(new)
                for text, vec in zip(ordered, self.encoder.encode(ordered)):
                    self.cache[text] = vec
            seen: set[str] = set()
            for i, text in enumerate(texts):
                if text is None:
                    continue
                self.cache.move_to_end(text)
                out[i] = self.cache[text]
                status[i] = 1 if text in new and text not in seen else 2
                seen.add(text)
            while len(self.cache) > self.capacity:
                self.cache.popitem(last=False)
        return out, status
