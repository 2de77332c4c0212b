"""Driver-side LLaCTR preparation before training: SSFT's adapter (cached), then the field and feature vectors
(cached by the encoder key, which includes the adapter's content). Workers get the tables folder."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from llmctr import storage
from llmctr.data import load_dataset_config
from llmctr.train.ctr.config import ExperimentConfig

log = logging.getLogger(__name__)


def prepare_semantics(exp: ExperimentConfig, data_dir: storage.Location, root: storage.Location
                      ) -> tuple[str, dict[str, Any]]:
    """(tables folder, timings) for ``exp.semantics``; sets ``exp.model.llactr.semantic_dim`` and
    ``exp.model.history.semantic.dim`` from the tables so the saved model config rebuilds without them."""
    from llmctr.semantics.ssft import ssft_report
    from llmctr.semantics.tables import SemanticTables, build_semantic_tables
    from llmctr.train.ssft import run_ssft

    if storage.is_uri(data_dir) or storage.is_uri(root):
        raise ValueError("LLaCTR semantics need a local prepared dataset and artifacts root (not an object store)")
    sem = exp.semantics
    dataset = load_dataset_config(exp.dataset)
    encoder = sem.encoder
    info: dict[str, Any] = {}
    if sem.ssft is not None:
        t0 = time.time()
        adapter = run_ssft(data_dir, dataset, encoder, sem.ssft, Path(root) / "ssft")
        report = ssft_report(adapter)
        info.update(ssft_seconds=report.get("wall_seconds", time.time() - t0),
                    ssft_loss_before=report.get("loss_before"),
                    ssft_loss_after=report.get("loss_after"))
        encoder = replace(encoder, adapter=str(adapter))
    t0 = time.time()
    tables_dir = build_semantic_tables(data_dir, dataset, encoder, artifacts=root,
                                       cache_root=Path(root) / "cache" / "embeddings")
    tables = SemanticTables.load(tables_dir)
    info.update(semantics_seconds=time.time() - t0,
                encode_seconds=float((tables.meta or {}).get("encode_seconds", time.time() - t0)))
    teacher = exp.distill.teacher if exp.distill is not None else None
    for config in (exp.model, teacher):
        if config is not None and config.llactr is not None:
            config.llactr.semantic_dim = int(tables.field.shape[1])
        if config is not None and config.history is not None and config.history.semantic is not None:
            config.history.semantic.dim = int(tables.field.shape[1])
    log.info("semantic tables %s (%d fields, dim %d)", tables_dir, len(tables.fields), tables.field.shape[1])
    return str(tables_dir), info
