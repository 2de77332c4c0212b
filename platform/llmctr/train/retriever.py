"""The retriever: LightGCN fitted on the train split's user-item graph as a Ray Train job, exported as a versioned
artifact that ``llmctr.serve.retriever.Retriever`` loads to answer "which items / users relate to this request".

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
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow.parquet as pq
import ray
import torch
from pydantic import Field, model_validator
from pydantic.dataclasses import dataclass as config_dataclass
from ray.train import DataConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from safetensors.torch import save_file

from llmctr import storage
from llmctr.config import STRICT, ConfigError, dump_config, load_named_config
from llmctr.data import FeatureMap, load_dataset_config, resolve_prepared
from llmctr.data.feature_map import LABEL
from llmctr.data.paths import artifacts_root
from llmctr.data.pipeline import SPLITS
from llmctr.models.artifact import LATEST
from llmctr.models.lightgcn import LightGCN, LightGCNConfig, normalized_adjacency
from llmctr.runtime import train_run_config
from llmctr.train.checkpoint import run_and_read
from llmctr.train.ranking import UserItems
from llmctr.train.trainer import _cpus_per_worker, _training_data_context

log = logging.getLogger(__name__)

VECTORS, HISTORY, META = "vectors.safetensors", "history.safetensors", "retriever.json"


@config_dataclass(config=STRICT)
class RetrieverTrainConfig:
    epochs: int = Field(30, gt=0)
    #: positive edges per optimiser step, per worker
    batch_size: int = Field(8192, gt=0)
    lr: float = Field(5e-3, gt=0)
    #: weight of the L2 term on the batch's ego embeddings
    l2: float = Field(1e-4, ge=0)
    #: uniform negatives drawn per positive edge
    negatives: int = Field(1, gt=0)
    seed: int = 2026
    #: epochs without a better validation recall@select_k before stopping
    early_stopping_patience: int = Field(5, gt=0)
    num_workers: int = Field(1, gt=0)
    use_gpu: bool = False
    cpus_per_worker: float | None = None
    threads_per_worker: int | None = None
    max_failures: int = 1


@config_dataclass(config=STRICT)
class RetrieverConfig:
    name: str
    dataset: str
    #: the user and item key fields (default: the dataset YAML's ``entities`` user / item keys)
    user_field: str | None = None
    item_field: str | None = None
    #: which train rows are graph edges: "positive" (label == 1) or "all" interactions
    edges: Literal["positive", "all"] = "positive"
    model: LightGCNConfig = field(default_factory=LightGCNConfig)
    train: RetrieverTrainConfig = field(default_factory=RetrieverTrainConfig)
    recall_ks: list[int] = field(default_factory=lambda: [10, 20, 50, 100])
    #: the validation recall@k that picks the best epoch
    select_k: int = 20
    #: the default index of ``llmctr retriever query`` (VectorIndex: auto | flat | ivf | hnsw)
    index_kind: Literal["auto", "flat", "ivf", "hnsw"] = "auto"
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> RetrieverConfig:
        if not self.recall_ks or min(self.recall_ks) <= 0:
            raise ValueError(f"recall_ks must be positive integers, got {self.recall_ks}")
        if self.select_k not in self.recall_ks:
            raise ValueError(f"select_k {self.select_k} must be one of recall_ks {self.recall_ks}")
        return self


def load_retriever_config(path_or_name: str | Path) -> RetrieverConfig:
    """Load a retriever YAML by path, or by name from ``configs/retrievers/``."""
    return load_named_config(RetrieverConfig, path_or_name, "retriever")


def resolve_fields(config: RetrieverConfig, fmap: FeatureMap) -> tuple[str, str]:
    """The user and item key fields: the config's, else the dataset YAML's entities; both must be categorical
    fields of the feature map."""
    entities = None
    chosen = []
    for key, entity in (("user_field", "user"), ("item_field", "item")):
        name = getattr(config, key)
        if name is None:
            entities = entities if entities is not None else load_dataset_config(config.dataset).entities
            if entity not in entities:
                raise ConfigError(f"retriever {config.name!r}: {key} is not set and dataset {config.dataset!r} "
                                  f"has no entities.{entity} to default to")
            name = entities[entity].key
        categorical = [f.name for f in fmap.input_fields if f.kind == "categorical"]
        if name not in categorical:
            raise ConfigError(f"retriever {config.name!r}: {key} {name!r} is not a categorical field of dataset "
                              f"{fmap.dataset!r} (categorical fields: {categorical})")
        chosen.append(name)
    return chosen[0], chosen[1]


@dataclass
class RetrieverResult:
    artifact: storage.Location
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    wall_seconds: float


def fit_retriever(config: RetrieverConfig, data_dir: str | Path, artifacts: str | Path | None = None,
                  storage_path: str | None = None) -> RetrieverResult:
    """Train LightGCN on the prepared dataset in ``data_dir`` with Ray Train; write a retriever artifact."""
    from llmctr.train.retriever_loop import retriever_loop_per_worker

    data_dir = resolve_prepared(storage.as_location(data_dir))
    if not storage.exists(storage.join(data_dir, "feature_map.json")):
        raise FileNotFoundError(f"no prepared dataset at {data_dir} (run: llmctr data prepare {config.dataset})")
    fmap = FeatureMap.load(storage.join(data_dir, "feature_map.json"))
    user_field, item_field = resolve_fields(config, fmap)
    config = dataclasses.replace(config, user_field=user_field, item_field=item_field)  # recorded as resolved
    n_users, n_items = fmap.field(user_field).vocab_size, fmap.field(item_field).vocab_size
    columns = [user_field, item_field, LABEL]
    with _training_data_context():
        datasets = {s: ray.data.read_parquet(str(storage.join(data_dir, s)), columns=columns) for s in SPLITS}
    tc = config.train
    threads = tc.threads_per_worker or max(1, (os.cpu_count() or 2) // tc.num_workers)
    resources = {"CPU": _cpus_per_worker(config), **({"GPU": 1} if tc.use_gpu else {})}
    root = artifacts_root(artifacts)
    trainer = TorchTrainer(
        retriever_loop_per_worker,
        train_loop_config={"retriever": dump_config(config), "n_users": n_users, "n_items": n_items,
                           "threads": threads},
        scaling_config=ScalingConfig(num_workers=tc.num_workers, use_gpu=tc.use_gpu, resources_per_worker=resources),
        datasets=datasets,
        dataset_config=DataConfig(datasets_to_split=[]),  # every worker needs the whole graph
        run_config=train_run_config(f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}",
                                    storage_path or str(storage.join(root, "ray_results")),
                                    max_failures=tc.max_failures),
    )
    log.info("training retriever %s (LightGCN, %d users x %d items) with %d worker(s), %s CPU each", config.name,
             n_users, n_items, tc.num_workers, resources["CPU"])
    with _training_data_context():
        metrics, best, state, wall = run_and_read(trainer, "retriever training")
    metrics.update(resumes=state["resumes"], train_wall_seconds=wall, num_workers=tc.num_workers)
    train = pq.read_table(str(storage.join(data_dir, "train")), columns=columns).to_pandas()
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
    def write(folder: Path, version: str) -> None:
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

    return publish_version(storage.join(root, "retrievers", config.name), write)


def publish_version(parent: storage.Location, write: Callable[[Path, str], None]) -> storage.Location:
    """A new version folder under ``parent``, written completely before anyone can see it (a local temp folder
    renamed into place; on a URI uploaded first), then ``LATEST`` pointed at it."""
    version = storage.new_version()
    final = storage.join(parent, version)
    if storage.is_uri(parent):
        with tempfile.TemporaryDirectory() as tmp:
            write(Path(tmp), version)
            storage.upload_dir(Path(tmp), str(final))
    else:
        tmp = Path(final).with_name(version + ".tmp")
        tmp.mkdir(parents=True)
        write(tmp, version)
        tmp.rename(final)
    storage.write_text(storage.join(parent, LATEST), version + "\n")
    return final


def plot_ranking_history(epochs: list[dict], metrics: dict, path: Path, config: RetrieverConfig) -> None:
    """BPR loss and validation recall@k per epoch, with the popularity baseline's validation recall as dashed
    lines: whether (and from which epoch) the graph beats "recommend the popular items" is visible at a glance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    x = [h["epoch"] for h in epochs]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(x, [h["train_loss"] for h in epochs], "o-", label="train loss (BPR + L2)")
    ax1.set_xlabel("epoch")
    ax1.legend()
    for k, colour in zip(config.recall_ks, plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        ax2.plot(x, [h[f"valid_recall@{k}"] for h in epochs], "o-", color=colour, label=f"recall@{k}")
        if f"valid_popularity_recall@{k}" in metrics:
            ax2.axhline(metrics[f"valid_popularity_recall@{k}"], color=colour, ls="--", lw=1)
    ax2.set_xlabel("epoch")
    ax2.set_title("validation (dashed: popularity)", fontsize=9)
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f"{config.name} (LightGCN)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
