"""Nearest-neighbour search over a table of vectors whose rows carry ids (feature-map ids in the retriever).

Two backends behind one ``search(queries, k) -> (ids, scores)``:
- ``faiss``: ``flat`` (exact inner product), ``ivf`` (inverted lists: k-means cells, ``nprobe`` of them searched)
  or ``hnsw`` (a navigable small-world graph); ``auto`` is exact below ``exact_below`` vectors and HNSW above (no
  training step, and the best recall per query-millisecond on CPU at millions of rows; choose ``ivf`` where its
  smaller memory matters). Flat and IVF move to every GPU when a GPU build of faiss is importable.
- ``torch``: exact top-k by one matmul, on the GPU when there is one (faiss-gpu cannot be installed everywhere a
  GPU is: a matmul over a few million rows is what a GPU does best anyway).

Cosine similarity is the inner product of L2-normalised vectors (``normalize=True``, the default); with
``normalize=False`` the raw inner product is searched (the score LightGCN's BPR trained). Rows short of ``k``
results are padded with id -1 and score -inf.
"""

from __future__ import annotations

import logging
import math
from typing import Literal

import numpy as np
import torch

IndexKind = Literal["auto", "flat", "ivf", "hnsw"]
Backend = Literal["faiss", "torch"]
KINDS, BACKENDS = ("auto", "flat", "ivf", "hnsw"), ("faiss", "torch")


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; zero rows stay zero."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def pad_results(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Result rows widened to ``k`` columns with id -1 and score -inf (faiss's "no result")."""
    width = k - ids.shape[1]
    if width > 0:
        ids = np.pad(ids, ((0, 0), (0, width)), constant_values=-1)
        scores = np.pad(scores, ((0, 0), (0, width)), constant_values=-np.inf)
    return ids.astype(np.int64), scores.astype(np.float32)


def _faiss():
    """faiss, imported without its loader's INFO lines about which CPU build it picked."""
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    import faiss

    return faiss


def gpu_faiss_available() -> bool:
    faiss = _faiss()

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


class VectorIndex:
    def __init__(self, vectors: np.ndarray, ids: np.ndarray | None = None, kind: IndexKind = "auto",
                 normalize: bool = True, backend: Backend = "faiss", exact_below: int = 50_000,
                 nlist: int | None = None, nprobe: int | None = None, hnsw_m: int = 32, ef_search: int = 128,
                 ef_construction: int = 200, seed: int = 0, device: str | None = None):
        """``ids``: the id of each row (default 0..n-1); ``nlist`` / ``nprobe``: IVF cells and cells searched
        (default ~4 sqrt(n) and a quarter of them, at least 8); ``hnsw_m`` / ``ef_*``: HNSW links per node and
        candidate-list sizes; ``device``: the torch backend's (default cuda when available)."""
        if kind not in KINDS:
            raise ValueError(f"index kind must be one of {KINDS}, got {kind!r}")
        if backend not in BACKENDS:
            raise ValueError(f"index backend must be one of {BACKENDS}, got {backend!r}")
        vectors = np.asarray(vectors, np.float32)
        if vectors.ndim != 2:
            raise ValueError(f"vectors must be a 2-d array [n, d], got shape {vectors.shape}")
        self.normalize, self.backend = normalize, backend
        self.vectors = np.ascontiguousarray(l2_normalize(vectors) if normalize else vectors)
        self.ids = np.arange(len(vectors), dtype=np.int64) if ids is None else np.asarray(ids, np.int64)
        if len(self.ids) != len(vectors):
            raise ValueError(f"{len(self.ids)} ids for {len(vectors)} vectors")
        if backend == "torch":
            if kind in ("ivf", "hnsw"):
                raise ValueError(f"the torch backend searches exactly: use kind 'flat' or 'auto', not {kind!r}")
            self.kind = "flat"
            self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
            self._matrix = torch.from_numpy(self.vectors).to(self.device)
            return
        self.kind = kind if kind != "auto" else ("flat" if len(vectors) < exact_below else "hnsw")
        self.device = torch.device("cpu")
        self._faiss = self._build_faiss(nlist, nprobe, hnsw_m, ef_search, ef_construction, seed)

    def _build_faiss(self, nlist, nprobe, hnsw_m, ef_search, ef_construction, seed):
        faiss = _faiss()

        n, d = self.vectors.shape
        if self.kind == "flat":
            index = faiss.IndexFlatIP(d)
        elif self.kind == "ivf":
            nlist = nlist or max(1, min(int(4 * math.sqrt(n)), n // 39))  # faiss wants >= 39 points per cell
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = seed
            index.train(self.vectors)
            index.nprobe = min(nlist, nprobe or max(8, nlist // 4))
        else:
            index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = ef_construction
            index.hnsw.efSearch = ef_search
        index.add(self.vectors)
        if self.kind != "hnsw" and gpu_faiss_available():  # faiss has no GPU HNSW
            index = faiss.index_cpu_to_all_gpus(index)
            self.device = torch.device("cuda")
        return index

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` rows with the highest inner product (cosine when normalised) per query, best first:
        (ids int64 [n, k], scores float32 [n, k])."""
        queries = np.asarray(queries, np.float32).reshape(-1, self.dim)
        queries = np.ascontiguousarray(l2_normalize(queries) if self.normalize else queries)
        reach = min(k, len(self))
        if reach == 0 or len(queries) == 0:
            positions, scores = np.full((len(queries), 0), -1, np.int64), np.zeros((len(queries), 0), np.float32)
        elif self.backend == "torch":
            positions, scores = self._search_torch(queries, reach)
        else:
            scores, positions = self._faiss.search(queries, reach)
        ids = np.where(positions >= 0, self.ids[positions.clip(min=0)], -1)
        return pad_results(ids, np.where(positions >= 0, scores, -np.inf), k)

    @torch.inference_mode()
    def _search_torch(self, queries: np.ndarray, k: int, max_elements: int = 1 << 26
                      ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k, in query chunks that keep the score matrix under ``max_elements``."""
        chunk = max(1, max_elements // max(len(self), 1))
        positions, scores = [], []
        for start in range(0, len(queries), chunk):
            q = torch.from_numpy(queries[start:start + chunk]).to(self.device)
            top = torch.topk(q @ self._matrix.T, k, dim=1)
            positions.append(top.indices.cpu().numpy())
            scores.append(top.values.float().cpu().numpy())
        return np.concatenate(positions).astype(np.int64), np.concatenate(scores)
