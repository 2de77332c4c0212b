"""Cold-start texts in training and evaluation (``history.semantic.cold_texts``, llmctr.semantics.entity_texts): the
rows of each split whose candidate is OOV but whose own describing fields are there (``raw__<field>`` columns of the
prepared splits) get an index into one small table of their texts' vectors, built once through the encoder and its
embedding cache; the model's semantic-history layer holds the table and reads the index column.

In process (benchmarks/lib/inprocess.py) the table is built from the splits held in memory; in a Ray Train job the
driver builds it (``prepare_cold_texts``) and the workers load it (``ColdTexts.load``). A train split streamed
through Ray Data carries no index column (its OOV candidates keep the "unknown" vector); valid and test always do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from llmctr import storage
from llmctr.config import dump_config, parse_config
from llmctr.data import FeatureMap, load_dataset_config
from llmctr.data.feature_map import OOV_ID, RAW_PREFIX
from llmctr.data.pipeline import SPLITS
from llmctr.models.ctr_model import semantic_entity
from llmctr.models.layers import FieldInput, SemanticHistory
from llmctr.models.layers.semantic_history import text_row_key
from llmctr.semantics.encoders import EncoderConfig
from llmctr.semantics.entity_texts import EntityTexts, oov_texts, text_table
from llmctr.train.ctr.config import ExperimentConfig
from llmctr.train.ctr.row_tables import attach_rows, load_table, save_table
from llmctr.train.feed import Batch

COLD_TEXTS = "cold_texts.safetensors"


def entity_texts_of(exp: ExperimentConfig, fmap: FeatureMap, semantics: Any) -> EntityTexts | None:
    """What renders the experiment's cold-start texts (None unless a model of it has ``history.semantic.cold_texts``;
    an ELEC teacher counts): the history's entity and the encoder that built ``semantics``."""
    configs = [exp.model, exp.distill.teacher if exp.distill is not None else None]
    config = next((c for c in configs if c is not None and c.history is not None and c.history.semantic is not None
                   and c.history.semantic.cold_texts), None)
    if config is None:
        return None
    if semantics is None:
        raise ValueError("history.semantic.cold_texts needs the semantic tables (the experiment's semantics section)")
    name = semantic_entity(FieldInput.from_feature_map(fmap), config, semantics)
    meta = semantics.meta or {}
    if "encoder" not in meta or "encoder_key" not in meta:
        raise ValueError("the semantic tables' meta lacks its encoder (rebuild them: llmctr encode DATASET)")
    encoder = parse_config(EncoderConfig, meta["encoder"], "semantic tables' encoder")
    return EntityTexts.of(load_dataset_config(exp.dataset), name, encoder, meta["encoder_key"])


def split_texts(raw: pd.DataFrame, ids: np.ndarray, spec: EntityTexts) -> list[str | None]:
    """One text or None per row of a split: ``raw``, its ``raw__`` columns; ``ids``, its candidate key's ids."""
    columns = [RAW_PREFIX + n for n in spec.names]
    missing = [c for c in columns if c not in raw.columns]
    if missing:
        raise ValueError(f"cold-start texts of entity {spec.entity!r} need the split's columns {missing} "
                         f"(the prepared split's raw values of its fields {spec.names})")
    oov = np.flatnonzero(np.asarray(ids) == OOV_ID)
    records = raw[columns].iloc[oov].set_axis(spec.names, axis=1).to_dict("records")
    return oov_texts(dict(zip(oov.tolist(), records)), ids, spec.fields)


@dataclass
class ColdTexts:
    spec: EntityTexts
    table: torch.Tensor  # [K + 1, S], row 0 zeros
    rows: dict[str, np.ndarray]  # per split, each row's index in ``table`` (0: none)

    @classmethod
    def build(cls, spec: EntityTexts, raw: dict[str, pd.DataFrame], ids: dict[str, np.ndarray],
              cache_root: str | Path | None = None) -> ColdTexts:
        texts = {split: split_texts(raw[split], ids[split], spec) for split in raw}
        table, rows = text_table(texts, spec, cache_root)
        return cls(spec, table, rows)

    def install(self, model: torch.nn.Module) -> int:
        """Give the table to every semantic-history layer of ``model`` that reads cold-start texts; how many."""
        layers = [m for m in model.modules() if isinstance(m, SemanticHistory) and m.config.cold_texts]
        for layer in layers:  # a table of no texts is one zero row of any width
            layer.set_texts(self.table if len(self.table) > 1 else torch.zeros(1, layer.config.dim))
        return len(layers)

    def attach(self, batch: Batch, split: str, rank: int = 0, world: int = 1) -> Batch:
        """``batch`` (the split, or worker ``rank``'s share of it as ``feed.read_split`` cuts it) with its index
        column."""
        return attach_rows(batch, self.rows[split], text_row_key(self.spec.key), split, rank, world)

    def count(self, split: str) -> int:
        return int((self.rows[split] > 0).sum())

    def save(self, path: str | Path) -> Path:
        return save_table(path, self.table, self.rows, {"spec": json.dumps(dump_config(self.spec))})

    @classmethod
    def load(cls, path: str | Path) -> ColdTexts:
        table, rows, metadata = load_table(path)
        return cls(parse_config(EntityTexts, json.loads(metadata["spec"]), str(path)), table, rows)


def prepare_cold_texts(exp: ExperimentConfig, fmap: FeatureMap, semantics_dir: str | None, data_dir,
                       cache_root: Path) -> tuple[str | None, EntityTexts | None, dict[str, int]]:
    """Driver side: (the file the workers load, what renders the texts, OOV rows with a text per split); (None,
    None, {}) when the experiment reads no cold-start texts."""
    from llmctr.semantics.tables import SemanticTables

    semantics = SemanticTables.load(semantics_dir) if semantics_dir else None
    spec = entity_texts_of(exp, fmap, semantics)
    if spec is None:
        return None, None, {}
    columns = [RAW_PREFIX + n for n in spec.names]
    # the rows in feed.read_split's order (storage.read_parquet), which the workers' splits keep
    raw = {s: storage.read_parquet(storage.join(data_dir, s), columns=[spec.key, *columns]).to_pandas()
           for s in SPLITS}
    cold = ColdTexts.build(spec, {s: f[columns] for s, f in raw.items()},
                           {s: f[spec.key].to_numpy() for s, f in raw.items()}, cache_root)
    path = cold.save(Path(semantics_dir) / f"{spec.entity}.{COLD_TEXTS}")
    return str(path), spec, {s: cold.count(s) for s in SPLITS}
