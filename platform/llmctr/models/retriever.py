"""The retriever as a loaded artifact: LightGCN vectors (``llmctr retriever train``) behind vector indexes, answering
"the k items / users most related to this request" for the scoring graph and the early-exit LLM head's RAG
context. Every method takes a batch of feature-map ids and never raises on an id it does not know.

Known ids are those with at least one edge in the training graph (other rows of the tables were never trained);
padding, OOV and untrained rows are never returned. Unknown queries fall back as follows:
- ``items_for_users``: an unknown user is served as the average known user (items most users score high);
- ``similar_items`` / ``similar_users``: nothing is similar to an unknown id: the row is all -1 / -inf;
- ``history_neighbours``: an unknown user gets the candidate's similar items with label -1; a known user with an
  unknown candidate gets their most recent train interactions with similarity 0.0.
Rows short of k results are padded with id -1 and score -inf (as faiss does).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from safetensors.numpy import load_file

from llmctr import storage
from llmctr.data.feature_map import FIRST_ID, FeatureMap
from llmctr.data.interactions import UserItems, contains
from llmctr.models.vector_index import Backend, IndexKind, VectorIndex, l2_normalize, pad_results

#: the artifact's files (written by ``llmctr.train.retriever``)
VECTORS, HISTORY, META = "vectors.safetensors", "history.safetensors", "retriever.json"
UNKNOWN_LABEL = -1


def _keep_first(ids: np.ndarray, scores: np.ndarray, drop: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the first ``k`` results that are neither padding nor ``drop``ped, order kept, padded with -1."""
    keep = (ids >= 0) & ~drop
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    kept = np.take_along_axis(keep, order, 1)
    return pad_results(np.where(kept, np.take_along_axis(ids, order, 1), -1),
                       np.where(kept, np.take_along_axis(scores, order, 1), -np.inf), k)


def _lookup(known: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``known[ids]``, False for ids outside the table."""
    ids = np.asarray(ids, np.int64).ravel()
    inside = (ids >= 0) & (ids < len(known))
    return inside & known[np.where(inside, ids, 0)]


class Retriever:
    def __init__(self, vectors: dict[str, np.ndarray], history: UserItems, fmap: FeatureMap, meta: dict[str, Any],
                 index_kind: IndexKind = "auto", backend: Backend = "faiss"):
        self.fmap, self.meta = fmap, meta
        self.user_field: str = meta["user_field"]
        self.item_field: str = meta["item_field"]
        self.version: str = meta["version"]
        self.user_vectors = np.asarray(vectors["user"], np.float32)
        self.item_vectors = np.asarray(vectors["item"], np.float32)
        self.history = history
        self.n_users, self.n_items = len(self.user_vectors), len(self.item_vectors)
        users, items = history.rows().edges(meta["config"]["edges"])
        self._user_known = np.bincount(users, minlength=self.n_users) > 0
        self._item_known = np.bincount(items, minlength=self.n_items) > 0
        known_users, known_items = np.flatnonzero(self._user_known), np.flatnonzero(self._item_known)
        self._mean_user = self.user_vectors[known_users].mean(0) if len(known_users) else self.user_vectors[0] * 0
        self._item_unit = l2_normalize(self.item_vectors)
        # "auto": the kind the retriever's config names, itself "auto" (exact below a size) unless set there
        kind = meta["config"].get("index_kind", "auto") if index_kind == "auto" else index_kind
        options = {"kind": kind, "backend": backend}
        self.user_index = VectorIndex(self.user_vectors[known_users], known_users, **options)
        self.item_index = VectorIndex(self.item_vectors[known_items], known_items, **options)
        self.score_index = VectorIndex(self.item_vectors[known_items], known_items, normalize=False, **options)

    @classmethod
    def load(cls, path: storage.Location, index_kind: str = "auto", backend: str = "faiss") -> Retriever:
        """Load an artifact folder, or its parent (the newest version, named by LATEST); never unpickles."""
        folder = storage.local_copy(storage.resolve_version(
            path, VECTORS, what="retriever artifact (train one with: llmctr retriever train NAME)"))
        meta = json.loads((Path(folder) / META).read_text())
        arrays = load_file(str(Path(folder) / HISTORY))
        history = UserItems(arrays["indptr"], arrays["items"], arrays["labels"])
        return cls(load_file(str(Path(folder) / VECTORS)), history, FeatureMap.load(Path(folder) / "feature_map.json"),
                   meta, index_kind, backend)

    # ids <-> raw values ----------------------------------------------------------------------------------------
    def _field(self, field: str):
        try:
            return self.fmap.field(field)
        except KeyError:
            raise ValueError(f"unknown field {field!r}; fields: {[f.name for f in self.fmap.fields]}") from None

    def encode_ids(self, field: str, raw_values: list) -> np.ndarray:
        """Raw values (as in the raw data) → feature-map ids; unseen values → the OOV id 1."""
        return np.asarray(self._field(field).encode(pd.Series(list(raw_values), dtype=object)), np.int64)

    def raw_values(self, field: str, ids: np.ndarray) -> list:
        """Feature-map ids → raw values (strings, as in the vocabulary); None for padding, OOV and unknown ids."""
        vocab = self._field(field).vocab
        return [vocab[i - FIRST_ID] if FIRST_ID <= i < FIRST_ID + len(vocab) else None
                for i in np.asarray(ids, np.int64).ravel().tolist()]

    # queries ---------------------------------------------------------------------------------------------------
    def known_users(self, user_ids: np.ndarray) -> np.ndarray:
        """Which ids have a trained vector (an edge in the training graph)."""
        return _lookup(self._user_known, user_ids)

    def known_items(self, item_ids: np.ndarray) -> np.ndarray:
        return _lookup(self._item_known, item_ids)

    def items_for_users(self, user_ids: np.ndarray, k: int, exclude_seen: bool = True
                        ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items by the trained score (inner product); ``exclude_seen``: not the user's train items."""
        ids = np.asarray(user_ids, np.int64).ravel()
        known = self.known_users(ids)
        queries = np.where(known[:, None], self.user_vectors[np.where(known, ids, 0)], self._mean_user)
        owner, entry = self.history.gather(np.where(known & exclude_seen, ids, 0))
        extra = int(np.bincount(owner).max()) if len(owner) else 0
        found, scores = self.score_index.search(queries, k + extra)
        seen = np.unique(owner * self.n_items + self.history.items[entry])
        drop = contains(seen, np.arange(len(ids))[:, None] * self.n_items + found)
        return _keep_first(found, scores, drop, k)

    def similar_items(self, item_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k items of highest cosine similarity to each item, the item itself excluded."""
        return self._similar(self.item_index, self.item_vectors, np.asarray(item_ids, np.int64).ravel(),
                             self.known_items, k)

    def similar_users(self, user_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k users of highest cosine similarity to each user, the user itself excluded."""
        return self._similar(self.user_index, self.user_vectors, np.asarray(user_ids, np.int64).ravel(),
                             self.known_users, k)

    @staticmethod
    def _similar(index: VectorIndex, vectors: np.ndarray, ids: np.ndarray, known_fn, k: int):
        known = known_fn(ids)
        found, scores = index.search(vectors[np.where(known, ids, 0)], k + 1)
        return _keep_first(found, scores, (found == ids[:, None]) | ~known[:, None], k)

    def history_neighbours(self, user_ids: np.ndarray, item_ids: np.ndarray, k: int
                           ) -> list[list[tuple[int, int, float]]]:
        """Per (user, candidate item): up to k of the user's train interactions as (item id, label, cosine
        similarity to the candidate), most similar first (ties: most recent first). See the module docstring for
        unknown users and candidates."""
        users = np.asarray(user_ids, np.int64).ravel()
        items = np.asarray(item_ids, np.int64).ravel()
        if len(users) != len(items):
            raise ValueError(f"{len(users)} users for {len(items)} candidate items")
        inside = (users >= FIRST_ID) & (users < self.n_users)
        has_history = inside & (self.history.lengths(np.where(inside, users, 0)) > 0)
        owner, entry = self.history.gather(np.where(has_history, users, 0))
        past = self.history.items[entry]
        valid = past >= FIRST_ID
        owner, entry, past = owner[valid], entry[valid], past[valid]
        candidate_known = self.known_items(items)
        candidates = np.where(candidate_known, items, 0)[owner]
        similarity = (self._item_unit[past] * self._item_unit[candidates]).sum(1)
        similarity = np.where(candidate_known[owner] & self.known_items(past), similarity, 0.0)
        order = np.lexsort((-entry, -similarity, owner))
        owner, entry, similarity = owner[order], entry[order], similarity[order]
        starts = np.searchsorted(owner, np.arange(len(users)))
        ends = np.searchsorted(owner, np.arange(len(users)), side="right")
        cold = np.flatnonzero(~has_history)
        fallback = dict(zip(cold.tolist(), zip(*self.similar_items(items[cold], k)))) if len(cold) else {}
        out = []
        for row in range(len(users)):
            if row in fallback:
                out.append([(int(i), UNKNOWN_LABEL, float(s)) for i, s in zip(*fallback[row]) if i >= 0])
            else:
                stop = min(ends[row], starts[row] + k)
                out.append([(int(self.history.items[e]), int(self.history.labels[e]), float(s))
                            for e, s in zip(entry[starts[row]:stop], similarity[starts[row]:stop])])
        return out
