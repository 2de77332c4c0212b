"""The main job end to end on the embedded default: prepare → train → deploy → score over HTTP → report.

ML-1M when its files are found (``../shared/data/ml-1m`` and the other data roots), else a generated
synthetic dataset with planted signal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from llmctr import storage
from llmctr.data import FeatureMap, load_dataset_config, prepare
from llmctr.data.feature_map import LABEL, raw_records
from llmctr.data.paths import artifacts_root, find_dataset_dir
from llmctr.serve.client import score_over_http, wait_healthy
from llmctr.serve.scorer import Scorer
from llmctr.train import fit, load_experiment
from llmctr.train.metrics import auc

log = logging.getLogger(__name__)


@dataclass
class DemoReport:
    dataset: str
    lines: list[tuple[str, str]]

    def render(self) -> str:
        width = max(len(k) for k, _ in self.lines)
        return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in self.lines)


def pick_dataset(data_dir: str | None = None) -> str:
    return "ml1m" if find_dataset_dir(load_dataset_config("ml1m"), data_dir) else "synthetic"


def sample_records(split_dir: Path, fmap: FeatureMap, n: int, seed: int = 0) -> tuple[list[dict], np.ndarray]:
    frame = pd.read_parquet(split_dir)
    frame = frame.sample(n=min(n, len(frame)), random_state=seed)
    return raw_records(frame, fmap), frame[LABEL].to_numpy()


def run_demo(dataset: str | None = None, data_dir: str | None = None, artifacts: str | None = None,
             n_records: int = 500, per_request: int = 50, port: int = 8000, epochs: int | None = None) -> DemoReport:
    from ray import serve

    from llmctr.serve.deploy import deploy

    dataset = dataset or pick_dataset(data_dir)
    log.info("demo dataset: %s", dataset)
    data_out, manifest = prepare(dataset, data_dir=data_dir, artifacts=artifacts)
    exp = load_experiment(f"{dataset}_deepfm")
    if epochs:
        exp.train.epochs = epochs
    result = fit(exp, data_out, artifacts=artifacts)
    fmap = FeatureMap.load(data_out / "feature_map.json")
    records, labels = sample_records(data_out / "test", fmap, n_records)
    url = deploy(result.artifact, port=port)
    try:
        wait_healthy(url)
        run = score_over_http(url, records, per_request)
    finally:
        serve.shutdown()
    offline = Scorer.load(result.artifact).score(records)
    m = result.metrics
    lines = [
        ("dataset", f"{dataset}: {manifest.rows} rows, {manifest.rows_quarantined} quarantined, "
                    f"{manifest.rows_dropped_by_label_rule} dropped by label rule"),
        ("model", f"{exp.model.name} ({exp.name}), best epoch {m['best_epoch']} of {m['epochs_run']}"),
        ("test AUC / logloss", f"{m['test_auc']:.4f} / {m['test_logloss']:.4f}  "
                               f"(gAUC {m.get('test_gauc', float('nan')):.4f})"),
        ("train throughput", f"{m['train_samples_per_s']:,.0f} samples/s on Ray Train ({m['num_workers']} worker)"),
        ("served", f"{len(records)} test records over HTTP in {len(run.latencies_ms)} requests of {per_request}"),
        ("served AUC", f"{auc(labels, run.probabilities):.4f} (max |HTTP - offline| = "
                       f"{np.abs(run.probabilities - offline).max():.2e})"),
        ("HTTP latency", f"p50 {run.percentile(50):.1f} ms, p95 {run.percentile(95):.1f} ms per request"),
        ("prepared data", str(data_out)),
        ("model artifact", str(result.artifact)),
        ("training curve", str(result.artifact / "training_curve.png")),
        ("run table", str(storage.join(artifacts_root(artifacts), "runs.jsonl"))),
    ]
    return DemoReport(dataset, lines)
