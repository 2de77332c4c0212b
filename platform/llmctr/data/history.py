"""Behaviour history (the ``sequence`` field kind): for every row of the log, the ``of`` values of the same user's
last ``max_len`` rows strictly before the row's time, most recent first, with their labels.

``user_history`` is the block function (pure pandas/numpy, vectorised over whole users' rows); ``add_history`` runs
it on Ray Data over the whole labelled log, partitioned so that each block holds whole users (``by_user``, as
``groupby(user).map_groups`` does, without a Python call per user), before the split, so a valid or test row sees
the earlier train and valid rows as a served request would. Rows with the same time are never history of each other.
The lists hold raw ``of`` values; the feature map's encoder maps them through the ``of`` field's vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from llmctr.data.schema import DatasetConfig

PAD_ID, OOV_ID = 0, 1  # as in llmctr.data.feature_map (which imports this module)


def label_column(name: str) -> str:
    """The column with the labels of a sequence field's history."""
    return f"{name}_label"


def user_history(group: pd.DataFrame, *, name: str, item: str, order_by: str, max_len: int,
                 with_label: bool = True, label: str = "label", user: str | None = None) -> pd.DataFrame:
    """Rows with column ``name`` (the ``item`` values of the same user's rows strictly earlier in ``order_by``, the
    last ``max_len`` of them, most recent first) and, with ``with_label``, ``<name>_label`` (their labels as 0/1).
    ``group`` holds one user's rows, or with ``user`` (the user column) any number of whole users' rows, done in one
    vectorised pass.

    Rows are sorted by (``user``, ``order_by``, ``item``, ``label``), so entries that share a time come in a fixed
    order (the larger item first, as the list is most recent first); a row's history stops before the first row of
    its own time, so rows with the same time are not history of each other.
    """
    group, start, stop = _sorted_bounds(group, user, order_by, item, label)
    start = np.maximum(stop - max_len, start)
    items = group[item].to_numpy()
    group[name] = [items[a:b][::-1] for a, b in zip(start, stop)]
    if with_label:
        labels = np.rint(group[label].to_numpy(np.float64)).astype(np.int64)
        group[label_column(name)] = [labels[a:b][::-1] for a, b in zip(start, stop)]
    return group


def _sorted_bounds(group: pd.DataFrame, user: str | None, order_by: str, item: str, label: str
                   ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """``group`` sorted by (user, time, item, label), with each row's index of its user's first row and of the first
    row of its own (user, time)."""
    keys = [c for c in (user, order_by, item, label) if c is not None and c in group.columns]
    group = group.sort_values(keys, kind="stable", ignore_index=True)
    index = np.arange(len(group))
    new_user = index == 0
    if user is not None:
        users = group[user].to_numpy()
        new_user[1:] = users[1:] != users[:-1]
    times = group[order_by].to_numpy()
    new_time = new_user.copy()
    new_time[1:] |= times[1:] != times[:-1]
    return (group, np.maximum.accumulate(np.where(new_user, index, 0)),
            np.maximum.accumulate(np.where(new_time, index, 0)))


def _history_table(group: pd.DataFrame, specs: list[dict[str, Any]]) -> pa.Table:
    """Each sequence field's history (and labels) for one group of whole users, as ``user_history`` computes them,
    built as Arrow list columns straight from the sorted rows (no Python list per row; explicit list types, so an
    all-empty block still concatenates with the others). Rows come out in the last field's sort order."""
    group = group.assign(**{ROW: np.arange(len(group))})
    built: list[tuple[np.ndarray, dict[str, pa.Array]]] = []
    for spec in specs:
        group, start, stop = _sorted_bounds(group, spec["user"], spec["order_by"], spec["item"], spec["label"])
        lengths = stop - np.maximum(stop - spec["max_len"], start)
        offsets = pa.array(np.r_[0, np.cumsum(lengths)], pa.int32())
        # most recent first: row r lists rows stop[r]-1, stop[r]-2, ... (its user's earlier times)
        index = np.repeat(stop - 1, lengths) - column_in_row(lengths)
        lists = {spec["name"]: pa.ListArray.from_arrays(offsets, pa.array(group[spec["item"]].to_numpy()[index]))}
        if spec["with_label"]:
            labels = np.rint(group[spec["label"]].to_numpy(np.float64)).astype(np.int64)[index]
            lists[label_column(spec["name"])] = pa.ListArray.from_arrays(offsets, pa.array(labels, pa.int64()))
        built.append((group[ROW].to_numpy(), lists))
    final = group[ROW].to_numpy()
    table = pa.Table.from_pandas(group.drop(columns=ROW), preserve_index=False)
    for rows, lists in built:  # an earlier field's lists follow its own sort order: put them in the final one
        take = None if np.array_equal(rows, final) else pa.array(np.argsort(rows)[final])
        for col, values in lists.items():
            table = table.append_column(col, values if take is None else values.take(take))
    return table


ROW = "__history_row"


#: rows per hash partition of the per-user shuffles: Ray Data's default is 200 partitions whatever the size, and on a
#: small log most of a shuffle's time went to its (nearly) empty partitions: on a busy 2-core machine the two per-user
#: shuffles of a 12,000-row log took 30 s and 40 s with 200 partitions, 13 s and 13 s with 1
ROWS_PER_PARTITION = 50_000
MAX_PARTITIONS = 200


def shuffle_partitions(rows: int) -> int:
    """How many hash partitions a per-user shuffle of ``rows`` rows uses (1 … 200). Every output row depends on its
    user's rows only, so the result is the same for any count; only the order of the rows changes."""
    return max(1, min(MAX_PARTITIONS, -(-rows // ROWS_PER_PARTITION)))


def add_history(ds, cfg: DatasetConfig, label: str = "label", partitions: int | None = None):
    """The labelled log with each sequence field's raw history columns, computed on Ray Data per ``group_by``
    (never collected on the driver) in ``partitions`` hash partitions (Ray Data's default when None)."""
    by_group: dict[str, list[dict[str, Any]]] = {}
    for spec in cfg.sequence_fields:
        item, user, time = cfg.sequence_columns(spec)
        by_group.setdefault(user, []).append(dict(name=spec.name, item=item, order_by=time, max_len=spec.max_len,
                                                  with_label=spec.with_label, label=label, user=user))
    for key, specs in by_group.items():
        ds = by_user(ds, key, partitions).map_batches(_history_table, batch_size=None, batch_format="pandas",
                                                      fn_kwargs={"specs": specs})
    return ds


def by_user(ds, key: str, partitions: int | None):
    """``ds`` with every ``key`` value's rows inside one block (as ``groupby(key).map_groups`` arranges them), so a
    block-wide function sees whole users: hash partitions sorted by key, or a sort under a sort-based shuffle."""
    from ray.data.context import ShuffleStrategy

    if ds.context.shuffle_strategy in (ShuffleStrategy.HASH_SHUFFLE, ShuffleStrategy.SHUFFLE_V2):
        return ds.repartition(partitions or ds.context.default_hash_shuffle_parallelism, keys=[key], sort=True)
    return ds.sort(key)


def latest_history(group: pd.DataFrame, *, item: str, user: str, order_by: str, max_len: int,
                   label: str = "label") -> pd.DataFrame:
    """One row per user of ``group`` (whole users' rows): the ``item`` values and labels of their last ``max_len``
    rows, most recent first, in the order ``user_history`` lists them (what a request after the end of the log
    would carry)."""
    group, first, _ = _sorted_bounds(group, user, order_by, item, label)
    n = len(group)
    ends = np.flatnonzero(np.r_[first[1:] != first[:-1], True]) + 1 if n else np.array([], dtype=np.int64)
    starts = np.maximum(ends - max_len, first[ends - 1]) if n else ends
    items = group[item].to_numpy()
    labels = np.rint(group[label].to_numpy(np.float64)).astype(np.int64)
    return pd.DataFrame({"user": [str(u) for u in group[user].to_numpy()[ends - 1]],
                         "items": [items[a:b][::-1].tolist() for a, b in zip(starts, ends)],
                         "labels": [labels[a:b][::-1].tolist() for a, b in zip(starts, ends)]})


def latest_histories(ds, cfg: DatasetConfig, label: str = "label",
                     partitions: int | None = None) -> dict[str, dict[str, Any]]:
    """Per sequence field, ``{"spec": ..., "users": {user: {"items": [...], "labels": [...]}}}``: each user's
    last interactions as of the end of the log (Ray Data groups; one small row per user reaches the driver)."""
    out = {}
    for spec in cfg.sequence_fields:
        item, user, time = cfg.sequence_columns(spec)
        rows = by_user(ds.select_columns([item, user, time, label]), user, partitions).map_batches(
            latest_history, batch_size=None, batch_format="pandas",
            fn_kwargs={"item": item, "user": user, "order_by": time, "max_len": spec.max_len, "label": label})
        users = {r["user"]: {"items": _plain(r["items"]), "labels": [int(x) for x in r["labels"]]}
                 for r in rows.iter_rows()}
        out[spec.name] = {"spec": {"field": spec.name, "of": spec.of, "group_by": spec.group_by,
                                   "max_len": spec.max_len, "with_label": spec.with_label}, "users": users}
    return out


def _plain(values) -> list[Any]:
    return [v.item() if isinstance(v, np.generic) else v for v in values]


# -- encoding (used by the feature map) ------------------------------------------------------------------------------
def as_list(value: Any) -> list[Any]:
    """A sequence field's raw value as a list (None / NaN = empty history)."""
    if value is None:
        return []
    if isinstance(value, (list, tuple, np.ndarray, pd.Series)):
        return list(value)
    if isinstance(value, float) and np.isnan(value):
        return []
    raise ValueError(f"a sequence field takes a list of values, got {type(value).__name__} {value!r}")


def object_array(values: list[Any]) -> np.ndarray:
    """A 1-D object array of the values (lists stay lists, even when all have the same length)."""
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


def flat_lists(values: Sequence[Any], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Lists of raw values (None / NaN = empty) → (each row's length, clipped to ``max_len``; the kept values in row
    order as one flat object array): the vectorised form the data pipeline encodes from."""
    lists = [v if isinstance(v, np.ndarray) else np.asarray(as_list(v), dtype=object) for v in values]
    lengths = np.fromiter(map(len, lists), np.int64, len(lists))
    if not lengths.any():
        return lengths, np.empty(0, dtype=object)
    flat = np.concatenate([x.astype(object, copy=False) for x in lists])
    return np.minimum(lengths, max_len), flat[column_in_row(lengths) < max_len]


def column_in_row(lengths: np.ndarray) -> np.ndarray:
    """For lists of ``lengths`` laid end to end, each element's position within its own list (0, 1, ..)."""
    return np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)


def positions(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of every element of ``flat_lists``' flat array in a [rows, max_len] matrix."""
    return np.repeat(np.arange(len(lengths)), lengths), column_in_row(lengths)


def encode_ids(values: Sequence[Any], index: Mapping[str, int], max_len: int, key: Callable[[Any], str]
               ) -> np.ndarray:
    """Lists of raw values → [rows, max_len] ids (``index`` of ``key(value)``, unknown → OOV, padding 0),
    looking each distinct value up once (the data pipeline's path)."""
    lengths, flat = flat_lists(values, max_len)
    out = np.full((len(lengths), max_len), PAD_ID, dtype=np.int64)
    if len(flat) == 0:
        return out
    codes, uniques = pd.factorize(flat, use_na_sentinel=False)
    ids = np.fromiter((index.get(key(u), OOV_ID) for u in uniques), np.int64, len(uniques))
    out[positions(lengths)] = ids[codes]
    return out


def encode_labels(values: Sequence[Any], max_len: int) -> np.ndarray:
    """Lists of 0/1 labels (None = empty) → [rows, max_len] int64, padding 0."""
    lengths, flat = flat_lists(values, max_len)
    out = np.zeros((len(lengths), max_len), dtype=np.int64)
    if len(flat) == 0:
        return out
    try:  # numbers (the usual 0/1; None → NaN → 0): one conversion
        bits = np.asarray(flat, dtype=np.float64) >= 0.5
    except (TypeError, ValueError):
        bits = np.fromiter((_number(v) >= 0.5 for v in flat), bool, len(flat))
    out[positions(lengths)] = bits
    return out


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0
