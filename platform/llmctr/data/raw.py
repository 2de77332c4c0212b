"""Raw tables → typed pandas frames, one batch at a time, with a reason for every rejected row.

Text files are read as latin-1 (a lossless byte → char mapping, so reading never fails) and each line is
then decoded with the table's declared encoding here, where a failure quarantines that line only.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import ray

from llmctr.data.schema import ColumnSpec, TableSpec

REASON = "__reason"
RAW = "__raw"
SOURCE = "__source"


def column_names(table: TableSpec, path: Path) -> list[str]:
    if table.columns:
        return [c.name for c in table.columns]
    if table.format == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    if not table.header:
        raise ValueError(f"{path}: a table without header must declare its columns")
    with open(path, encoding="latin-1") as fh:
        header = fh.readline().rstrip("\r\n")
    return _split([header], table)[0]


def header_line(table: TableSpec, path: Path) -> str | None:
    if not table.header or table.format == "parquet":
        return None
    with open(path, encoding="latin-1") as fh:
        return fh.readline().rstrip("\r\n")


def read_table(table: TableSpec, path: Path) -> ray.data.Dataset:
    """A Ray Dataset of raw rows: column ``text`` for text formats, typed columns for parquet."""
    if table.format == "parquet":
        return ray.data.read_parquet(str(path))
    return ray.data.read_text(str(path), encoding="latin-1", drop_empty_lines=True)


def _split(lines: list[str], table: TableSpec) -> list[list[str]]:
    if table.format == "csv":
        return list(csv.reader(lines, delimiter=table.delimiter))
    return [line.split(table.delimiter) for line in lines]


def parse_batch(batch: pd.DataFrame, table: TableSpec, names: list[str], header: str | None,
                source: str) -> pd.DataFrame:
    """Parse and type one batch. Every output row keeps ``__raw``; rejected rows carry ``__reason``."""
    if table.format == "parquet":
        frame = batch.reindex(columns=names).astype(object)
        raw = np.asarray([table.delimiter.join("" if pd.isna(v) else str(v) for v in row)
                          for row in frame.itertuples(index=False)], dtype=object)
        reasons = np.full(len(frame), None, dtype=object)
    else:
        frame, raw, reasons = _parse_lines(batch["text"].tolist(), table, names, header)
    columns = {c.name: c for c in table.columns} or {n: ColumnSpec(name=n) for n in names}
    for name, spec in columns.items():
        frame[name] = _coerce(frame[name], spec, reasons)
    frame[REASON] = reasons
    frame[RAW] = raw
    frame[SOURCE] = source
    return frame


def _parse_lines(lines: list[str], table: TableSpec, names: list[str], header: str | None):
    enc = table.encoding.lower().replace("_", "-")
    text, raw, reasons = [], [], []
    for line in lines:
        line = line.rstrip("\r")
        if header is not None and line == header:
            continue
        reason = None
        if enc not in ("latin-1", "latin1", "iso-8859-1") and not line.isascii():
            data = line.encode("latin-1")
            try:
                line = data.decode(table.encoding)
            except UnicodeDecodeError as exc:
                reason = f"undecodable bytes ({table.encoding}): {exc.reason} at byte {exc.start}"
                line = data.decode(table.encoding, errors="backslashreplace")
        text.append(line)
        raw.append(line)
        reasons.append(reason)
    rows = _split(text, table)
    width = len(names)
    for i, row in enumerate(rows):
        if len(row) != width and reasons[i] is None:
            reasons[i] = f"wrong column count: {len(row)} (expected {width})"
        if len(row) != width:
            rows[i] = (row + [None] * width)[:width]
    frame = pd.DataFrame(rows, columns=names, dtype=object) if rows else pd.DataFrame(columns=names)
    return frame, np.asarray(raw, dtype=object), np.asarray(reasons, dtype=object)


def _coerce(values: pd.Series, spec: ColumnSpec, reasons: np.ndarray) -> pd.Series:
    """Type one column in place of strings; record the first problem of each row in ``reasons``."""
    missing = values.isna().to_numpy() | (values.astype(str).str.strip() == "").to_numpy()
    if spec.type == "str":
        return values.where(~missing, "").astype(str)
    numbers = pd.to_numeric(values.where(~missing), errors="coerce")
    bad = numbers.isna().to_numpy() & ~missing
    label = "non-integer" if spec.type == "int" else "non-numeric"
    if spec.type == "int":
        arr = numbers.to_numpy(dtype=float, na_value=np.nan)
        bad |= ~missing & ~np.isnan(arr) & (np.mod(arr, 1) != 0)
    _note(reasons, bad, lambda i: f"{label} {spec.name}: {values.iloc[i]!r}")
    if not spec.nullable:
        _note(reasons, missing, lambda i: f"missing {spec.name}")
    arr = numbers.to_numpy(dtype=float, na_value=np.nan)
    if spec.min is not None or spec.max is not None:
        lo = -np.inf if spec.min is None else spec.min
        hi = np.inf if spec.max is None else spec.max
        out = ~np.isnan(arr) & ((arr < lo) | (arr > hi))
        _note(reasons, out, lambda i: f"{spec.name} out of range [{spec.min}, {spec.max}]: {values.iloc[i]!r}")
    arr = np.where(bad, np.nan, arr)
    if spec.type == "int" and not spec.nullable:
        return pd.Series(np.nan_to_num(arr, nan=0).astype(np.int64), index=values.index)
    return pd.Series(arr, index=values.index)


def _note(reasons: np.ndarray, mask: np.ndarray, message) -> None:
    for i in np.flatnonzero(mask):
        if reasons[i] is None:
            reasons[i] = message(i)
