"""Driver side of training: build the TorchTrainer over the prepared parquet splits, run it, and turn
the best checkpoint into a versioned model artifact with metrics and a training-curve PNG."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import ray.train
from ray.train import DataConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from llmctr import storage
from llmctr.config import dump_config
from llmctr.data import FeatureMap, Manifest, resolve_prepared
from llmctr.data.feature_map import LABEL
from llmctr.data.paths import artifacts_root
from llmctr.data.pipeline import SPLITS
from llmctr.models.artifact import save_artifact
from llmctr.runtime import train_run_config
from llmctr.train.checkpoint import run_and_read
from llmctr.train.config import ExperimentConfig
from llmctr.train.loop import train_loop_per_worker
from llmctr.train.objective import split_state
from llmctr.train.plot import plot_history
from llmctr.train.semantics import prepare_semantics

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    artifact: Path
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    wall_seconds: float


@contextmanager
def _training_data_context():
    """Rows reach the workers in file order (same seed → same batches → same model), and the workers'
    short shard reads do not flood the driver's log with progress bars and execution plans."""
    ctx = ray.data.DataContext.get_current()
    saved = ctx.enable_progress_bars, ctx.execution_options.preserve_order, ctx.print_on_execution_start
    ctx.enable_progress_bars, ctx.execution_options.preserve_order, ctx.print_on_execution_start = False, True, False
    try:
        yield
    finally:
        ctx.enable_progress_bars, ctx.execution_options.preserve_order, ctx.print_on_execution_start = saved


def _cpus_per_worker(exp: ExperimentConfig, reserved_cpus: float = 0.0) -> float:
    """Leave Ray Data at least one CPU (on 2 CPUs a worker holding both deadlocks the data feed);
    ``reserved_cpus``: held by the caller already (a Tune trial's own actor)."""
    if exp.train.cpus_per_worker is not None:
        return exp.train.cpus_per_worker
    total = ray.cluster_resources().get("CPU", 2)
    return max(0.25, min(1.0, (total - 1 - reserved_cpus) / exp.train.num_workers))


def fit(exp: ExperimentConfig, data_dir: str | Path, artifacts: str | Path | None = None,
        storage_path: str | None = None, callbacks: list | None = None, reserved_cpus: float = 0.0) -> TrainResult:
    """Train ``exp`` on the prepared dataset in ``data_dir``; write a model artifact; return its metrics.
    ``callbacks``: Ray Train user callbacks (e.g. Tune's ``TuneReportCallback`` inside a search trial);
    ``reserved_cpus``: CPUs the caller's own actor holds (left out of the workers' share)."""
    data_dir = resolve_prepared(storage.as_location(data_dir))
    if not storage.exists(storage.join(data_dir, "feature_map.json")):
        raise FileNotFoundError(f"no prepared dataset at {data_dir} (run: llmctr data prepare {exp.dataset})")
    fmap = FeatureMap.load(storage.join(data_dir, "feature_map.json"))
    manifest = Manifest.load(storage.join(data_dir, "manifest.json"))
    columns = [f.name for f in fmap.input_fields] + [LABEL]
    with _training_data_context():
        datasets = {s: ray.data.read_parquet(str(storage.join(data_dir, s)), columns=columns) for s in SPLITS}
    tc = exp.train
    threads = tc.threads_per_worker or max(1, (os.cpu_count() or 2) // tc.num_workers)
    resources = {"CPU": _cpus_per_worker(exp, reserved_cpus), **({"GPU": 1} if tc.use_gpu else {})}
    root = artifacts_root(artifacts)
    results_path = storage_path or str(storage.join(root, "ray_results"))
    run_name = f"{exp.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    semantics_dir, semantics_info = prepare_semantics(exp, data_dir, root) if exp.semantics else (None, {})
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"experiment": dump_config(exp),
                           "feature_map": str(storage.join(data_dir, "feature_map.json")),
                           "train_rows": manifest.rows["train"], "threads": threads,
                           "semantics_dir": semantics_dir},
        scaling_config=ScalingConfig(num_workers=tc.num_workers, use_gpu=tc.use_gpu,
                                     resources_per_worker=resources, placement_strategy=tc.placement_strategy),
        datasets=datasets,
        dataset_config=DataConfig(datasets_to_split=["train"]),
        run_config=train_run_config(run_name, results_path, max_failures=tc.max_failures, callbacks=callbacks),
    )
    log.info("training %s (%s) with %d worker(s), %s CPU each", exp.name, exp.model.name, tc.num_workers,
             resources["CPU"])
    with _training_data_context():
        metrics, best, state, wall = run_and_read(trainer, "training")
    history = state["history"]
    epoch_speed = [h["samples_per_s"] for h in history]
    metrics.update(resumes=state["resumes"], train_samples_per_s=sum(epoch_speed) / len(epoch_speed),
                   train_wall_seconds=wall, precision=history[-1].get("precision", "fp32"),
                   num_workers=tc.num_workers, threads_per_worker=threads, dataset=exp.dataset,
                   model=exp.model.name, **semantics_info)
    served, teacher = split_state(exp, best)
    if teacher is not None:
        metrics["distillation"] = {"teacher": "teacher.safetensors + teacher.json in this folder",
                                   "teacher_model": exp.distill.teacher.name if exp.distill.teacher else exp.model.name,
                                   "config": dump_config(exp.distill), "semantic_tables": semantics_dir}
    with tempfile.TemporaryDirectory() as tmp:
        extra = {"training_curve.png": Path(tmp) / "training_curve.png", "history.json": Path(tmp) / "history.json"}
        plot_history(history, extra["training_curve.png"], title=f"{exp.name} ({exp.model.name})")
        extra["history.json"].write_text(json.dumps(history, indent=1, default=float))
        if teacher is not None:
            extra.update(_teacher_files(Path(tmp), exp, teacher, metrics, semantics_dir))
        artifact = save_artifact(storage.join(root, "models"), exp.name, served, exp.model, fmap,
                                 {**metrics, "experiment": dump_config(exp)}, extra_files=extra)
    _append_run_table(storage.join(root, "runs.jsonl"), exp, metrics, artifact)
    log.info("test AUC %.4f, logloss %.4f; artifact %s", metrics.get("test_auc", float("nan")),
             metrics.get("test_logloss", float("nan")), artifact)
    return TrainResult(artifact, metrics, history, wall)


def _teacher_files(tmp: Path, exp: ExperimentConfig, state: dict, metrics: dict, semantics_dir: str | None
                   ) -> dict[str, Path]:
    """The distilled student's teacher, kept for inspection and re-scoring (it needs the semantic tables)."""
    from safetensors.torch import save_file

    from llmctr.models.distill import teacher_config

    save_file(state, str(tmp / "teacher.safetensors"))
    meta = {"model": dump_config(teacher_config(exp.model, exp.distill)), "distill": dump_config(exp.distill),
            "semantic_tables": semantics_dir,
            "metrics": {k: v for k, v in metrics.items() if "teacher_" in k}}
    (tmp / "teacher.json").write_text(json.dumps(meta, indent=1, default=float))
    return {"teacher.safetensors": tmp / "teacher.safetensors", "teacher.json": tmp / "teacher.json"}


def _append_run_table(path: storage.Location, exp: ExperimentConfig, metrics: dict,
                      artifact: storage.Location) -> None:
    row = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "experiment": exp.name,
           "artifact": str(artifact), **metrics}
    line = json.dumps(row, default=float) + "\n"
    if storage.is_uri(path):  # object stores cannot append: rewrite the (small) table
        storage.write_text(path, (storage.read_text(path) if storage.exists(path) else "") + line)
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(line)
