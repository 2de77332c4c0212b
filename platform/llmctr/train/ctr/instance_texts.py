"""Instance texts in training (``distill.instance: texts``, llmctr.semantics.instance_texts): every row of every split
gets its own text, encoded once before training through the embedding job and its cache; the ELEC teacher's
``InstanceSemantics`` holds the table and reads the batch's ``INSTANCE_ROW`` column. The student never reads it, so
nothing of it is served.

In process (benchmarks/lib/inprocess.py) the table is built from the splits read in the same order; in a Ray Train
job the driver builds and saves it (``prepare_instance_texts``) and the workers load it. The train split must be read
into memory (``train.feed: memory``, or ``auto`` under ``max_memory_rows``): a split streamed through Ray Data carries
no index column.
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
from llmctr.data import load_dataset_config
from llmctr.data.pipeline import SPLITS
from llmctr.models.distill import INSTANCE_ROW, InstanceSemantics
from llmctr.semantics.instance_texts import InstanceTextRenderer, encode_instance_texts
from llmctr.train.ctr.config import ExperimentConfig
from llmctr.train.ctr.row_tables import attach_rows, load_table, save_table
from llmctr.train.feed import Batch

INSTANCE_TEXTS = "instance_texts.safetensors"


def reads_instance_texts(exp: ExperimentConfig) -> bool:
    return exp.distill is not None and exp.distill.instance == "texts"


@dataclass
class InstanceTexts:
    table: torch.Tensor  # [K + 1, S], row 0 zeros
    rows: dict[str, np.ndarray]  # per split, each row's index in ``table``
    info: dict[str, Any]  # rows, distinct texts, encoded, seconds, an example

    @classmethod
    def build(cls, exp: ExperimentConfig, frames: dict[str, pd.DataFrame], cache_root: str | Path | None,
              use_ray: bool = True) -> InstanceTexts:
        """``frames``: each split with ``columns(exp)``, its rows in the order the training reads them."""
        table, rows, info = encode_instance_texts(frames, load_dataset_config(exp.dataset), exp.distill.instance_texts,
                                                  exp.semantics.encoder, cache_root, use_ray)
        return cls(table, rows, info)

    def install(self, model: torch.nn.Module) -> int:
        """Give the table to every instance-text reader of ``model``; how many."""
        readers = [m for m in model.modules() if isinstance(m, InstanceSemantics) and m.mode == "rows"]
        for reader in readers:
            reader.set_rows(self.table)
        return len(readers)

    def attach(self, batch: Batch, split: str, rank: int = 0, world: int = 1) -> Batch:
        return attach_rows(batch, self.rows[split], INSTANCE_ROW, split, rank, world)

    def save(self, path: str | Path) -> Path:
        return save_table(path, self.table, self.rows, {"info": json.dumps(self.info)})

    @classmethod
    def load(cls, path: str | Path) -> InstanceTexts:
        table, rows, metadata = load_table(path)
        return cls(table, rows, json.loads(metadata.get("info", "{}")))


def columns(exp: ExperimentConfig) -> list[str]:
    """The split columns the experiment's instance texts are rendered from."""
    return InstanceTextRenderer(load_dataset_config(exp.dataset), exp.distill.instance_texts).columns


def prepare_instance_texts(exp: ExperimentConfig, data_dir, out_dir: str | Path, cache_root: Path, memory: bool
                           ) -> tuple[str | None, dict[str, Any]]:
    """Driver side: (the file the workers load, what building it took); (None, {}) unless the experiment reads
    instance texts."""
    if not reads_instance_texts(exp):
        return None, {}
    if not memory:
        raise ValueError("distill.instance: texts needs the train split in memory (train.feed: memory, or auto with "
                         "train.max_memory_rows above the split's rows): a streamed split carries no text rows")
    wanted = columns(exp)
    # the rows in feed.read_split's order (storage.read_parquet), which the workers' splits keep
    frames = {s: storage.read_parquet(storage.join(data_dir, s), columns=wanted).to_pandas() for s in SPLITS}
    texts = InstanceTexts.build(exp, frames, cache_root)
    c = exp.distill.instance_texts
    path = texts.save(Path(out_dir) / f"{c.history_field}_{c.liked}_{c.disliked}.{INSTANCE_TEXTS}")
    return str(path), texts.info
