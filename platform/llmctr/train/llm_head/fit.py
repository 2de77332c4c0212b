"""Training the early-exit LLM head (``llmctr llm-head train NAME``) as a Ray Train job: the rows on the driver
(``rows``), LoRA weights and exit heads in the workers (``worker``), then thresholds calibrated on the best epoch's
validation logits (``calibration``) and the artifact written (``llmctr.models.llm_head``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import ray

from llmctr import storage
from llmctr.config import dump_config
from llmctr.data import FeatureMap, resolve_prepared
from llmctr.data.feature_map import LABEL
from llmctr.models.ctr_model import sigmoid
from llmctr.models.llm_head import write_head_files
from llmctr.models.llm_head_config import EarlyExitConfig
from llmctr.semantics.rag import HistoryRetriever
from llmctr.train.job import run_and_read, torch_trainer, training_data_context
from llmctr.train.llm_head.calibration import Calibration, calibrate_thresholds, plot_calibration
from llmctr.train.llm_head.rows import HeadRows, head_rows
from llmctr.train.llm_head.worker import head_loop_per_worker, read_logits

log = logging.getLogger(__name__)


@dataclass
class EarlyExitResult:
    artifact: storage.Location
    metrics: dict[str, Any]
    valid_head_probs: np.ndarray  # [valid rows, heads] of the best epoch, as the thresholds were calibrated on
    valid: pd.DataFrame  # row, text, base_logit, label
    valid_records: list[dict]  # the validation rows as raw records (what a client sends)
    retriever: HistoryRetriever | None  # None: the head reads the request's own history (config.context: history)


def fit_early_exit(config: EarlyExitConfig, data_dir: str | Path, artifacts: str | Path | None = None,
                   retriever: HistoryRetriever | None = None) -> EarlyExitResult:
    """Train the head on Ray Train, calibrate its exit thresholds on validation, write the artifact
    ``ARTIFACTS/llm_heads/<name>/<version>/``. ``retriever``: overrides ``config.retriever``."""
    if storage.is_uri(data_dir):
        raise ValueError("the LLM head trains from a local prepared dataset, not an object store location")
    data_dir = Path(resolve_prepared(Path(data_dir).resolve()))
    if not (data_dir / "feature_map.json").is_file():
        raise FileNotFoundError(f"no prepared dataset at {data_dir} (run: llmctr data prepare {config.dataset})")
    fmap = FeatureMap.load(data_dir / "feature_map.json")
    rows = head_rows(config, data_dir, fmap, artifacts, retriever)
    residual = config.student is not None
    tc = config.train
    root = storage.artifacts_root(artifacts)
    with training_data_context():
        datasets = {"train": ray.data.from_pandas(rows.train), "valid": ray.data.from_pandas(rows.valid)}
    trainer = torch_trainer(head_loop_per_worker, {"head": dump_config(config), "residual": residual}, tc,
                            name=f"llm-head-{config.name}", storage_path=str(storage.join(root, "ray_results")),
                            datasets=datasets)
    log.info("LLM head %s: fit on %d %s rows%s, calibrate on %d validation rows, exits after layers %s, context "
             "from %s", config.name, len(rows.train), tc.fit_split, " (a sample)" if rows.info["train_is_sample"]
             else "", len(rows.valid), config.exit_layers, rows.info["context_source"])
    saved = {}
    _, best, state, wall = run_and_read(trainer, "LLM head training",
                                        read=lambda folder: saved.update(logits=read_logits(folder)))
    probs = sigmoid(saved["logits"])
    calibration = calibrate_thresholds(probs, rows.valid[LABEL].to_numpy(), config.exit_layers,
                                       config.target_auc_loss, adaptive_margin=config.adaptive_margin)
    history = state["history"]
    best_epoch = next(h for h in history if h["epoch"] == state["best_epoch"])
    metrics = {**{k: v for k, v in best_epoch.items() if k.startswith("valid_")}, **calibration.summary(),
               "best_epoch": state["best_epoch"], "epochs_run": state["epoch"], "resumes": state["resumes"],
               "train_wall_seconds": wall,
               "train_samples_per_s": float(np.mean([h["samples_per_s"] for h in history])),
               **{k: v for k, v in rows.info.items() if k != "context"}}
    artifact = _publish(root, config, rows, best, history, calibration, metrics, residual)
    log.info("LLM head %s: valid AUC %.4f full depth, %.4f early exit at %s (%.0f%% fewer layers); artifact %s",
             config.name, calibration.full_depth.auc, calibration.chosen.auc, calibration.chosen.thresholds,
             100 * metrics["valid_depth_cut"], artifact)
    return EarlyExitResult(artifact, metrics, probs, rows.valid, rows.valid_records, rows.retriever)


def _publish(root: storage.Location, config: EarlyExitConfig, rows: HeadRows, best: dict, history: list[dict],
             calibration: Calibration, metrics: dict[str, Any], residual: bool) -> storage.Location:
    """The head's artifact: weights and head.json (``llmctr.models.llm_head``), calibration plot, history."""
    meta = {"name": config.name, "config": dump_config(config), "exit_layers": config.exit_layers,
            "thresholds": calibration.chosen.thresholds, "residual": residual,
            "encoder": {"model": config.encoder.model or "all-MiniLM-L6-v2 (bundled)",
                        "adapter": config.encoder.adapter, "max_length": config.encoder.max_length},
            "context": rows.info["context"], "metrics": metrics}
    parent = storage.join(root, "llm_heads", config.name)
    with storage.publish_version(parent) as (folder, version):
        plot_calibration(calibration, folder / "calibration.png",
                         title=f"{config.name}: exit thresholds on {len(rows.valid)} validation rows")
        (folder / "history.json").write_text(json.dumps(history, indent=1, default=float))
        write_head_files(folder, best, {**meta, "version": version}, rows.items, rows.history)
    return storage.join(parent, version)
