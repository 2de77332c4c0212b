"""LLM head YAML (``configs/llm_heads/*.yaml``): the early-exit transformer scorer of the Serve graph's LLM path.

The encoder section is the semantic layer's :class:`EncoderConfig` (``model``, ``revision``, ``adapter`` an SSFT
adapter merged first, ``max_length``, ``dtype``, ``device``); its ``layer``, ``normalize`` and ``batch_size``
do not apply here (every exit layer is pooled, the heads normalise, batches are ``train.batch_size``).
"""

from __future__ import annotations

from dataclasses import field
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic.dataclasses import dataclass

from llmctr.config import STRICT, load_named_config
from llmctr.semantics.encoders import EncoderConfig


@dataclass(config=STRICT)
class LoraSettings:
    r: int = Field(8, gt=0)
    alpha: int = Field(16, gt=0)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    #: None: query/value of BERT-like encoders, q_proj/v_proj of Llama-like decoders
    targets: list[str] | None = None


@dataclass(config=STRICT)
class RetrieverSource:
    """A retriever artifact and the function that loads it (``"package.module:callable"``, called with the path);
    the object must offer ``history_neighbours``, ``raw_values``, ``encode_ids``, ``user_field``, ``item_field``."""

    path: str
    #: the LightGCN retriever (``llmctr retriever train``) by default
    loader: str = "llmctr.models.retriever:Retriever.load"


@dataclass(config=STRICT)
class HeadTrainConfig:
    #: which split the heads are fitted on. ``valid``: validation rows outside the calibration sample, where the
    #: student's logit is out of sample as it will be when served (on its own train rows a student is
    #: overconfident, e.g. ML-1M DCNv2-ELEC: AUC 0.893 on train vs 0.815 valid / 0.845 test, so residual heads
    #: fitted there learn to trust it), and where the context holds only interactions before the row.
    fit_split: Literal["train", "valid"] = "train"
    #: rows sampled (seeded) from ``fit_split`` for fitting; None: all of them. MiniLM forward+backward runs at
    #: ~25 rows/s on 2 CPU cores, so CPU runs fit on a sample.
    sample: int | None = Field(20_000, gt=0)
    #: validation rows (seeded sample) for the per-epoch AUC and the threshold calibration; None: all
    valid_sample: int | None = Field(5_000, gt=0)
    epochs: int = Field(1, gt=0)
    batch_size: int = Field(32, gt=0)
    lr: float = Field(5e-4, gt=0)  # LoRA weights
    head_lr: float = Field(1e-3, gt=0)  # exit heads
    weight_decay: float = 0.0
    seed: int = 2026
    num_workers: int = Field(1, gt=0)
    use_gpu: bool = False
    cpus_per_worker: float | None = None
    threads_per_worker: int | None = None
    eval_batch_size: int = Field(128, gt=0)
    max_failures: int = 1
    #: the validation rows the best epoch and the exit thresholds are chosen on: ``all`` of the calibration sample,
    #: or ``routed``: only those the router sends to the LLM path (student probability in ``routing_band``, or an
    #: unseen user / item id; ``llmctr.data.routing_rule``), the traffic the head really sees. Needs a student.
    calibrate_on: Literal["all", "routed"] = "all"
    routing_band: tuple[float, float] = (0.4, 0.6)
    #: hold the calibration sample out by this field (e.g. ``user_id``): whole groups of validation rows, so with
    #: ``fit_split: valid`` the head is calibrated on users it was not fitted on, as on the test period's new users
    #: (None: a sample of rows; ML-1M 2026-12-05: +0.0016 on row-sampled calibration rows, -0.0009 on test)
    calibration_groups: str | None = None


@dataclass(config=STRICT)
class EarlyExitConfig:
    name: str
    dataset: str
    #: 1-based layer counts after which an exit head sits, increasing (MiniLM has 6 layers)
    exit_layers: list[int]
    encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(max_length=128))
    #: None: the encoder stays frozen, only the heads train
    lora: LoraSettings | None = field(default_factory=LoraSettings)
    #: weight of each head's BCE in the joint loss; None: proportional to its depth (deeper heads weigh more)
    head_weights: list[float] | None = None
    head_hidden: int = Field(128, gt=0)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    #: fields of the request rendered as sentences; None: every input field but the user and item keys
    text_fields: list[str] | None = None
    #: the dataset entities whose keys are the user and the item (``entities:`` of the dataset YAML)
    user_entity: str = "user"
    item_entity: str = "item"
    #: the distilled student whose logit each head corrects (a model folder, version folder or experiment
    #: name under ARTIFACTS/models); None: plain heads
    student: str | None = None
    #: where the context's interactions come from. ``retriever``: ``retriever`` below, or without one the user's
    #: most recent train interactions (``llmctr.semantics.rag.RecentHistory``); ``history``: the request's own
    #: history (``history_field``), its ``neighbours`` liked and ``neighbours`` disliked items most similar to the
    #: candidate by their LLM vectors (``llmctr.semantics.history_context``; ``history_encoder`` builds them)
    context: Literal["retriever", "history"] = "retriever"
    retriever: RetrieverSource | None = None
    neighbours: int = Field(5, ge=0)
    #: the sequence field of item ids the history context reads; None: the dataset's only one
    history_field: str | None = None
    #: the encoder of the item vectors the history context ranks by (the dataset's semantic tables, cached)
    history_encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(max_length=64))
    #: the early-exit thresholds keep validation AUC within this of the full-depth head's
    target_auc_loss: float = Field(0.001, ge=0.0)
    #: adaptive thresholds ship only when their validation AUC beats the fixed depths' at the same mean depth by more
    #: than this; a smaller edge is a tie, and the fixed depth ships (ML-1M, 2026-12-05: thresholds that sent 2 of
    #: 6,510 rows past the first head "beat" it by 1e-6)
    adaptive_margin: float = Field(0.0005, ge=0.0)
    train: HeadTrainConfig = field(default_factory=HeadTrainConfig)
    description: str = ""

    def __post_init__(self) -> None:
        if self.encoder.backend != "hf":
            raise ValueError("encoder.backend must be 'hf': the early-exit head runs the model layer by layer")
        if self.head_weights is not None and (len(self.head_weights) != len(self.exit_layers)
                                              or min(self.head_weights) < 0 or sum(self.head_weights) <= 0):
            raise ValueError(f"head_weights must be {len(self.exit_layers)} non-negative numbers (one per exit "
                             f"layer) with a positive sum, got {self.head_weights}")
        if self.train.calibrate_on == "routed" and self.student is None:
            raise ValueError("train.calibrate_on: routed needs a student (the router routes on its probability)")

    def loss_weights(self) -> list[float]:
        """The joint loss's head weights, summing to 1."""
        raw = self.head_weights if self.head_weights is not None else [float(n) for n in self.exit_layers]
        return [w / sum(raw) for w in raw]


def load_llm_head_config(path_or_name: str | Path) -> EarlyExitConfig:
    """Load an LLM head YAML by path, or by name from ``configs/llm_heads/``."""
    return load_named_config(EarlyExitConfig, path_or_name, "llm head", folder="llm_heads")
