"""A table of text vectors (row 0 zeros) and, per split, each row's index into it, as the cold-start texts
(``cold_texts``) and the instance texts (``instance_texts``) hand them from the driver to the workers: one
safetensors file, and an index column attached to each split's batch."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from llmctr.train import feed
from llmctr.train.feed import Batch


def attach_rows(batch: Batch, rows: np.ndarray, column: str, split: str, rank: int = 0, world: int = 1) -> Batch:
    """``batch`` (the split, or worker ``rank``'s share of it as ``feed.read_split`` cuts it) with the index column."""
    rows = rows[feed.worker_share(len(rows), rank, world)]
    n = len(next(iter(batch.values())))
    if len(rows) != n:
        raise ValueError(f"the {split} split has {n} rows, its text rows {len(rows)} ({column})")
    return {**batch, column: torch.from_numpy(rows)}


def save_table(path: str | Path, table: torch.Tensor, rows: dict[str, np.ndarray], metadata: dict[str, str]) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tensors = {"table": table.contiguous(), **{f"rows.{s}": torch.from_numpy(r) for s, r in rows.items()}}
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)
    return path


def load_table(path: str | Path) -> tuple[torch.Tensor, dict[str, np.ndarray], dict[str, str]]:
    with safe_open(str(path), "pt") as fh:
        metadata = fh.metadata() or {}
    tensors = load_file(str(path))
    return tensors["table"], {k[5:]: v.numpy() for k, v in tensors.items() if k.startswith("rows.")}, metadata
