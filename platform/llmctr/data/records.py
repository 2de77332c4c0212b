"""Prepared rows back as raw records (field → value as in the raw data): what a client sends to the scoring
endpoint, from a frame or, a batch at a time, from a prepared parquet split."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from llmctr import storage
from llmctr.data import history
from llmctr.data.feature_map import RAW_PREFIX, FeatureMap


def raw_records(frame: pd.DataFrame, fmap: FeatureMap) -> list[dict[str, Any]]:
    """Rows of a prepared split back as raw records (field → value as in the raw data), from the
    ``raw__`` columns: what a client would send to the scoring endpoint."""
    cols = {}
    for f in fmap.fields:
        values = frame[RAW_PREFIX + f.name]
        if f.kind == "sequence":
            cols[f.name] = [history.as_list(v) for v in values]
            if f.with_label:
                labels = frame[f.label_name] if f.label_name in frame else [None] * len(frame)
                cols[f.label_name] = [[int(x) for x in history.as_list(lab)[: len(v)]]
                                      for lab, v in zip(labels, cols[f.name])]
            continue
        if f.kind == "numeric":
            values = pd.to_numeric(values, errors="coerce").astype(object).where(values != "", None)
        cols[f.name] = values.tolist()
    return [dict(zip(cols, row)) for row in zip(*cols.values())]


def parquet_records(location: storage.Location, fmap: FeatureMap, limit: int | None = None,
                    batch_rows: int = 50_000) -> tuple[Iterator[list[dict[str, Any]]], int]:
    """A prepared split's rows (local or a URI) as raw records, ``batch_rows`` at a time (the split is never read
    whole), in ``storage.read_parquet``'s order, and how many there are (at most ``limit``)."""
    fs, files = storage.parquet_files(location)
    parts = [pq.ParquetFile(f, filesystem=fs) for f in files]
    rows = sum(part.metadata.num_rows for part in parts)
    total = rows if limit is None else min(limit, rows)
    labels = {f.label_name for f in fmap.fields if f.kind == "sequence" and f.with_label}
    columns = [c for c in parts[0].schema_arrow.names if c.startswith(RAW_PREFIX) or c in labels]

    def batches() -> Iterator[list[dict[str, Any]]]:
        left = total
        for part in parts:
            for batch in part.iter_batches(batch_size=batch_rows, columns=columns):
                if left <= 0:
                    return
                frame = batch.to_pandas().head(left)
                left -= len(frame)
                yield raw_records(frame, fmap)

    return batches(), total
