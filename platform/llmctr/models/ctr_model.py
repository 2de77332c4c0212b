"""CTRModel = feature embedding (+ the pooled behaviour history as one more field) + (optional first-order term)
+ a registered backbone.

A pure ``nn.Module``: no optimizer, device or training loop here (those live in ``llmctr.train``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from pydantic import field_validator
from pydantic.dataclasses import dataclass
from torch import nn

from llmctr.config import STRICT
from llmctr.models.layers import FeatureEmbedding, FieldInput, HistoryConfig, HistoryPooling, SemanticHistory
from llmctr.models.llactr import LLaCTRConfig, LLaCTRPlugin
from llmctr.models.registry import check_params, get_backbone
from llmctr.models.sparse import SparseConfig, sparsify


@dataclass(config=STRICT)
class ModelConfig:
    """``name`` picks the backbone; ``params`` are its hyper-parameters (checked against its signature).

    ``dense_init``: how every ``nn.Linear`` of the backbone starts. ``xavier_normal`` (zero bias) is FuxiCTR's
    choice and, measured over 3 seeds on ML-1M (docs/benchmarks.md), learns faster than PyTorch's default
    Kaiming-uniform (``torch_default``) within a 4-epoch budget.
    """

    name: str
    embedding_dim: int = 16
    params: dict[str, Any] | None = None
    dense_init: Literal["xavier_normal", "torch_default"] = "xavier_normal"
    #: LLaCTR's FRE/FIE plug-ins around the backbone (llmctr.models.llactr); None: the plain backbone.
    llactr: LLaCTRConfig | None = None
    #: per-sample dynamic sparsity of the backbone's MLPs (llmctr.models.sparse); None: dense.
    dynamic_sparse: SparseConfig | None = None
    #: the history layer (llmctr.models.layers.history) over the feature map's sequence field, one more field of
    #: the backbone; None: sequence fields are ignored (the same prepared data, without history).
    history: HistoryConfig | None = None

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        get_backbone(name)
        return name

    def __post_init__(self) -> None:
        self.params = dict(self.params or {})
        check_params(self.name, self.params)


class CTROutput(NamedTuple):
    logit: torch.Tensor
    representation: torch.Tensor
    #: a loss term the training loop adds (LLaCTR's FRE KL); None when no plug-in contributes one.
    aux_loss: torch.Tensor | None = None


def init_dense_xavier(module: nn.Module) -> None:
    """``xavier_normal_`` weights and zero biases for every ``nn.Linear`` inside ``module``."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class CTRModel(nn.Module):
    def __init__(self, fields: list[FieldInput], config: ModelConfig, extra_dim: int = 0,
                 field_semantics: torch.Tensor | None = None,
                 feature_semantics: dict[str, torch.Tensor] | None = None,
                 item_semantics: torch.Tensor | None = None):
        """``item_semantics``: [ids of the history's item field, S] LLM vectors for ``history.semantic`` (needed
        the first time; a trained model's weights carry them)."""
        super().__init__()
        self.fields = list(fields)
        self.config = config
        static = [f for f in fields if f.kind != "sequence"]  # the [B, F, D] fields; sequences only via history
        self.embedding = FeatureEmbedding(static, config.embedding_dim)
        self.history = self.history_field = None
        if config.history is not None:
            self.history_field = config.history.pick_field(self.fields)
            of = self.history_field.of
            if of not in [f.name for f in static if f.kind == "categorical"]:
                raise ValueError(f"history field {self.history_field.name!r} is of {of!r}, which is not a "
                                 f"categorical input field (fields: {[f.name for f in self.fields]})")
            self._candidate = [f.name for f in static].index(of)
            split = config.history.split_by_label and self.history_field.with_label
            self.history = HistoryPooling(config.embedding_dim, config.history, split)
        self.semantic_history = None
        if config.history is not None and config.history.semantic is not None:
            # its own attention over the frozen LLM vectors (stop_gradient concerns the item embeddings only)
            pooling = HistoryPooling(config.embedding_dim, dataclasses.replace(config.history, stop_gradient=False),
                                     split)
            self.semantic_history = SemanticHistory(config.embedding_dim, self.history_field.vocab_size,
                                                    config.history.semantic, pooling, item_semantics)
        backbone_cls = get_backbone(config.name)
        num_fields = len(static) + (self.history is not None) + (
            self.semantic_history.num_fields if self.semantic_history is not None else 0)
        self.backbone = backbone_cls(num_fields, config.embedding_dim, extra_dim, **config.params)
        self.linear = FeatureEmbedding(static, 1) if backbone_cls.first_order else None
        self.bias = nn.Parameter(torch.zeros(1)) if backbone_cls.first_order else None
        if config.dense_init == "xavier_normal":
            init_dense_xavier(self.backbone)
            for plugin in (self.history, self.semantic_history):
                if plugin is not None:
                    init_dense_xavier(plugin)
        if config.dynamic_sparse is not None:
            sparsify(self.backbone, config.dynamic_sparse)
        self.llactr = None
        if config.llactr is not None and (config.llactr.fre or config.llactr.fie):
            self.llactr = LLaCTRPlugin([f.name for f in static], config.embedding_dim, config.llactr,
                                       field_semantics, feature_semantics)

    def forward(self, features: dict[str, torch.Tensor], extra: torch.Tensor | None = None) -> CTROutput:
        emb = self.embedding(features)
        logit, rep = self.backbone(emb if self.history is None else self.with_history(emb, features), extra)
        if self.linear is not None:
            logit = logit + self.linear(features).sum(dim=(1, 2)) + self.bias
        aux = None
        if self.llactr is not None:
            term, aux = self.llactr(emb, features)
            if term is not None:
                logit = logit + term
        return CTROutput(logit, rep, aux)

    def with_history(self, emb: torch.Tensor, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """[B, F + 1, D]: the field embeddings and the history pooled against the candidate (its ``of`` column)."""
        field = self.history_field
        keep = slice(0, self.history.config.max_len)  # the most recent entries: the lists are most recent first
        ids = features[field.name][:, keep]
        labels = features[f"{field.name}_label"][:, keep] if self.history.split else None
        mask = ids != 0
        pooled = self.history(emb[:, self._candidate], self.embedding.lookup(field.of, ids), mask, labels)
        parts = [emb, pooled.unsqueeze(1)]
        if self.semantic_history is not None:
            text = self.semantic_history.text_vectors(features, field.of)
            parts.append(self.semantic_history(features[field.of], ids, mask, labels, text))
        return torch.cat(parts, dim=1)

    def embedding_l2(self) -> torch.Tensor:
        reg = self.embedding.l2()
        return reg if self.linear is None else reg + self.linear.l2()


def history_inputs(fields: list[FieldInput], config: ModelConfig, semantics: Any) -> dict[str, Any]:
    """CTRModel's ``item_semantics`` for ``history.semantic``: the vectors of the entity keyed by the history's item
    field (empty without ``history.semantic`` or without tables, when a trained model is rebuilt)."""
    name = semantic_entity(fields, config, semantics)
    return {} if name is None else {"item_semantics": torch.as_tensor(semantics.entities[name], dtype=torch.float32)}


def semantic_entity(fields: list[FieldInput], config: ModelConfig, semantics: Any) -> str | None:
    """The entity of the semantic tables whose vectors ``history.semantic`` reads (None without it or the tables)."""
    semantic = config.history.semantic if config.history is not None else None
    if semantic is None or semantics is None:
        return None
    of = config.history.pick_field(fields).of
    keys = (semantics.meta or {}).get("entity_keys", {})
    keyed_by_of = [name for name, key in keys.items() if key == of]
    name = semantic.entity or (keyed_by_of[0] if keyed_by_of else None)
    if name is None or name not in semantics.entities:
        raise ValueError(f"history.semantic: no entity of the semantic tables is keyed by the history's item field "
                         f"{of!r} (entities and their keys: {keys}); add one to the dataset YAML's entities")
    if keys.get(name) != of:
        raise ValueError(f"history.semantic.entity {name!r} is keyed by {keys.get(name)!r}, not by the history's "
                         f"item field {of!r}")
    return name


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Probabilities (float64) from logits, in numpy: what the served answers and the offline metrics read."""
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))
