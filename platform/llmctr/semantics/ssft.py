"""SSFT, LLaCTR's self-supervised field-feature fine-tuning (Cui et al., 2025, arXiv 2505.14057, Sec. 3.2).

A LoRA adapter teaches the encoder which field a feature belongs to: for a feature f of field k, the prompt
P(f) should encode close to the description F_k and far from the other fields' descriptions,
L_CL = -log exp(cos(En(P(f)), En(F_k))/tau) / sum_l exp(cos(En(P(f)), En(F_l))/tau), over up to
``features_per_field`` sampled features per field. The adapter (peft, safetensors) then serves
``EncoderConfig.adapter`` for the field and feature vectors. It runs as a Ray Train job (``llmctr.train.ssft``) and is
cached by (dataset, encoder, SSFT config, feature map): a re-run reuses it.

The prompt follows the authors' instruction data: the feature's value alone (through the field's
``value_labels``), never its field's name, then the candidate field names; the target is the field's
description sentence (the text whose vector FRE/FIE use).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic.dataclasses import dataclass

from llmctr.config import STRICT, dump_config
from llmctr.data.feature_map import FeatureMap
from llmctr.data.schema import DatasetConfig
from llmctr.semantics.encoders import EncoderConfig, HFEncoder, encoder_key
from llmctr.semantics.text import UNKNOWN, field_text, value_tokens

log = logging.getLogger(__name__)

ADAPTER = "adapter"
REPORT = "ssft.json"
EVAL_PROMPTS = 512


@dataclass(config=STRICT)
class SSFTConfig:
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    #: LoRA targets; None: query/value of BERT-like encoders, q_proj/v_proj of Llama-like decoders.
    target_modules: list[str] | None = None
    features_per_field: int = 1000
    temperature: float = 0.02
    epochs: int = 1
    batch_size: int = 32
    lr: float = 5e-4
    max_length: int = 128
    seed: int = 2026
    prompt: str = ("Given a feature, answer which field it belongs to. The feature is: {feature}. "
                   "The candidate fields are: {candidates}.")
    num_workers: int = 1
    use_gpu: bool = False


def ssft_examples(dataset: DatasetConfig, fmap: FeatureMap, cfg: SSFTConfig
                  ) -> tuple[list[str], list[int], list[str]]:
    """(prompts, field index of each prompt, field description texts): up to ``features_per_field`` features
    sampled per categorical field of the feature map (numeric fields are candidates but give no prompts)."""
    specs = {f.name: f for f in dataset.static_fields}
    names = [f.name for f in fmap.static_fields]
    missing = [n for n in names if n not in specs]
    if missing:
        raise ValueError(f"dataset config {dataset.name!r} lacks the feature-map fields {missing}")
    candidates = ", ".join(n.replace("_", " ") for n in names)
    rng = random.Random(cfg.seed)
    prompts, labels = [], []
    for k, field in enumerate(fmap.static_fields):
        if not field.vocab:
            continue
        values = field.vocab if len(field.vocab) <= cfg.features_per_field else rng.sample(
            field.vocab, cfg.features_per_field)
        for value in values:
            shown = ", ".join(value_tokens(specs[field.name], value)) or UNKNOWN
            prompts.append(cfg.prompt.format(feature=shown, candidates=candidates))
            labels.append(k)
    if not prompts:
        raise ValueError(f"dataset {dataset.name!r} has no categorical feature to fine-tune on")
    return prompts, labels, [field_text(specs[n]) for n in names]


def default_targets(model: torch.nn.Module) -> list[str]:
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    for pair in (["query", "value"], ["q_proj", "v_proj"], ["q", "v"]):
        if set(pair) <= names:
            return pair
    raise ValueError("cannot guess the LoRA target modules of this encoder; set ssft.target_modules")


def add_lora(encoder: HFEncoder, cfg: SSFTConfig) -> None:
    """Wrap the encoder's model with a trainable LoRA adapter (the base weights stay frozen)."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.target_modules or default_targets(encoder.model))
    encoder.model = get_peft_model(encoder.model, lora)


def contrastive_loss(encoder: HFEncoder, prompts: list[str], labels: torch.Tensor, fields: list[str],
                     temperature: float) -> torch.Tensor:
    """L_CL over the K field descriptions. Prompts and descriptions go through one forward pass (so DDP sees
    one forward per backward)."""
    vec = F.normalize(encoder.pooled(encoder.tokenize(list(prompts) + list(fields))), dim=-1)
    logits = vec[: len(prompts)] @ vec[len(prompts):].T / temperature
    return F.cross_entropy(logits, labels.to(logits.device))


def train_adapter(encoder: HFEncoder, prompts: list[str], labels: list[int], fields: list[str],
                  cfg: SSFTConfig, on_epoch=None) -> list[float]:
    """Fine-tune ``encoder`` (already wrapped by :func:`add_lora`) in place; the mean loss per epoch."""
    params = [p for p in encoder.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr)
    generator = torch.Generator().manual_seed(cfg.seed)
    target = torch.tensor(labels)
    history = []
    encoder.model.train()
    for epoch in range(cfg.epochs):
        order = torch.randperm(len(prompts), generator=generator)
        total, t0 = 0.0, time.perf_counter()
        for start in range(0, len(prompts), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            loss = contrastive_loss(encoder, [prompts[i] for i in idx], target[idx], fields, cfg.temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        history.append(total / len(prompts))
        log.info("SSFT epoch %d/%d: contrastive loss %.4f (%.1f s)", epoch + 1, cfg.epochs, history[-1],
                 time.perf_counter() - t0)
        if on_epoch is not None:
            on_epoch(epoch, history)
    encoder.model.eval()
    return history


@torch.no_grad()
def evaluate_loss(encoder: HFEncoder, prompts: list[str], labels: list[int], fields: list[str],
                  cfg: SSFTConfig) -> float:
    encoder.model.eval()
    target = torch.tensor(labels)
    total = 0.0
    for start in range(0, len(prompts), cfg.batch_size):
        sl = slice(start, start + cfg.batch_size)
        total += contrastive_loss(encoder, prompts[sl], target[sl], fields, cfg.temperature).item() * len(
            prompts[sl])
    return total / len(prompts)


def cache_key(dataset: DatasetConfig, fmap_path: Path, encoder: EncoderConfig, cfg: SSFTConfig) -> str:
    """Identity of an adapter: encoder (without adapter), SSFT settings that change the result, field texts
    and the feature map's content."""
    settings = {k: v for k, v in dump_config(cfg).items() if k not in ("num_workers", "use_gpu")}
    parts = {"encoder": encoder_key(replace(encoder, adapter=None)), "ssft": settings,
             "fields": [dump_config(f) for f in dataset.static_fields],
             "feature_map": hashlib.sha256(Path(fmap_path).read_bytes()).hexdigest()}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def ssft_report(adapter: str | Path) -> dict[str, Any]:
    """The losses and seconds written beside an adapter by :func:`run_ssft`."""
    path = Path(adapter).parent / REPORT
    return json.loads(path.read_text()) if path.is_file() else {}
