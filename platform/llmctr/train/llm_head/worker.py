"""The early-exit LLM head's Ray Train loop: LoRA weights and exit heads trained jointly on the weighted sum of the
heads' BCE (deeper heads weigh more), every head scored on the validation sample each epoch, checkpoints
(trainable weights, optimizer, the best epoch's validation logits) reported by rank 0, resumed after a failure.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from llmctr.config import parse_config
from llmctr.data.feature_map import LABEL
from llmctr.models.ctr_model import sigmoid
from llmctr.models.llm_head import all_head_logits, build_exit_model, load_trainable_state, trainable_state
from llmctr.models.llm_head_config import EarlyExitConfig
from llmctr.train.job import report, restore, start_worker
from llmctr.train.llm_head.rows import BASE, ROW, TEXT
from llmctr.train.metrics import auc, evaluate_predictions

log = logging.getLogger(__name__)

VALID_LOGITS = "valid_logits.safetensors"


def joint_exit_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum_k w_k * BCE(logit_k, y): ``logits`` [batch, heads], ``weights`` [heads] summing to 1."""
    per_head = F.binary_cross_entropy_with_logits(
        logits, labels.unsqueeze(1).expand_as(logits).to(logits.dtype), reduction="none").mean(0)
    return (per_head * weights.to(per_head.device)).sum()


def _shard_rows(shard) -> dict[str, np.ndarray]:
    parts = list(shard.iter_batches(batch_size=65536, batch_format="pandas"))
    frame = pd.concat(parts, ignore_index=True)
    return {c: frame[c].to_numpy() for c in frame.columns}


def train_epoch(model, encoder, data: dict[str, np.ndarray], optimizer, weights, cfg: EarlyExitConfig,
                residual: bool, seed: int, show: bool) -> tuple[float, int, float]:
    from tqdm import tqdm

    from llmctr.runtime import progress_off

    model.train()
    order = np.random.default_rng(seed).permutation(len(data[TEXT]))
    total, count, t0 = 0.0, 0, time.perf_counter()
    steps = range(0, len(order), cfg.train.batch_size)
    for start in tqdm(steps, desc="llm head", disable=progress_off(show), mininterval=10):
        idx = order[start:start + cfg.train.batch_size]
        tokens = encoder.tokenize([data[TEXT][i] for i in idx])
        base = torch.as_tensor(data[BASE][idx], dtype=torch.float32, device=encoder.device) if residual else None
        labels = torch.as_tensor(data[LABEL][idx], dtype=torch.float32, device=encoder.device)
        loss = joint_exit_loss(model(**tokens, base_logit=base), labels, weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(idx)
        count += len(idx)
    return total / max(count, 1), count, time.perf_counter() - t0


def _valid_metrics(logits: np.ndarray, valid: dict[str, np.ndarray], residual: bool) -> dict[str, float]:
    labels = valid[LABEL]
    metrics = {f"valid_auc_head{k}": auc(labels, logits[:, k]) for k in range(logits.shape[1])}
    metrics.update(evaluate_predictions(labels, sigmoid(logits[:, -1]), prefix="valid_"))
    if residual:
        metrics["valid_student_auc"] = auc(labels, valid[BASE])
    return metrics


def head_loop_per_worker(config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch

    cfg = parse_config(EarlyExitConfig, config["head"], "llm head config")
    residual = config["residual"]
    rank, world, device = start_worker(cfg.train.seed, config["threads"])
    model, encoder = build_exit_model(cfg, str(device))
    heads = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("heads.")]
    lora = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("heads.")]
    optimizer = torch.optim.AdamW([{"params": lora, "lr": cfg.train.lr}, {"params": heads, "lr": cfg.train.head_lr}],
                                  weight_decay=cfg.train.weight_decay)
    saved: dict[str, np.ndarray | None] = {"logits": None}  # the best epoch's validation logits

    def read(folder: Path) -> None:
        saved["logits"] = read_logits(folder)

    state = {"epoch": 0, "best_auc": -1.0, "best_epoch": 0, "resumes": 0, "history": []}
    best, state = restore(model, optimizer, state, rank, weights=trainable_state, read=read,
                          load=lambda weights: load_trainable_state(model, weights, "checkpoint"))
    train_model = ray.train.torch.prepare_model(model) if world > 1 else model
    train = _shard_rows(ray.train.get_dataset_shard("train"))
    valid = _shard_rows(ray.train.get_dataset_shard("valid"))
    order = np.argsort(valid[ROW])
    valid = {k: v[order] for k, v in valid.items()}
    weights = torch.tensor(cfg.loss_weights(), dtype=torch.float32)

    def write(folder: Path) -> None:
        save_file({"logits": torch.from_numpy(np.ascontiguousarray(saved["logits"]))}, str(folder / VALID_LOGITS))

    while state["epoch"] < cfg.train.epochs:
        epoch = state["epoch"]
        loss, count, seconds = train_epoch(train_model, encoder, train, optimizer, weights, cfg, residual,
                                           cfg.train.seed * 1000 + epoch * 31 + rank, rank == 0)
        logits = all_head_logits(model, encoder, list(valid[TEXT]), valid[BASE] if residual else None,
                                 cfg.train.eval_batch_size)
        metrics = {**_valid_metrics(logits, valid, residual), "epoch": epoch + 1, "train_loss": loss,
                   "samples_per_s": count * world / seconds, "epoch_seconds": seconds}
        if saved["logits"] is None or metrics["valid_auc"] > state["best_auc"]:  # (a NaN AUC still keeps epoch 1)
            state.update(best_auc=metrics["valid_auc"], best_epoch=epoch + 1)
            best, saved["logits"] = trainable_state(model), logits
        state["epoch"] = epoch + 1
        state["history"].append(metrics)
        if rank == 0:
            log.info("epoch %d/%d: loss %.4f, valid AUC by head %s, %.1f rows/s", epoch + 1, cfg.train.epochs, loss,
                     [round(metrics[f"valid_auc_head{k}"], 4) for k in range(logits.shape[1])],
                     metrics["samples_per_s"])
        report(rank, metrics, trainable_state(model), best, optimizer, state, write=write)


def read_logits(folder: Path) -> np.ndarray | None:
    """The best epoch's validation logits of every head, saved with a checkpoint."""
    path = folder / VALID_LOGITS
    return load_file(str(path))["logits"].numpy() if path.is_file() else None
