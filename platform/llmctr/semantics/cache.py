"""Content-addressed vector cache: (encoder key, text hash) -> vector, as parquet shards.

Layout: ``<root>/<encoder key>/shard-*.parquet`` (columns ``hash`` and ``vector``, fixed-size float32
lists) plus ``encoder.json`` describing the encoder. Each shard is written to a temporary name and
renamed when complete, so an interrupted job leaves only whole shards behind and a re-run encodes only
what is missing.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from llmctr.storage import artifacts_root, is_uri


def default_cache_root(artifacts: str | Path | None = None) -> Path:
    """``<artifacts>/cache/embeddings``; with an object-store artifacts root, ``~/.cache/llmctr/embeddings``."""
    root = artifacts_root(artifacts)
    if is_uri(root):
        return Path.home() / ".cache" / "llmctr" / "embeddings"
    return Path(root) / "cache" / "embeddings"


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class VectorCache:
    def __init__(self, root: str | Path, key: str):
        self.root = Path(root)
        self.key = key
        self.dir = self.root / key

    def describe(self, info: dict) -> None:
        """Write ``encoder.json`` (model, settings, dim) once, for people browsing the cache."""
        path = self.dir / "encoder.json"
        if not path.exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{uuid.uuid4().hex}.tmp")
            tmp.write_text(json.dumps(info, indent=1, default=str))
            tmp.replace(path)

    def shards(self) -> list[Path]:
        return sorted(self.dir.glob("shard-*.parquet")) if self.dir.is_dir() else []

    def load(self, wanted: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Vectors by text hash (only ``wanted`` ones if given)."""
        wanted = set(wanted) if wanted is not None else None
        found: dict[str, np.ndarray] = {}
        for shard in self.shards():
            table = pq.read_table(shard)
            hashes = table.column("hash").to_pylist()
            vectors = table.column("vector").combine_chunks()
            dim = vectors.type.list_size
            matrix = vectors.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
            for h, vec in zip(hashes, matrix):
                if wanted is None or h in wanted:
                    found[h] = vec
        return found

    def write(self, hashes: Sequence[str], vectors: np.ndarray) -> Path:
        """One new shard, atomically (temporary name, then rename)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(hashes) != len(vectors):
            raise ValueError(f"expected {len(hashes)} vectors as a 2-d array, got shape {vectors.shape}")
        self.dir.mkdir(parents=True, exist_ok=True)
        column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1])
        table = pa.table({"hash": pa.array(list(hashes), pa.string()), "vector": column})
        name = f"shard-{uuid.uuid4().hex}.parquet"
        tmp = self.dir / f".{name}.tmp"
        pq.write_table(table, tmp)
        tmp.replace(self.dir / name)
        return self.dir / name
