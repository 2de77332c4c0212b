"""The retriever: LightGCN fitted on the train split's user-item graph as a Ray Train job, exported as a versioned
artifact that ``llmctr.models.retriever.Retriever`` loads to answer "which items / users relate to this request".

``<artifacts>/retrievers/<name>/<version>/`` (+ ``LATEST``):
- ``vectors.safetensors``: ``user`` [n_user_ids, d] and ``item`` [n_item_ids, d], rows = feature-map ids;
- ``history.safetensors``: every train row of each user (liked and disliked) as CSR ``indptr`` / ``items`` /
  ``labels``, in time order: the early-exit LLM head's RAG context;
- ``retriever.json`` (config, fields, metrics, per-epoch history, version), ``feature_map.json``,
  ``training_curve.png``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from llmctr import storage
from llmctr.config import dump_config
from llmctr.data import FeatureMap, resolve_prepared
from llmctr.data.feature_map import LABEL
from llmctr.data.interactions import UserItems
from llmctr.data.pipeline import SPLITS
from llmctr.models.lightgcn import LightGCN, normalized_adjacency
from llmctr.models.retriever import HISTORY, META, VECTORS
from llmctr.train.job import run_and_read, torch_trainer
from llmctr.train.retriever.config import RetrieverConfig, resolve_fields
from llmctr.train.retriever.loop import retriever_loop_per_worker
from llmctr.train.retriever.plot import plot_ranking_history

log = logging.getLogger(__name__)


@dataclass
class RetrieverResult:
    artifact: storage.Location
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    wall_seconds: float


def fit_retriever(config: RetrieverConfig, data_dir: str | Path, artifacts: str | Path | None = None,
                  storage_path: str | None = None) -> RetrieverResult:
    """Train LightGCN on the prepared dataset in ``data_dir`` with Ray Train; write a retriever artifact."""
    data_dir = resolve_prepared(storage.as_location(data_dir))
    if not storage.exists(storage.join(data_dir, "feature_map.json")):
        raise FileNotFoundError(f"no prepared dataset at {data_dir} (run: llmctr data prepare {config.dataset})")
    fmap = FeatureMap.load(storage.join(data_dir, "feature_map.json"))
    user_field, item_field = resolve_fields(config, fmap)
    config = dataclasses.replace(config, user_field=user_field, item_field=item_field)  # recorded as resolved
    n_users, n_items = fmap.field(user_field).vocab_size, fmap.field(item_field).vocab_size
    columns = [user_field, item_field, LABEL]
    splits = {s: str(storage.join(data_dir, s)) for s in SPLITS}  # every worker reads the whole graph itself
    tc = config.train
    root = storage.artifacts_root(artifacts)
    trainer = torch_trainer(
        retriever_loop_per_worker,
        {"retriever": dump_config(config), "n_users": n_users, "n_items": n_items, "splits": splits}, tc,
        name=config.name, storage_path=storage_path or str(storage.join(root, "ray_results")))
    log.info("training retriever %s (LightGCN, %d users x %d items) with %d worker(s)", config.name, n_users,
             n_items, tc.num_workers)
    metrics, best, state, wall = run_and_read(trainer, "retriever training")
    metrics.update(resumes=state["resumes"], train_wall_seconds=wall, num_workers=tc.num_workers)
    train = storage.read_parquet(splits["train"], columns=columns).to_pandas()
    users, items = train[user_field].to_numpy(np.int64), train[item_field].to_numpy(np.int64)
    history = UserItems.from_pairs(users, items, n_users, train[LABEL].to_numpy(np.float32))
    vectors = export_vectors(config, best, history, n_users, n_items)
    artifact = _save(root, config, fmap, vectors, history, metrics, state["history"])
    log.info("test recall@%d %.4f (popularity %.4f); artifact %s", config.select_k,
             metrics.get(f"test_recall@{config.select_k}", float("nan")),
             metrics.get(f"test_popularity_recall@{config.select_k}", float("nan")), artifact)
    return RetrieverResult(artifact, metrics, state["history"], wall)


def export_vectors(config: RetrieverConfig, state: dict[str, torch.Tensor], history: UserItems, n_users: int,
                   n_items: int) -> dict[str, torch.Tensor]:
    """The final (propagated, layer-mean) user and item vectors of trained weights, over the train graph."""
    edges = history.rows().edges(config.edges)
    model = LightGCN(n_users, n_items, config.model, normalized_adjacency(*edges, n_users, n_items))
    model.load_state_dict(state)
    with torch.inference_mode():
        user_vecs, item_vecs = model.propagate()
    return {"user": user_vecs.contiguous(), "item": item_vecs.contiguous()}


def _save(root: storage.Location, config: RetrieverConfig, fmap: FeatureMap, vectors: dict[str, torch.Tensor],
          history: UserItems, metrics: dict[str, Any], epochs: list[dict]) -> storage.Location:
    with storage.publish_version(storage.join(root, "retrievers", config.name)) as (folder, version):
        save_file(vectors, str(folder / VECTORS), metadata={"format": "pt"})
        save_file({"indptr": torch.from_numpy(history.indptr), "items": torch.from_numpy(history.items),
                   "labels": torch.from_numpy(history.labels)}, str(folder / HISTORY), metadata={"format": "pt"})
        meta = {"name": config.name, "version": version, "model": "lightgcn", "user_field": config.user_field,
                "item_field": config.item_field, "n_user_ids": int(vectors["user"].shape[0]),
                "n_item_ids": int(vectors["item"].shape[0]), "dim": int(vectors["user"].shape[1]),
                "score": "inner product of the user and item vectors (what BPR trained)",
                "config": dump_config(config), "metrics": metrics, "history": epochs}
        (folder / META).write_text(json.dumps(meta, indent=1, default=float))
        fmap.save(folder / "feature_map.json")
        plot_ranking_history(epochs, metrics, folder / "training_curve.png", config)

    return storage.join(root, "retrievers", config.name, version)
