"""The early-exit LLM head as a model: building it, its artifact, and what the Serve graph calls:
``EarlyExitHead.load(path)``, ``head.contexts(records, retriever)`` and ``head.score(records, base_logits,
contexts)`` (training it: ``llmctr.train.llm_head``).

``<artifacts>/llm_heads/<name>/<version>/`` (``LATEST`` names the newest):
``weights.safetensors`` (LoRA weights + exit heads: the trainable parameters), ``head.json`` (config, encoder,
exit layers, thresholds, metrics, what the RAG context needs), ``context_items.json`` (raw item id -> the text
a neighbour is shown by), ``history_context.*`` (with ``context: history``: the item vectors it ranks the request's
history by), ``calibration.png``, ``history.json``. Loading merges the LoRA weights into the encoder
(one matmul per projection at inference, as before fine-tuning).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from llmctr import storage
from llmctr.config import parse_config
from llmctr.data.schema import FieldSpec
from llmctr.models.artifact import unwrap
from llmctr.models.ctr_model import sigmoid
from llmctr.models.early_exit import EarlyExitModel, early_exit_predict
from llmctr.models.llm_head_config import EarlyExitConfig
from llmctr.semantics.encoders import HFEncoder
from llmctr.semantics.history_context import HistoryContext
from llmctr.semantics.rag import HistoryRetriever, contexts_from_neighbours, render_contexts, request_texts
from llmctr.semantics.ssft import default_targets

log = logging.getLogger(__name__)

WEIGHTS, META, ITEMS = "weights.safetensors", "head.json", "context_items.json"


def build_exit_model(config: EarlyExitConfig, device: str = "cpu") -> tuple[EarlyExitModel, HFEncoder]:
    """The encoder (+ a fresh LoRA adapter when configured) with zero-initialised exit heads, and the
    :class:`HFEncoder` that loaded it (its tokenizer and ``tokenize`` are used to feed the model)."""
    encoder = HFEncoder(replace(config.encoder, device=device, normalize=False))
    transformer = encoder.model
    if config.lora is not None:
        from peft import LoraConfig, get_peft_model

        lora = config.lora
        transformer = get_peft_model(transformer, LoraConfig(
            r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
            target_modules=lora.targets or default_targets(transformer)))
    model = EarlyExitModel(transformer, config.exit_layers, config.head_hidden, config.dropout)
    return model.to(encoder.device), encoder


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What training changes (LoRA weights and heads): the only weights a checkpoint or an artifact holds."""
    return {k: p.detach().to("cpu", copy=True).contiguous() for k, p in unwrap(model).named_parameters()
            if p.requires_grad}


def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    expected = set(trainable_state(model))
    if set(state) != expected:
        missing, unexpected = sorted(expected - set(state))[:5], sorted(set(state) - expected)[:5]
        raise ValueError(f"{source} does not match the head's config: missing {missing}, unexpected {unexpected}")
    unwrap(model).load_state_dict(state, strict=False)


def length_batches(texts: Sequence[str], batch_size: int) -> Iterator[np.ndarray]:
    """Row indices in batches of similar text length (little padding, so little wasted work)."""
    order = np.argsort([len(t) for t in texts], kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


def _base(base_logits: np.ndarray | None, idx: np.ndarray, device) -> torch.Tensor | None:
    return None if base_logits is None else torch.as_tensor(np.asarray(base_logits)[idx], dtype=torch.float32,
                                                             device=device)


@torch.inference_mode()
def all_head_logits(model: EarlyExitModel, encoder: HFEncoder, texts: Sequence[str],
                    base_logits: np.ndarray | None, batch_size: int) -> np.ndarray:
    """Every head's logit at full depth, ``[n, heads]`` in the order of ``texts`` (evaluation, calibration)."""
    model.eval()
    out = np.zeros((len(texts), len(model.exit_layers)), dtype=np.float32)
    for idx in length_batches(texts, batch_size):
        tokens = encoder.tokenize([texts[i] for i in idx])
        out[idx] = model(**tokens, base_logit=_base(base_logits, idx, encoder.device)).float().cpu().numpy()
    return out


class EarlyExitHead:
    """A loaded head: encoder with LoRA merged, exit heads, calibrated thresholds and the context renderer."""

    def __init__(self, model: EarlyExitModel, encoder: HFEncoder, config: EarlyExitConfig, meta: dict[str, Any],
                 items: dict[str, str], history: HistoryContext | None = None):
        self.model, self.encoder, self.config, self.meta, self.items = model.eval(), encoder, config, meta, items
        #: with ``context: history`` the head reads the request's own history, ranked by these item vectors
        self.history = history
        # the fields' descriptions and value labels as trained (the artifact does not depend on the dataset YAML)
        self.text_fields = [parse_config(FieldSpec, f, "head.json context.text_fields")
                            for f in meta["context"]["text_fields"]]

    @classmethod
    def load(cls, path: storage.Location, device: str = "cpu") -> EarlyExitHead:
        location = storage.resolve_version(path, META, what="LLM head artifact")
        folder = storage.local_copy(location)
        if not (folder / WEIGHTS).is_file():
            raise FileNotFoundError(f"no LLM head artifact at {path} (expected {META} and {WEIGHTS})")
        meta = json.loads((folder / META).read_text())
        config = parse_config(EarlyExitConfig, meta["config"], str(folder / META))
        model, encoder = build_exit_model(config, device)
        load_trainable_state(model, load_file(str(folder / WEIGHTS)), str(folder / WEIGHTS))
        if hasattr(model.transformer, "merge_and_unload"):
            model.transformer = model.transformer.merge_and_unload()
        meta["path"] = str(location)
        return cls(model, encoder, config, meta, json.loads((folder / ITEMS).read_text()), HistoryContext.load(folder))

    @property
    def exit_layers(self) -> list[int]:
        return list(self.model.exit_layers)

    @property
    def version(self) -> str:
        return str(self.meta.get("version", ""))

    @property
    def thresholds(self) -> list[float]:
        return list(self.meta["thresholds"])

    @thresholds.setter
    def thresholds(self, values: Sequence[float]) -> None:
        """Replace the calibrated thresholds (e.g. from the Serve deployment's ``user_config``)."""
        if len(values) != len(self.exit_layers):
            raise ValueError(f"{len(values)} thresholds for {len(self.exit_layers)} exit heads")
        self.meta["thresholds"] = [float(v) for v in values]

    @property
    def residual(self) -> bool:
        """Whether the heads correct the student's logit (then ``score`` needs ``base_logits``)."""
        return bool(self.meta["residual"])

    def context_spec(self) -> dict[str, Any]:
        """What rendering this head's RAG context needs (for ``llmctr.semantics.rag.render_contexts``, e.g. in the
        retriever's own process): user/item fields, subject, neighbours, text fields, item texts by raw id."""
        return {**self.meta["context"], "items": self.items}

    @property
    def reads_history(self) -> bool:
        """Whether the context comes from the request's own history (no retriever call needed)."""
        return self.history is not None

    def contexts(self, records: Sequence[Mapping[str, Any]], retriever: HistoryRetriever | None = None) -> list[str]:
        if self.history is not None:
            return self.contexts_from(self.history.neighbours(records, self.neighbours))
        if retriever is None:
            raise ValueError("this head reads a retriever's neighbours: pass the retriever")
        return render_contexts(records, retriever, self.context_spec())

    def contexts_for(self, records: Sequence[Mapping[str, Any]],
                     neighbours: Sequence[Sequence[tuple[str, int]]] | None) -> list[str]:
        """What the Serve graph's head deployment renders: the request's own history when the head reads it, else
        the retriever's ``neighbours`` (None: the head reads that the user has no history)."""
        if self.history is not None:
            return self.contexts(records)
        return self.contexts_from(neighbours or [[] for _ in records])

    @property
    def neighbours(self) -> int:
        """How many retrieved interactions the head was trained to read."""
        return int(self.meta["context"]["neighbours"])

    def contexts_from(self, neighbours: Sequence[Sequence[tuple[str, int]]]) -> list[str]:
        """Context sentences from retrieved (raw item id, label) pairs (``rag.retrieve_neighbours``, e.g. run in
        the Serve graph's Retriever deployment)."""
        return contexts_from_neighbours(neighbours, self.items, self.meta["context"]["subject"])

    def texts(self, records: Sequence[Mapping[str, Any]], contexts: Sequence[str]) -> list[str]:
        return request_texts(records, self.text_fields, contexts)

    def _check_base(self, base_logits: np.ndarray | None, n: int) -> np.ndarray | None:
        if self.residual and base_logits is None:
            raise ValueError("this head corrects the student's logit: pass the student's base_logits")
        if not self.residual and base_logits is not None:
            raise ValueError("this head was trained without a student: pass base_logits=None")
        if base_logits is not None and len(base_logits) != n:
            raise ValueError(f"{len(base_logits)} base logits for {n} records")
        return base_logits

    def score(self, records: Sequence[Mapping[str, Any]], base_logits: np.ndarray | None, contexts: Sequence[str],
              thresholds: list[float] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(click probability, exit head index into ``exit_layers``, layers run) per record, exiting early at
        the calibrated thresholds (or ``thresholds``; all 1.0: full depth)."""
        texts = self.texts(records, contexts)
        base_logits = self._check_base(base_logits, len(texts))
        n = len(texts)
        probs, heads, layers = np.zeros(n, np.float32), np.zeros(n, np.int64), np.zeros(n, np.int64)
        for idx in length_batches(texts, self.config.train.eval_batch_size):
            tokens = self.encoder.tokenize([texts[i] for i in idx])
            res = early_exit_predict(self.model, **tokens, base_logit=_base(base_logits, idx, self.encoder.device),
                                     thresholds=thresholds or self.thresholds)
            probs[idx], heads[idx], layers[idx] = res.probs, res.exit_head, res.layers_run
        return probs, heads, layers

    def head_probabilities(self, records: Sequence[Mapping[str, Any]], base_logits: np.ndarray | None,
                           contexts: Sequence[str]) -> np.ndarray:
        """Every head's probability at full depth, ``[n, heads]`` (for sweeping thresholds offline)."""
        texts = self.texts(records, contexts)
        logits = all_head_logits(self.model, self.encoder, texts, self._check_base(base_logits, len(texts)),
                                 self.config.train.eval_batch_size)
        return sigmoid(logits)


def write_head_files(folder: Path, state: dict[str, torch.Tensor], meta: dict[str, Any], items: dict[str, str],
                     history: HistoryContext | None = None) -> None:
    save_file(state, str(folder / WEIGHTS), metadata={"format": "pt"})
    if history is not None:
        history.save(folder)
    (folder / META).write_text(json.dumps(meta, indent=1, default=float))
    (folder / ITEMS).write_text(json.dumps(items, ensure_ascii=False))
