"""Driver side of training: build the TorchTrainer over the prepared parquet splits, run it, and turn
the best checkpoint into a versioned model artifact with metrics and a training-curve PNG."""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import ray.train

from llmctr import storage
from llmctr.config import dump_config
from llmctr.data import FeatureMap, Manifest, resolve_prepared
from llmctr.data.feature_map import LABEL
from llmctr.data.history_store import USER_HISTORY
from llmctr.data.pipeline import SPLITS
from llmctr.models.artifact import save_artifact
from llmctr.semantics.entity_texts import ENTITY_TEXTS
from llmctr.storage import artifacts_root
from llmctr.train.ctr.cold_texts import prepare_cold_texts
from llmctr.train.ctr.config import ExperimentConfig
from llmctr.train.ctr.instance_texts import prepare_instance_texts
from llmctr.train.ctr.loop import train_loop_per_worker
from llmctr.train.ctr.objective import split_state
from llmctr.train.ctr.plot import plot_history
from llmctr.train.ctr.semantic_tables import prepare_semantics
from llmctr.train.job import cpus_per_worker, run_and_read, threads_per_worker, torch_trainer, training_data_context
from llmctr.train.local_run import LocalTrainer

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    artifact: Path
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    wall_seconds: float


def choose_engine(exp: ExperimentConfig, data_dir: str | Path, callbacks: list | None = None,
                  address: str | None = None) -> str:
    """"ray" or "local" for ``exp.train.engine``. auto is local when one CPU worker trains from memory, without
    semantic tables to build (a Ray Data job), outside a Tune trial (``callbacks``) and with no cluster named
    (``address`` or $RAY_ADDRESS); "local" asked for a run that needs Ray is an error."""
    tc = exp.train
    needs_ray = [why for why, yes in (
        ("more than one worker", tc.num_workers > 1), ("a GPU", tc.use_gpu), ("semantic tables", bool(exp.semantics)),
        ("a streamed feed", not _in_memory(tc, _manifest(data_dir))), ("Ray Train callbacks", bool(callbacks)))
        if yes]
    if tc.engine == "local" and needs_ray:
        raise ValueError(f"train.engine local cannot run {exp.name}: it needs {', '.join(needs_ray)}")
    if tc.engine != "auto":
        return tc.engine
    cluster = address or os.environ.get("RAY_ADDRESS") or (ray.is_initialized() and len(ray.nodes()) > 1)
    return "ray" if needs_ray or cluster else "local"


def _manifest(data_dir: str | Path) -> Manifest:
    return Manifest.load(storage.join(resolve_prepared(storage.as_location(data_dir)), "manifest.json"))


def _in_memory(tc, manifest: Manifest) -> bool:
    """Each worker loads the train split once (memory feed) rather than Ray Data streaming it every epoch."""
    return tc.feed == "memory" or (tc.feed == "auto" and manifest.rows["train"] <= tc.max_memory_rows)


def fit(exp: ExperimentConfig, data_dir: str | Path, artifacts: str | Path | None = None,
        storage_path: str | None = None, callbacks: list | None = None, reserved_cpus: float = 0.0) -> TrainResult:
    """Train ``exp`` on the prepared dataset in ``data_dir``; write a model artifact; return its metrics.
    ``callbacks``: Ray Train user callbacks (e.g. Tune's ``TuneReportCallback`` inside a search trial);
    ``reserved_cpus``: CPUs the caller's own actor holds (left out of the workers' share). On the Ray engine
    (``choose_engine``) Ray must be initialised."""
    data_dir = resolve_prepared(storage.as_location(data_dir))
    if not storage.exists(storage.join(data_dir, "feature_map.json")):
        raise FileNotFoundError(f"no prepared dataset at {data_dir} (run: llmctr data prepare {exp.dataset})")
    fmap = FeatureMap.load(storage.join(data_dir, "feature_map.json"))
    manifest = Manifest.load(storage.join(data_dir, "manifest.json"))
    tc = exp.train
    engine = choose_engine(exp, data_dir, callbacks)
    splits = {s: str(storage.join(data_dir, s)) for s in SPLITS}
    # Valid and test reach every worker whole, and a train split that fits in memory is read once per epoch loop:
    # the workers read those parquet files themselves. Only a streamed train split goes through Ray Data.
    memory = _in_memory(tc, manifest)
    datasets = None
    if not memory:
        with training_data_context():
            datasets = {"train": ray.data.read_parquet(splits["train"], columns=[*fmap.input_columns, LABEL])}
    root = artifacts_root(artifacts)
    results_path = storage_path or str(storage.join(root, "ray_results"))
    semantics_dir, semantics_info = prepare_semantics(exp, data_dir, root) if exp.semantics else (None, {})
    cold_texts, entity_texts, cold_rows = prepare_cold_texts(exp, fmap, semantics_dir, data_dir,
                                                             Path(root) / "cache" / "embeddings")
    instance_texts, instance_info = prepare_instance_texts(exp, data_dir, semantics_dir or root, Path(root) / "cache"
                                                           / "embeddings", memory)
    loop_config = {"experiment": dump_config(exp), "feature_map": str(storage.join(data_dir, "feature_map.json")),
                   "train_rows": manifest.rows["train"], "semantics_dir": semantics_dir, "cold_texts": cold_texts,
                   "instance_texts": instance_texts,
                   "splits": splits, "memory": memory,
                   "progress": sys.stderr.isatty()}  # per-epoch bars, drawn on the driver's terminal
    if engine == "local":
        trainer = LocalTrainer(train_loop_per_worker, loop_config, threads_per_worker(tc))
        log.info("training %s (%s) in this process (train.engine: %s)", exp.name, exp.model.name, tc.engine)
    else:
        trainer = torch_trainer(train_loop_per_worker, loop_config, tc, name=exp.name, storage_path=results_path,
                                datasets=datasets, reserved_cpus=reserved_cpus, callbacks=callbacks)
        log.info("training %s (%s) with %d worker(s), %s CPU each", exp.name, exp.model.name, tc.num_workers,
                 cpus_per_worker(tc, reserved_cpus))
    metrics, best, state, wall = run_and_read(trainer, "training")
    history = state["history"]
    epoch_speed = [h["samples_per_s"] for h in history]
    metrics.update(resumes=state["resumes"], train_samples_per_s=sum(epoch_speed) / len(epoch_speed),
                   train_wall_seconds=wall, precision=history[-1].get("precision", "fp32"),
                   num_workers=tc.num_workers, threads_per_worker=threads_per_worker(tc), dataset=exp.dataset,
                   engine=engine,
                   model=exp.model.name, **semantics_info, **({"cold_text_rows": cold_rows} if cold_texts else {}),
                   **({"instance_texts": instance_info} if instance_texts else {}))
    served, teacher = split_state(exp, best)
    if teacher is not None:
        metrics["distillation"] = {"teacher": "teacher.safetensors + teacher.json in this folder",
                                   "teacher_model": exp.distill.teacher.name if exp.distill.teacher else exp.model.name,
                                   "config": dump_config(exp.distill), "semantic_tables": semantics_dir}
    with tempfile.TemporaryDirectory() as tmp:
        extra = {"training_curve.png": Path(tmp) / "training_curve.png", "history.json": Path(tmp) / "history.json"}
        plot_history(history, extra["training_curve.png"], title=f"{exp.name} ({exp.model.name})")
        extra["history.json"].write_text(json.dumps(history, indent=1, default=float))
        if exp.model.history is not None and storage.exists(storage.join(data_dir, USER_HISTORY)):
            # where the served model's history store starts (serve/deployments.py: HistoryStoreDeployment)
            extra[USER_HISTORY] = Path(tmp) / USER_HISTORY
            extra[USER_HISTORY].write_text(storage.read_text(storage.join(data_dir, USER_HISTORY)))
        if entity_texts is not None:  # what the served scorer renders and encodes for an unseen candidate
            extra[ENTITY_TEXTS] = entity_texts.save(tmp)
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
