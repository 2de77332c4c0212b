"""The in-process engine of ``llmctr data prepare``: the few ``ray.data.Dataset`` operations the pipeline uses,
on one Arrow table in the driver's memory, for logs that fit in it.

``pipeline._stages`` runs unchanged on a ``LocalDataset`` or on a Ray Dataset: the same block functions (parse,
join, label, history, counts, encode) are applied to the whole table at once instead of block by block. Every block
function of the pipeline is row-wise or works on whole users' rows, so the result is the same rows; the temporal
split sorts by the full ``order_by`` key either way, so the splits and their row order are the same too
(tests/test_data_pipeline.py). A ``random`` split draws its shuffle from numpy's seeded generator here and from
Ray's on Ray Data, so the two engines cut random splits differently (each reproducible on its own).

No Ray start, no object store, no per-stage task overhead: on a small log most of a Ray Data prepare's seconds.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from llmctr import storage

ENGINES = ("auto", "ray", "local")
#: raw bytes (main table and joins) up to which ``engine: auto`` prepares in process: ML-1M's files are 25 MB. The
#: in-process engine holds the whole log at once, and a history field's raw lists as Python strings (50 per row on
#: ML-1M: about 1 GB at its 360k rows), so it stays well below what would fill a laptop's memory
LOCAL_MAX_BYTES = 64 << 20


def choose_engine(cfg, source_dir: Path, engine: str = "auto", address: str | None = None) -> str:
    """"ray" or "local" for ``engine``; "auto" is local for raw files up to ``LOCAL_MAX_BYTES`` unless a Ray cluster
    is named (``address`` or ``RAY_ADDRESS``: prepare where the cluster's workers can help)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine != "auto":
        return engine
    if address or os.environ.get("RAY_ADDRESS"):
        return "ray"
    size = sum(t.resolve(source_dir).stat().st_size for t in [cfg.source, *cfg.joins])
    return "local" if size <= LOCAL_MAX_BYTES else "ray"


#: ``by_user`` asks the dataset's context for its shuffle strategy; here every "shuffle" is one in-memory sort
CONTEXT = SimpleNamespace(shuffle_strategy=None, default_hash_shuffle_parallelism=1)


def _arrow(frame: pd.DataFrame | pa.Table) -> pa.Table:
    return frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)


class LocalDataset:
    """One Arrow table with the subset of the Ray Dataset API that ``llmctr.data.pipeline`` calls."""

    context = CONTEXT

    def __init__(self, table: pd.DataFrame | pa.Table):
        self.table = _arrow(table)

    # -- transforms -------------------------------------------------------------------------------------------------
    def map_batches(self, fn: Callable, batch_format: str = "pandas", fn_kwargs: dict | None = None,
                    **_: Any) -> LocalDataset:
        """``fn`` on the whole table as one pandas batch (its batch size does not matter: the pipeline's functions
        are row-wise or take whole users' rows)."""
        if batch_format != "pandas":
            raise ValueError(f"LocalDataset.map_batches takes pandas batches, not {batch_format!r}")
        return LocalDataset(fn(self.table.to_pandas(), **(fn_kwargs or {})))

    def select_columns(self, columns: list[str]) -> LocalDataset:
        return LocalDataset(self.table.select(columns))

    def rename_columns(self, names: dict[str, str]) -> LocalDataset:
        return LocalDataset(self.table.rename_columns([names.get(c, c) for c in self.table.column_names]))

    def sort(self, key: str | list[str]) -> LocalDataset:
        keys = [key] if isinstance(key, str) else list(key)
        return LocalDataset(self.table.sort_by([(k, "ascending") for k in keys]))

    def repartition(self, num_blocks: int, keys: list[str] | None = None, sort: bool = False) -> LocalDataset:
        """One block; sorted by ``keys`` when asked (whole users together, as ``by_user`` needs)."""
        return self.sort(keys) if keys and sort else self

    def random_shuffle(self, seed: int | None = None) -> LocalDataset:
        order = np.random.default_rng(seed).permutation(self.table.num_rows)
        return LocalDataset(self.table.take(pa.array(order)))

    def random_sample(self, fraction: float, seed: int | None = None) -> LocalDataset:
        if fraction >= 1.0:
            return self
        keep = np.random.default_rng(seed).random(self.table.num_rows) < fraction
        return LocalDataset(self.table.filter(pa.array(keep)))

    def split_at_indices(self, indices: list[int]) -> list[LocalDataset]:
        bounds = [0, *indices, self.table.num_rows]
        return [LocalDataset(self.table.slice(a, max(b - a, 0))) for a, b in zip(bounds[:-1], bounds[1:])]

    def groupby(self, keys: list[str], num_partitions: int | None = None) -> _GroupBy:
        return _GroupBy(self.table, keys)

    def materialize(self) -> LocalDataset:
        return self

    # -- results ----------------------------------------------------------------------------------------------------
    def count(self) -> int:
        return self.table.num_rows

    def sum(self, column: str) -> float:
        return float(pc.sum(self.table[column]).as_py() or 0.0)

    def to_pandas(self) -> pd.DataFrame:
        return self.table.to_pandas()

    def iter_rows(self) -> Iterator[dict[str, Any]]:
        return iter(self.table.to_pylist())

    def write_parquet(self, path: str, min_rows_per_file: int | None = None, **_: Any) -> None:
        """Parquet files of ``min_rows_per_file`` rows (a split below it is one file, as Ray Data writes it)."""
        storage.write_parquet(path, self.table, min_rows_per_file)


class _GroupBy:
    def __init__(self, table: pa.Table, keys: list[str]):
        self.table, self.keys = table, keys

    def sum(self, column: str) -> LocalDataset:
        """Column ``sum(<column>)``, as Ray Data names it."""
        out = self.table.group_by(self.keys, use_threads=False).aggregate([(column, "sum")])
        return LocalDataset(out.rename_columns([f"sum({column})" if c == f"{column}_sum" else c
                                                for c in out.column_names]))


def read_table(path: Path, parquet: bool) -> LocalDataset:
    """A raw file as ``ray.data.read_parquet`` / ``read_text(encoding="latin-1", drop_empty_lines=True)`` reads it:
    typed columns, or one ``text`` column of its lines."""
    if parquet:
        return LocalDataset(pq.read_table(str(path)))
    with open(path, encoding="latin-1", newline="") as fh:
        lines = [line for line in fh.read().splitlines() if line.strip() != ""]
    return LocalDataset(pa.table({"text": pa.array(lines, type=pa.string())}))
