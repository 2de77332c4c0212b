"""Feeding a training loop dicts of tensors: prepared splits read into memory, or Ray Data shards streamed."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from llmctr import storage
from llmctr.data.feature_map import LABEL

Batch = dict[str, torch.Tensor]


def as_tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor sharing ``array``'s memory. Ray Data's numpy batches are read-only views of Arrow buffers, for
    which torch warns (once per worker, into the driver's log) that writing would be undefined; batches are only
    ever read (or copied by ``torch.cat`` / indexing), so the warning is silenced rather than paying a copy."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(np.ascontiguousarray(array))


def to_tensors(batch: dict[str, np.ndarray], names: list[str]) -> Batch:
    """numpy batch (list columns arrive as object arrays of arrays) → tensors."""
    out = {}
    for name in [*names, LABEL]:
        col = batch[name]
        if col.dtype == object:
            col = np.stack(col)
        out[name] = as_tensor(col)
    return out


def table_to_batch(table: pa.Table, names: list[str]) -> Batch:
    """An Arrow table's input columns and label as tensors (fixed-length list columns as 2-D tensors)."""
    out = {}
    for name in [*names, LABEL]:
        col = table.column(name).combine_chunks()
        if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
            lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
            flat = pc.list_flatten(col).to_numpy(zero_copy_only=False)
            if len(col) and lengths.min() != lengths.max():
                raise ValueError(f"column {name!r} holds lists of different lengths ({lengths.min()}..{lengths.max()})")
            out[name] = as_tensor(flat.reshape(len(col), -1 if len(col) else 0))
        else:
            out[name] = as_tensor(col.to_numpy(zero_copy_only=False))
    return out


def worker_share(rows: int, rank: int = 0, world: int = 1) -> slice:
    """Worker ``rank``'s rows of a split of ``rows`` rows: equal contiguous parts of ``rows // world`` rows (the
    remainder is left out, so every worker takes the same number of steps); all of them with one worker."""
    if world <= 1:
        return slice(0, rows)
    share = rows // world
    return slice(rank * share, (rank + 1) * share)


def read_split(location, names: list[str], rank: int = 0, world: int = 1) -> Batch:
    """A prepared split read straight from its parquet files into tensors, without a Ray Data pipeline (what a
    split that fits in memory needs: a few seconds less per split and per run). With ``world`` > 1, worker
    ``rank``'s share (``worker_share``)."""
    table = storage.read_parquet(location, columns=[*names, LABEL])
    part = worker_share(table.num_rows, rank, world)
    table = table.slice(part.start, part.stop - part.start)
    if table.num_rows == 0:
        raise ValueError(f"empty split: {location}")
    return table_to_batch(table, names)


def memory_batches(data: Batch, batch_size: int, shuffle: bool, seed: int, device: torch.device,
                   lists: tuple[str, int] | None = None) -> Iterator[Batch]:
    """Batches of an in-memory split. ``lists``: (group column, list size) packs each group's rows (e.g. a user's)
    into lists of up to that many rows that lie together in a batch (``packed_order``), for a listwise loss."""
    n = len(data[LABEL])
    gen = torch.Generator().manual_seed(seed)
    if shuffle and lists is not None:
        order = packed_order(data[lists[0]], lists[1], gen)
    else:
        order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        yield {k: v[idx].to(device, non_blocking=True) for k, v in data.items()}


def packed_order(groups: torch.Tensor, list_size: int, gen: torch.Generator) -> torch.Tensor:
    """A permutation of the rows in which each group's rows (shuffled) are cut into lists of ``list_size`` (the
    last one shorter) and the lists are shuffled: consecutive rows of one list stay together, so a batch holds
    whole lists, except where a batch boundary cuts one."""
    if list_size < 1:
        raise ValueError(f"list size must be at least 1, got {list_size}")
    n = len(groups)
    perm = torch.randperm(n, generator=gen)
    by_group = perm[torch.sort(groups[perm], stable=True).indices]
    g = groups[by_group]
    first = torch.ones(n, dtype=torch.bool)
    first[1:] = g[1:] != g[:-1]
    starts = torch.cummax(torch.where(first, torch.arange(n), 0), 0).values
    new_list = first | ((torch.arange(n) - starts) % list_size == 0)
    list_id = torch.cumsum(new_list.long(), 0) - 1
    key = torch.rand(int(list_id[-1]) + 1 if n else 0, generator=gen)[list_id]
    return by_group[torch.sort(key, stable=True).indices]


def list_sizes(groups: torch.Tensor) -> torch.Tensor:
    """Sizes of the lists a listwise loss sees in one batch: rows per distinct group value."""
    return torch.unique(groups, return_counts=True)[1]


def stream_batches(shard, names: list[str], batch_size: int, shuffle: bool, seed: int,
                   device: torch.device) -> Iterator[Batch]:
    it = shard.iter_batches(batch_size=batch_size, batch_format="numpy",
                            local_shuffle_buffer_size=8 * batch_size if shuffle else None,
                            local_shuffle_seed=seed if shuffle else None)
    for b in it:
        yield {k: v.to(device, non_blocking=True) for k, v in to_tensors(b, names).items()}
