"""Experiment YAML (``configs/experiments/*.yaml``): dataset + model + training settings."""

from __future__ import annotations

from dataclasses import field
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic.dataclasses import dataclass

from llmctr.config import STRICT, load_named_config
from llmctr.models.ctr_model import ModelConfig
from llmctr.models.distill import DistillConfig
from llmctr.semantics.encoders import EncoderConfig
from llmctr.semantics.ssft import SSFTConfig


@dataclass(config=STRICT)
class TrainConfig:
    batch_size: int = 4096
    epochs: int = 4
    lr: float = 1e-3
    weight_decay: float = 0.0
    embedding_l2: float = 0.0
    lr_schedule: Literal["constant", "cosine"] = "constant"
    early_stopping_patience: int = 2
    seed: int = 2026
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float | None = None
    threads_per_worker: int | None = None
    #: memory: each worker loads its shard once and batches by index (fast while it fits);
    #: stream: Ray Data iterates the shard every epoch; auto: memory below max_memory_rows.
    feed: Literal["auto", "memory", "stream"] = "auto"
    max_memory_rows: int = 20_000_000
    eval_batch_size: int = 16384
    max_failures: int = 1
    #: how Ray places the workers: PACK fills nodes first; SPREAD puts them on different nodes.
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    #: the training forward pass's precision (llmctr.train.ctr.precision): fp32; bf16 (autocast: matmuls in bf16,
    #: weights / embeddings / loss / optimiser in fp32); auto = bf16 where the CPU or GPU multiplies bf16 natively.
    precision: Literal["fp32", "bf16", "auto"] = "fp32"
    #: pack each group's rows (the dataset's group_by, e.g. a user) into lists of up to this many rows that lie
    #: together in a batch, so a listwise loss (distill.lists: group) sees real lists; None: rows shuffled alone
    list_size: int | None = Field(None, ge=1)
    #: ray: Ray Train workers; local: the same loop in this process without Ray (one worker, in-memory feed, no
    #: restart after a failure; train/local_run.py); auto: local when the run fits that and no cluster is named
    #: (``fit.choose_engine``), else ray
    engine: Literal["auto", "ray", "local"] = "auto"


@dataclass(config=STRICT)
class SemanticsConfig:
    """The LLM side of an LLaCTR experiment: the encoder of the field/feature vectors and, optionally, SSFT
    (a LoRA adapter fine-tuned first, then used by the encoder)."""

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    ssft: SSFTConfig | None = None


@dataclass(config=STRICT)
class ExperimentConfig:
    name: str
    dataset: str
    model: ModelConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    description: str = ""
    #: semantic tables built on the driver before training (needed by ``model.llactr``, ``model.history.semantic``
    #: and ``distill``)
    semantics: SemanticsConfig | None = None
    #: ELEC: train a teacher (``model`` + the sample's LLM vector) jointly with the student (``model``) and export
    #: the student (llmctr.models.distill)
    distill: DistillConfig | None = None

    def __post_init__(self) -> None:
        if self.model.llactr is not None and self.semantics is None:
            raise ValueError("model.llactr needs a 'semantics' section (the encoder of the field vectors)")
        if self.distill is not None and self.semantics is None:
            raise ValueError("distill needs a 'semantics' section (the encoder of the teacher's LLM vectors)")
        if self.model.history is not None and self.model.history.semantic is not None and self.semantics is None:
            raise ValueError("model.history.semantic needs a 'semantics' section (the encoder of the item vectors)")


def load_experiment(path_or_name: str | Path) -> ExperimentConfig:
    """Load an experiment YAML by path, or by name from ``configs/experiments/``."""
    return load_named_config(ExperimentConfig, path_or_name, "experiment")
