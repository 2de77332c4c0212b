"""Feeding Ray Data shards to a training loop as dicts of tensors."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import torch

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


def load_all(shard, names: list[str], chunk: int = 65536) -> Batch:
    """A whole shard as tensors in memory."""
    parts = [to_tensors(b, names) for b in shard.iter_batches(batch_size=chunk, batch_format="numpy")]
    if not parts:
        raise ValueError("empty dataset shard")
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def memory_batches(data: Batch, batch_size: int, shuffle: bool, seed: int, device: torch.device) -> Iterator[Batch]:
    n = len(data[LABEL])
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        yield {k: v[idx].to(device, non_blocking=True) for k, v in data.items()}


def stream_batches(shard, names: list[str], batch_size: int, shuffle: bool, seed: int,
                   device: torch.device) -> Iterator[Batch]:
    it = shard.iter_batches(batch_size=batch_size, batch_format="numpy",
                            local_shuffle_buffer_size=8 * batch_size if shuffle else None,
                            local_shuffle_seed=seed if shuffle else None)
    for b in it:
        yield {k: v.to(device, non_blocking=True) for k, v in to_tensors(b, names).items()}
