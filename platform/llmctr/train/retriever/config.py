"""Retriever YAML (``configs/retrievers/*.yaml``): LightGCN on a dataset's user-item graph, and how it trains."""

from __future__ import annotations

from dataclasses import field
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic.dataclasses import dataclass as config_dataclass

from llmctr.config import STRICT, ConfigError, load_named_config
from llmctr.data import FeatureMap, load_dataset_config
from llmctr.models.lightgcn import LightGCNConfig


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
