"""Semantic tables: LLM vectors aligned with the feature map, written once per (dataset, encoder).

- ``field``: one vector per input field, from its description text;
- ``features``: per categorical / multi-valued field, one vector per feature-map id (row 0 padding =
  zeros, row 1 OOV = the field's "unknown" text, rows 2.. the vocabulary's feature texts);
- ``entities``: per entity of the dataset YAML (e.g. user, item), one vector per id of its key field,
  from the text of its describing fields (values taken from the prepared splits' ``raw__`` columns).

Stored as ``semantics.safetensors`` + ``semantics.json`` in ``<artifacts>/semantics/<dataset>/<key[:12]>/``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import torch
from safetensors.torch import load_file, save_file

from llmctr import storage
from llmctr.config import dump_config
from llmctr.data import resolve_prepared
from llmctr.data.feature_map import FIRST_ID, RAW_PREFIX, FeatureMap
from llmctr.data.pipeline import SPLITS
from llmctr.data.schema import DatasetConfig, FieldSpec
from llmctr.semantics.cache import default_cache_root
from llmctr.semantics.encode_job import encode_texts
from llmctr.semantics.encoders import EncoderConfig, encoder_key
from llmctr.semantics.text import feature_text, field_text, sample_text
from llmctr.storage import artifacts_root

log = logging.getLogger(__name__)

#: Bump when the text rendering changes, so existing tables are rebuilt.
TEXT_VERSION = 1
WEIGHTS, META = "semantics.safetensors", "semantics.json"


@dataclass
class SemanticTables:
    fields: list[str]  # input-field order of the feature map
    field: torch.Tensor  # [F, d] field-description vectors
    features: dict[str, torch.Tensor]  # per categorical / multi_categorical field: [rows, d] by feature-map id
    entities: dict[str, torch.Tensor]  # per entity: [rows of its key field, d] by the key's ids
    meta: dict  # encoder key, dim, model, counts, seconds, cache hits

    @classmethod
    def load(cls, directory: str | Path) -> SemanticTables:
        directory = Path(directory)
        if not (directory / WEIGHTS).is_file() or not (directory / META).is_file():
            raise FileNotFoundError(f"no semantic tables in {directory} (expected {WEIGHTS} and {META}; "
                                    "build them with: llmctr encode DATASET)")
        meta = json.loads((directory / META).read_text())
        tensors = load_file(directory / WEIGHTS)
        return cls(fields=list(meta["fields"]), field=tensors["field"],
                   features={k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("features.")},
                   entities={k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("entities.")},
                   meta=meta)

    def save(self, directory: str | Path) -> Path:
        """Write to a temporary folder, then swap it in (a failed write leaves the old tables intact)."""
        directory = Path(directory)
        tmp = directory.with_name(f".{directory.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.mkdir(parents=True)
        tensors = {"field": self.field, **{f"features.{k}": v for k, v in self.features.items()},
                   **{f"entities.{k}": v for k, v in self.entities.items()}}
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp / WEIGHTS)
        (tmp / META).write_text(json.dumps({**self.meta, "fields": self.fields}, indent=1, default=str))
        old = directory.with_name(f".{directory.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if directory.exists():
            directory.rename(old)
        tmp.rename(directory)
        shutil.rmtree(old, ignore_errors=True)
        return directory


def entity_records(data_dir: Path, fmap: FeatureMap, key: str, fields: list[str]) -> dict[str, dict]:
    """Raw values of an entity's fields per key value, from the prepared splits (first occurrence wins)."""
    columns = [RAW_PREFIX + name for name in [key, *fields]]
    frames = [pq.read_table(data_dir / split, columns=columns).to_pandas()
              for split in SPLITS if (data_dir / split).exists()]
    if not frames:
        raise FileNotFoundError(f"no prepared splits ({', '.join(SPLITS)}) in {data_dir}")
    frame = pd.concat(frames, ignore_index=True).drop_duplicates(RAW_PREFIX + key)
    frame.columns = [c[len(RAW_PREFIX):] for c in frame.columns]
    return {str(row[key]): row for row in frame.to_dict("records")}


def _texts(dataset: DatasetConfig, fmap: FeatureMap, data_dir: Path) -> dict[str, list[str]]:
    """Every text to encode, grouped: "field" (one per input field), "features.<f>", "entities.<e>" (one per id)."""
    specs = {f.name: f for f in dataset.fields}
    missing = [f.name for f in fmap.static_fields if f.name not in specs]
    if missing:
        raise ValueError(f"feature map fields {missing} are not in the dataset config {dataset.name!r}")
    groups = {"field": [field_text(specs[f.name]) for f in fmap.static_fields]}
    for f in fmap.static_fields:
        if f.kind in ("categorical", "multi_categorical"):
            groups[f"features.{f.name}"] = [feature_text(specs[f.name], v) for v in ["", *f.vocab]]
    for name, entity in dataset.entities.items():
        key = fmap.field(entity.key)
        if key.kind != "categorical":
            raise ValueError(f"entity {name!r}: key field {entity.key!r} must be categorical, not {key.kind}")
        described: list[FieldSpec] = [specs[f] for f in entity.fields]
        records = entity_records(data_dir, fmap, entity.key, entity.fields)
        groups[f"entities.{name}"] = [sample_text({}, described)] + [
            sample_text(records.get(v, {}), described) for v in key.vocab]
    return groups


def _fingerprint(dataset: DatasetConfig, data_dir: Path, key: str) -> str:
    """What the tables depend on: encoder key, text settings, feature map and prepared data."""
    h = hashlib.sha256(json.dumps({"key": key, "text_version": TEXT_VERSION, "dataset": dump_config(dataset)},
                                  sort_keys=True).encode())
    for name in ("feature_map.json", "manifest.json"):
        if (data_dir / name).is_file():
            h.update((data_dir / name).read_bytes())
    return h.hexdigest()[:24]


def default_tables_dir(dataset: str, key: str, artifacts: str | Path | None = None) -> Path:
    root = artifacts_root(artifacts)
    if storage.is_uri(root):
        raise ValueError("semantic tables are written to a local artifacts root, not an object store")
    return Path(root) / "semantics" / dataset / key[:12]


def _plan(prepared_dir, dataset: DatasetConfig, encoder: EncoderConfig, out_dir, artifacts
          ) -> tuple[Path, str, Path, str]:
    """(prepared folder, encoder key, tables folder, fingerprint)."""
    if storage.is_uri(prepared_dir):
        raise ValueError("semantic tables need a local prepared dataset, not an object store location")
    data_dir = Path(resolve_prepared(Path(prepared_dir)))
    if not (data_dir / "feature_map.json").is_file():
        raise FileNotFoundError(f"no prepared dataset in {data_dir} (run: llmctr data prepare {dataset.name})")
    key = encoder_key(encoder)
    out = Path(out_dir) if out_dir else default_tables_dir(dataset.name, key, artifacts)
    return data_dir, key, out, _fingerprint(dataset, data_dir, key)


def _current(out: Path, fingerprint: str) -> bool:
    try:
        return json.loads((out / META).read_text()).get("fingerprint") == fingerprint
    except (OSError, ValueError):
        return False


def build_semantic_tables(prepared_dir, dataset: DatasetConfig, encoder: EncoderConfig, out_dir=None, *,
                          num_actors: int | None = None, force: bool = False, artifacts: str | Path | None = None,
                          cache_root: str | Path | None = None, use_ray: bool = True,
                          progress: bool = True) -> Path:
    """Encode every field, feature and entity text of a prepared dataset and write the tables; returns their
    folder. Skips the work when the folder holds tables from the same encoder, texts and prepared data."""
    data_dir, key, out, fingerprint = _plan(prepared_dir, dataset, encoder, out_dir, artifacts)
    if not force and _current(out, fingerprint):
        log.info("semantic tables %s are up to date; skipping", out)
        return out
    t0 = time.perf_counter()
    fmap = FeatureMap.load(data_dir / "feature_map.json")
    groups = _texts(dataset, fmap, data_dir)
    flat = [t for texts in groups.values() for t in texts]
    result = encode_texts(flat, encoder, cache_root=cache_root or default_cache_root(artifacts),
                          num_actors=num_actors, use_ray=use_ray, progress=progress)
    vectors = torch.from_numpy(result.vectors)
    pieces, start = {}, 0
    for name, texts in groups.items():
        pieces[name] = vectors[start:start + len(texts)]
        start += len(texts)
    pad = torch.zeros(1, vectors.shape[1])
    # Rows 0 (padding) are zeros; the encoded groups start at the OOV row 1 (features and entities alike).
    features = {n.split(".", 1)[1]: torch.cat([pad, v]) for n, v in pieces.items() if n.startswith("features.")}
    entities = {n.split(".", 1)[1]: torch.cat([pad, v]) for n, v in pieces.items() if n.startswith("entities.")}
    aligned = [(f"feature {n}", t, fmap.field(n)) for n, t in features.items()]
    aligned += [(f"entity {n}", t, fmap.field(dataset.entities[n].key)) for n, t in entities.items()]
    for what, table, fm in aligned:
        if table.shape[0] != fm.vocab_size or fm.vocab_size != FIRST_ID + len(fm.vocab):
            raise RuntimeError(f"{what}: {table.shape[0]} rows for {fm.vocab_size} ids of field {fm.name!r}")
    meta = {"dataset": dataset.name, "fingerprint": fingerprint, "encoder_key": key, "dim": int(vectors.shape[1]),
            "model": encoder.model or "all-MiniLM-L6-v2 (bundled)", "encoder": dump_config(encoder),
            "entity_keys": {n: e.key for n, e in dataset.entities.items()}, "counts": {n: len(t) for n, t in
                                                                                       groups.items()},
            "encode_seconds": round(result.seconds, 3), "seconds": round(time.perf_counter() - t0, 3),
            "job": result.summary(), "cache_hits": result.cache_hits, "prepared": str(data_dir)}
    tables = SemanticTables(fields=[f.name for f in fmap.static_fields], field=pieces["field"].clone(),
                            features=features, entities=entities, meta=meta)
    tables.save(out)
    log.info("semantic tables: %d texts (%d distinct, %d cached, %d encoded) in %.1fs -> %s", result.texts,
             result.unique, result.cache_hits, result.encoded, meta["seconds"], out)
    return out
