"""Training the early-exit LLM head (``llmctr llm-head train NAME``) as a Ray Train job.

On the driver: a seeded sample of the train split (and of the validation split), each row's text (request
sentences + retrieved history, ``llmctr.semantics.rag``) and the distilled student's logit. On the workers:
LoRA weights and exit heads trained jointly on the weighted sum of the heads' BCE (deeper heads weigh more),
every head scored on the validation sample each epoch, checkpoints (trainable weights, optimizer, best epoch's
validation logits) reported by rank 0, resumed after a failure. Back on the driver: thresholds calibrated on
the best epoch's validation logits (``exit_calibration``) and the artifact written (``early_exit_head``).
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from llmctr import storage
from llmctr.config import dump_config, parse_config
from llmctr.data import FeatureMap, load_dataset_config, resolve_prepared
from llmctr.data.feature_map import LABEL, raw_records
from llmctr.data.paths import artifacts_root, resolve_artifact_path
from llmctr.models.artifact import load_artifact, resolve_artifact
from llmctr.models.ctr_model import sigmoid
from llmctr.runtime import train_run_config
from llmctr.semantics.rag import (
    HistoryRetriever,
    RecentHistory,
    build_contexts,
    entity_fields,
    item_texts,
    request_texts,
)
from llmctr.train.checkpoint import load_checkpoint, load_optimizer, save_checkpoint
from llmctr.train.early_exit_config import EarlyExitConfig, load_llm_head_config
from llmctr.train.early_exit_head import (
    EarlyExitHead,
    all_head_logits,
    build_exit_model,
    load_trainable_state,
    publish_version,
    trainable_state,
    write_head_files,
)
from llmctr.train.exit_calibration import calibrate_thresholds, plot_calibration
from llmctr.train.metrics import auc, evaluate_predictions

log = logging.getLogger(__name__)

__all__ = ["EarlyExitConfig", "EarlyExitHead", "EarlyExitResult", "fit_early_exit", "load_llm_head_config"]

TEXT, BASE, ROW = "text", "base_logit", "row"
VALID_LOGITS = "valid_logits.safetensors"


def joint_exit_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum_k w_k * BCE(logit_k, y): ``logits`` [batch, heads], ``weights`` [heads] summing to 1."""
    per_head = F.binary_cross_entropy_with_logits(
        logits, labels.unsqueeze(1).expand_as(logits).to(logits.dtype), reduction="none").mean(0)
    return (per_head * weights.to(per_head.device)).sum()


# ---------------------------------------------------------------- driver: the rows the head learns from


@dataclass
class HeadRows:
    train: pd.DataFrame  # text, base_logit, label
    valid: pd.DataFrame  # row, text, base_logit, label (+ the raw records, for the round trip)
    valid_records: list[dict]
    items: dict[str, str]
    retriever: HistoryRetriever
    info: dict[str, Any]


def _sample(frame: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """Up to ``n`` rows (seeded), in the frame's order, index kept."""
    return frame if n is None or n >= len(frame) else frame.sample(n=n, random_state=seed).sort_index()


def fit_and_calibration_rows(config: EarlyExitConfig, train: pd.DataFrame, valid: pd.DataFrame
                             ) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(rows to fit on, validation rows to calibrate on, rows of the split the fit rows come from). With
    ``fit_split: valid`` the fit rows are validation rows outside the calibration sample."""
    tc = config.train
    calibration = _sample(valid, tc.valid_sample, tc.seed + 1)
    source = train if tc.fit_split == "train" else valid.drop(index=calibration.index)
    if len(source) == 0:
        raise ValueError("no validation rows are left to fit on outside the calibration sample: lower "
                         "train.valid_sample or use train.fit_split: train")
    return (_sample(source, tc.sample, tc.seed).reset_index(drop=True), calibration.reset_index(drop=True),
            len(source))


def resolve_student(student: str, artifacts) -> storage.Location:
    """A model/version folder as given, else ``ARTIFACTS/models/<experiment name>``."""
    if storage.is_uri(student) or Path(student).exists():
        return resolve_artifact(student)
    return resolve_artifact(storage.join(artifacts_root(artifacts), "models", student))


@torch.inference_mode()
def student_logits(location: storage.Location, fmap: FeatureMap, frame: pd.DataFrame,
                   batch_size: int = 16384) -> np.ndarray:
    """The student's logit per row of a prepared split (its encoded columns); the student must have been
    trained on the same feature map."""
    model, student_fmap, _ = load_artifact(location)
    ours = {f.name: f.vocab_size for f in fmap.input_fields if f.is_categorical}
    theirs = {f.name: f.vocab_size for f in student_fmap.input_fields if f.is_categorical}
    if ours != theirs:
        raise ValueError(f"student {location} was trained on another feature map (vocabulary sizes {theirs}, "
                         f"this dataset's {ours})")
    names = [f.name for f in fmap.input_fields]
    out = []
    for start in range(0, len(frame), batch_size):
        part = frame.iloc[start:start + batch_size]
        batch = {n: torch.from_numpy(np.array(np.stack(part[n].to_numpy()) if part[n].dtype == object
                                              else part[n].to_numpy())) for n in names}
        out.append(model(batch).logit.float().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def load_retriever(config: EarlyExitConfig, train: pd.DataFrame, fmap: FeatureMap, user_key: str,
                   item_key: str) -> tuple[HistoryRetriever, str]:
    """The configured retriever, or the user's most recent train interactions; and which one it is."""
    if config.retriever is None:
        return RecentHistory(train, fmap, user_key, item_key, LABEL), "recent train interactions"
    module, _, name = config.retriever.loader.partition(":")
    try:
        loader = functools.reduce(getattr, name.split("."), importlib.import_module(module))
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"retriever.loader {config.retriever.loader!r} cannot be imported: {exc}") from exc
    path = resolve_artifact_path(config.retriever.path)
    return loader(path), f"retriever {path}"


def head_rows(config: EarlyExitConfig, data_dir: Path, fmap: FeatureMap, artifacts=None,
              retriever: HistoryRetriever | None = None) -> HeadRows:
    """The fit and calibration rows as (text, student logit, label), built on the driver once: the workers then
    only tokenize. The same renderer serves requests (``EarlyExitHead.texts``), so training and serving texts
    cannot drift apart."""
    dataset = load_dataset_config(config.dataset)
    user_key, item_key = (dataset.entities[e].key if e in dataset.entities else None
                          for e in (config.user_entity, config.item_entity))
    if user_key is None or item_key is None:
        raise ValueError(f"dataset {dataset.name!r} needs entities {config.user_entity!r} and "
                         f"{config.item_entity!r} (it has {sorted(dataset.entities)})")
    specs = {f.name: f for f in dataset.input_fields}
    text_fields = config.text_fields or [n for n in specs if n not in (user_key, item_key)]
    unknown = sorted(set(text_fields) - set(specs))
    if unknown:
        raise ValueError(f"text_fields {unknown} are not input fields of dataset {dataset.name!r}")
    subject, _ = entity_fields(dataset, user_key)
    full_train = pd.read_parquet(data_dir / "train")
    source = "given retriever"
    if retriever is None:
        retriever, source = load_retriever(config, full_train, fmap, user_key, item_key)
    items = item_texts(data_dir, fmap, dataset, item_key)
    student = resolve_student(config.student, artifacts) if config.student else None
    fit_rows, calibration_rows, source_rows = fit_and_calibration_rows(config, full_train,
                                                                       pd.read_parquet(data_dir / "valid"))
    frames = {"train": fit_rows, "valid": calibration_rows}
    records = {split: raw_records(frame, fmap) for split, frame in frames.items()}
    out = {}
    for split, frame in frames.items():
        contexts = build_contexts(records[split], retriever, items, config.neighbours, subject)
        base = student_logits(student, fmap, frame) if student else np.zeros(len(frame), np.float32)
        out[split] = pd.DataFrame({ROW: np.arange(len(frame)), TEXT: request_texts(
            records[split], [specs[n] for n in text_fields], contexts), BASE: base, LABEL: frame[LABEL].to_numpy()})
    fit_split = config.train.fit_split
    info = {"fit_split": fit_split, "train_rows": len(fit_rows), "train_split_rows": source_rows,
            "train_is_sample": len(fit_rows) < source_rows, "valid_rows": len(calibration_rows),
            "context_source": source, "student": str(student) if student else None,
            "context": {"user_field": user_key, "item_field": item_key, "subject": subject,
                        "neighbours": config.neighbours, "source": source,
                        "text_fields": [dump_config(specs[n]) for n in text_fields]}}
    if info["train_is_sample"]:
        log.info("fitting on a sample of %d of the %d %s rows%s", len(fit_rows), source_rows, fit_split,
                 " outside the calibration sample" if fit_split == "valid" else "")
    return HeadRows(out["train"], out["valid"], records["valid"], items, retriever, info)


# ---------------------------------------------------------------- workers


def _shard_rows(shard) -> dict[str, np.ndarray]:
    parts = list(shard.iter_batches(batch_size=65536, batch_format="pandas"))
    frame = pd.concat(parts, ignore_index=True)
    return {c: frame[c].to_numpy() for c in frame.columns}


def _train_epoch(model, encoder, data: dict[str, np.ndarray], optimizer, weights, cfg: EarlyExitConfig,
                 residual: bool, seed: int, show: bool) -> tuple[float, int, float]:
    from tqdm import tqdm

    model.train()
    order = np.random.default_rng(seed).permutation(len(data[TEXT]))
    total, count, t0 = 0.0, 0, time.perf_counter()
    steps = range(0, len(order), cfg.train.batch_size)
    for start in tqdm(steps, desc="llm head", disable=not show, mininterval=10):
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


def _worker(config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch

    cfg = parse_config(EarlyExitConfig, config["head"], "llm head config")
    residual = config["residual"]
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(cfg.train.seed)
    torch.set_num_threads(config["threads"])
    device = ray.train.torch.get_device()
    model, encoder = build_exit_model(cfg, str(device))
    heads = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("heads.")]
    lora = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("heads.")]
    optimizer = torch.optim.AdamW([{"params": lora, "lr": cfg.train.lr}, {"params": heads, "lr": cfg.train.head_lr}],
                                  weight_decay=cfg.train.weight_decay)
    state = {"epoch": 0, "best_auc": -1.0, "best_epoch": 0, "resumes": 0, "history": []}
    best, best_logits = trainable_state(model), None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            current, best, state = load_checkpoint(Path(d))
            load_trainable_state(model, current, "checkpoint")
            load_optimizer(optimizer, Path(d))
            best_logits = _read_logits(Path(d))
        state["resumes"] += 1
        log.info("rank %d resumed after epoch %d", rank, state["epoch"])
    train_model = ray.train.torch.prepare_model(model) if world > 1 else model
    train = _shard_rows(ray.train.get_dataset_shard("train"))
    valid = _shard_rows(ray.train.get_dataset_shard("valid"))
    order = np.argsort(valid[ROW])
    valid = {k: v[order] for k, v in valid.items()}
    weights = torch.tensor(cfg.loss_weights(), dtype=torch.float32)
    while state["epoch"] < cfg.train.epochs:
        epoch = state["epoch"]
        loss, count, seconds = _train_epoch(train_model, encoder, train, optimizer, weights, cfg, residual,
                                            cfg.train.seed * 1000 + epoch * 31 + rank, rank == 0)
        logits = all_head_logits(model, encoder, list(valid[TEXT]), valid[BASE] if residual else None,
                                 cfg.train.eval_batch_size)
        metrics = {**_valid_metrics(logits, valid, residual), "epoch": epoch + 1, "train_loss": loss,
                   "samples_per_s": count * world / seconds, "epoch_seconds": seconds}
        if best_logits is None or metrics["valid_auc"] > state["best_auc"]:  # (a NaN AUC still keeps epoch 1)
            state.update(best_auc=metrics["valid_auc"], best_epoch=epoch + 1)
            best, best_logits = trainable_state(model), logits
        state["epoch"] = epoch + 1
        state["history"].append(metrics)
        if rank == 0:
            log.info("epoch %d/%d: loss %.4f, valid AUC by head %s, %.1f rows/s", epoch + 1, cfg.train.epochs, loss,
                     [round(metrics[f"valid_auc_head{k}"], 4) for k in range(logits.shape[1])],
                     metrics["samples_per_s"])
        _report(rank, metrics, model, best, best_logits, optimizer, state)


def _read_logits(folder: Path) -> np.ndarray | None:
    from safetensors.torch import load_file

    path = folder / VALID_LOGITS
    return load_file(str(path))["logits"].numpy() if path.is_file() else None


def _report(rank, metrics, model, best, best_logits, optimizer, state) -> None:
    """Rank 0 reports with a checkpoint (Ray keeps only metrics that come with one); others report bare."""
    import ray.train
    from safetensors.torch import save_file

    if rank != 0:
        ray.train.report(metrics, checkpoint=None)
        return
    with tempfile.TemporaryDirectory() as d:
        save_checkpoint(Path(d), trainable_state(model), best, optimizer, state)
        save_file({"logits": torch.from_numpy(np.ascontiguousarray(best_logits))}, str(Path(d) / VALID_LOGITS))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))


# ---------------------------------------------------------------- driver: the job and the artifact


@dataclass
class EarlyExitResult:
    artifact: storage.Location
    metrics: dict[str, Any]
    valid_head_probs: np.ndarray  # [valid rows, heads] of the best epoch, as the thresholds were calibrated on
    valid: pd.DataFrame  # row, text, base_logit, label
    valid_records: list[dict]  # the validation rows as raw records (what a client sends)
    retriever: HistoryRetriever


def fit_early_exit(config: EarlyExitConfig, data_dir: str | Path, artifacts: str | Path | None = None,
                   retriever: HistoryRetriever | None = None) -> EarlyExitResult:
    """Train the head on Ray Train, calibrate its exit thresholds on validation, write the artifact
    ``ARTIFACTS/llm_heads/<name>/<version>/``. ``retriever``: overrides ``config.retriever``."""
    import ray
    from ray.train import DataConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from llmctr.train.trainer import _cpus_per_worker, _training_data_context

    if storage.is_uri(data_dir):
        raise ValueError("the LLM head trains from a local prepared dataset, not an object store location")
    data_dir = Path(resolve_prepared(Path(data_dir).resolve()))
    if not (data_dir / "feature_map.json").is_file():
        raise FileNotFoundError(f"no prepared dataset at {data_dir} (run: llmctr data prepare {config.dataset})")
    fmap = FeatureMap.load(data_dir / "feature_map.json")
    rows = head_rows(config, data_dir, fmap, artifacts, retriever)
    residual = config.student is not None
    tc = config.train
    root = artifacts_root(artifacts)
    with _training_data_context():
        datasets = {"train": ray.data.from_pandas(rows.train), "valid": ray.data.from_pandas(rows.valid)}
    threads = tc.threads_per_worker or max(1, (os.cpu_count() or 2) // tc.num_workers)
    trainer = TorchTrainer(
        _worker, train_loop_config={"head": dump_config(config), "residual": residual, "threads": threads},
        scaling_config=ScalingConfig(num_workers=tc.num_workers, use_gpu=tc.use_gpu, resources_per_worker={
            "CPU": _cpus_per_worker(config), **({"GPU": 1} if tc.use_gpu else {})}),
        datasets=datasets, dataset_config=DataConfig(datasets_to_split=["train"]),
        run_config=train_run_config(f"llm-head-{config.name}-{time.strftime('%Y%m%d-%H%M%S')}",
                                    str(storage.join(root, "ray_results")), max_failures=tc.max_failures))
    log.info("LLM head %s: fit on %d %s rows%s, calibrate on %d validation rows, exits after layers %s, context "
             "from %s", config.name, len(rows.train), tc.fit_split, " (a sample)" if rows.info["train_is_sample"]
             else "", len(rows.valid), config.exit_layers, rows.info["context_source"])
    t0 = time.time()
    with _training_data_context():
        result = trainer.fit()
    if result.error:
        raise RuntimeError(f"LLM head training failed: {result.error}") from result.error
    with result.checkpoint.as_directory() as d:
        _, best, state = load_checkpoint(Path(d))
        logits = _read_logits(Path(d))
    probs = sigmoid(logits)
    calibration = calibrate_thresholds(probs, rows.valid[LABEL].to_numpy(), config.exit_layers,
                                       config.target_auc_loss)
    history = state["history"]
    best_epoch = next(h for h in history if h["epoch"] == state["best_epoch"])
    metrics = {**{k: v for k, v in best_epoch.items() if k.startswith("valid_")}, **calibration.summary(),
               "best_epoch": state["best_epoch"], "epochs_run": state["epoch"], "resumes": state["resumes"],
               "train_wall_seconds": time.time() - t0,
               "train_samples_per_s": float(np.mean([h["samples_per_s"] for h in history])),
               **{k: v for k, v in rows.info.items() if k != "context"}}
    meta = {"name": config.name, "config": dump_config(config), "exit_layers": config.exit_layers,
            "thresholds": calibration.chosen.thresholds, "residual": residual,
            "encoder": {"model": config.encoder.model or "all-MiniLM-L6-v2 (bundled)",
                        "adapter": config.encoder.adapter, "max_length": config.encoder.max_length},
            "context": rows.info["context"], "metrics": metrics}

    def write(folder: Path, version: str) -> None:
        plot_calibration(calibration, folder / "calibration.png",
                         title=f"{config.name}: exit thresholds on {len(rows.valid)} validation rows")
        (folder / "history.json").write_text(json.dumps(history, indent=1, default=float))
        write_head_files(folder, best, {**meta, "version": version}, rows.items)

    artifact = publish_version(storage.join(root, "llm_heads"), config.name, write)
    log.info("LLM head %s: valid AUC %.4f full depth, %.4f early exit at %s (%.0f%% fewer layers); artifact %s",
             config.name, calibration.full_depth.auc, calibration.chosen.auc, calibration.chosen.thresholds,
             100 * metrics["valid_depth_cut"], artifact)
    return EarlyExitResult(artifact, metrics, probs, rows.valid, rows.valid_records, rows.retriever)

