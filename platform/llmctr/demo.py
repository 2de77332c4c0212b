"""The main job end to end on the embedded default: prepare → encode → train teacher and student (ELEC) → LightGCN
retriever → early-exit LLM head → deploy the Serve graph → score over HTTP → report.

ML-1M when its files are found (``../shared/data/ml-1m`` and the other data roots), else a generated
synthetic dataset with planted signal; or any dataset YAML (``--dataset my.yaml``), with the synthetic stack's
settings: the whole graph when its ``entities`` name a ``user`` and an ``item`` (the retriever's graph and the LLM
head's context), else the plain student alone. The LLM head is fitted on a small sample (``head_rows``) so that the demo
stays minutes long on 2 CPU cores; ``llmctr llm-head train <config>`` fits it on the config's sample.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmctr import storage
from llmctr.data import FeatureMap, load_dataset_config, prepare
from llmctr.data.feature_map import LABEL
from llmctr.data.paths import find_dataset_dir
from llmctr.data.records import raw_records
from llmctr.serve.client import ScoreRun, score_over_http, wait_healthy
from llmctr.serve.scorer import Scorer
from llmctr.storage import artifacts_root
from llmctr.train import fit, load_experiment
from llmctr.train.metrics import auc

log = logging.getLogger(__name__)

# per dataset: the ELEC experiment, the retriever and the LLM head configs the demo runs, and the plain student
# (the same backbone on the static fields alone: no history, no LLM) whose test AUC the report prints beside it
STACKS = {"ml1m": ("ml1m_fm_elec_semantic", "ml1m_lightgcn", "ml1m_minilm", "ml1m_fm"),
          "synthetic": ("synthetic_deepfm_elec", "synthetic_lightgcn", "synthetic_tiny", "synthetic_deepfm")}
#: a dataset YAML of one's own runs the synthetic stack's settings on its own fields
TEMPLATE = "synthetic"


@dataclass
class Stack:
    """The configs the demo trains: ``exp`` (ELEC, or the plain student when the dataset has no user / item
    entities), ``plain`` (the plain student to compare with, or None), the retriever and the head (or None)."""

    exp: Any
    plain: Any = None
    retriever: Any = None
    head: Any = None


def demo_stack(dataset: str) -> Stack:
    """The stack for a known dataset, or one derived from a dataset YAML's own fields and entities. Refuses (a
    ValueError naming what is missing) before any work when the YAML cannot carry the demo."""
    from llmctr.models.llm_head_config import load_llm_head_config
    from llmctr.train.retriever import load_retriever_config

    names = STACKS.get(dataset)
    if names is not None:
        exp, retriever, head, plain = names
        return Stack(load_experiment(exp), load_experiment(plain), load_retriever_config(retriever),
                     load_llm_head_config(head))
    config = load_dataset_config(dataset)  # a ConfigError names the problem
    exp, retriever, head, plain = STACKS[TEMPLATE]
    named = {"dataset": str(dataset)}
    plain = dataclasses.replace(load_experiment(plain), name=f"{config.name}_deepfm", **named)
    entities = set(config.entities)
    if not entities:
        return Stack(plain)
    if not {"user", "item"} <= entities:
        raise ValueError(f"dataset {config.name!r}: the demo's retriever and LLM head need entities named 'user' and "
                         f"'item' (with their key fields); it has {sorted(entities)}. Rename them, or remove "
                         "'entities' to run the student alone")
    return Stack(dataclasses.replace(load_experiment(exp), name=f"{config.name}_deepfm_elec", **named), plain,
                 dataclasses.replace(load_retriever_config(retriever), name=f"{config.name}_lightgcn", **named),
                 dataclasses.replace(load_llm_head_config(head), name=f"{config.name}_minilm", **named))


@dataclass
class DemoReport:
    dataset: str
    lines: list[tuple[str, str]]

    def render(self) -> str:
        width = max(len(k) for k, _ in self.lines)
        return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in self.lines)


@dataclass
class DemoOptions:
    n_records: int = 500
    per_request: int = 5
    port: int = 8000
    epochs: int | None = None
    head_rows: int = 1500  # LLM head fit rows (a sample: MiniLM forward+backward is ~25 rows/s on 2 CPU cores)
    band: tuple[float, float] = (0.4, 0.6)  # the student's "unsure" band: those records go to the LLM path
    deadline_ms: float = 2000.0


def shown(location) -> str:
    """A path as the report prints it: relative to the working directory when inside it (the README's form)."""
    path = Path(str(location))
    if storage.is_uri(location) or not path.is_absolute() or not path.is_relative_to(Path.cwd()):
        return str(location)
    return str(path.relative_to(Path.cwd()))


def student_reads(exp) -> str:
    """What the served student reads besides the static fields, in words."""
    history = exp.model.history
    if history is None:
        return "static fields"
    return "static fields + history by id" + (" and through the items' LLM vectors" if history.semantic else "")


def pick_dataset(data_dir: str | None = None) -> str:
    return "ml1m" if find_dataset_dir(load_dataset_config("ml1m"), data_dir) else "synthetic"


def sample_records(split_dir: Path, fmap: FeatureMap, n: int, seed: int = 0) -> tuple[list[dict], np.ndarray]:
    frame = pd.read_parquet(split_dir)
    frame = frame.sample(n=min(n, len(frame)), random_state=seed)
    return raw_records(frame, fmap), frame[LABEL].to_numpy()


def train_stack(stack: Stack, data_out: Path, artifacts: str | None, opts: DemoOptions):
    """Teacher + student (ELEC), the retriever and the LLM head correcting that student, and the plain student (each
    when the stack has it)."""
    from llmctr.train.llm_path import fit_llm_path

    for exp in (stack.exp, stack.plain):
        if exp is not None and opts.epochs:
            exp.train.epochs = opts.epochs
    student = fit(stack.exp, data_out, artifacts=artifacts)
    plain = fit(stack.plain, data_out, artifacts=artifacts) if stack.plain is not None else None
    if stack.retriever is None and stack.head is None:
        return student, plain, None, None
    parts = fit_llm_path(student.artifact, data_out, stack.retriever, stack.head, artifacts=artifacts,
                         head_rows=opts.head_rows, retriever_epochs=max(opts.epochs, 2) if opts.epochs else None)
    return student, plain, parts.retriever, parts.head


def serve_and_score(student, retriever, head, records: list[dict], opts: DemoOptions) -> tuple[ScoreRun, str]:
    """The HTTP run and the ingress that served it (``haproxy`` or ``python-proxy``, from ``/healthz``)."""
    from ray import serve

    from llmctr.serve.deploy import deploy

    url = deploy(student.artifact, port=opts.port, retriever_dir=retriever.artifact if retriever else None,
                 head_dir=head.artifact if head else None,
                 router_config={"routing": {"band": list(opts.band), "deadline_ms": opts.deadline_ms}})
    try:
        health = wait_healthy(url, timeout=180)
        run = score_over_http(url, records, opts.per_request, timeout=60)
        return run, health.get("ingress", "?")
    finally:
        serve.shutdown()


def route_lines(run: ScoreRun, labels: np.ndarray, student_probs: np.ndarray, ingress: str = "?"
                ) -> list[tuple[str, str]]:
    """Route mix, exit depths, per-route latency and the routed answers' AUC against the student's alone."""
    counts = Counter(run.routes)
    n = len(run.routes)
    depths = Counter(d for d in run.exit_depths if d is not None)
    routed = np.asarray([r != "student" for r in run.routes])
    lines = [("route mix", ", ".join(f"{k} {counts[k]} ({counts[k] / n:.0%})" for k in ("student", "llm", "fallback")
                                     if counts[k]) or "none"),
             ("LLM exit depths", ", ".join(f"{k} layers: {v}" for k, v in sorted(depths.items())) or "no LLM route"),
             ("HTTP latency", f"p50 {run.percentile(50):.1f} ms, p95 {run.percentile(95):.1f} ms per request of "
                              f"{len(run.routes) // max(len(run.latencies_ms), 1)} records ({ingress} ingress)"),
             ("  student-only", f"p50 {run.percentile(50, 'student'):.1f} ms "
                                f"({run.request_routes.count('student')} requests)"),
             ("  with LLM path", f"p50 {run.percentile(50, 'llm'):.1f} ms "
                                 f"({run.request_routes.count('llm')} requests)"),
             ("served AUC", f"{auc(labels, run.probabilities):.4f} routed vs {auc(labels, student_probs):.4f} "
                            f"student alone (same {n} records)")]
    if routed.any() and len(set(labels[routed])) == 2:
        lines.append(("  on routed records", f"{auc(labels[routed], run.probabilities[routed]):.4f} graph vs "
                                             f"{auc(labels[routed], student_probs[routed]):.4f} student "
                                             f"({int(routed.sum())} records)"))
    return lines


def run_demo(dataset: str | None = None, data_dir: str | None = None, artifacts: str | None = None,
             opts: DemoOptions | None = None) -> DemoReport:
    opts = opts or DemoOptions()
    dataset = dataset or pick_dataset(data_dir)
    log.info("demo dataset: %s", dataset)
    stack = demo_stack(dataset)  # refuses a dataset YAML the demo cannot run, before any work
    data_out, manifest = prepare(dataset, data_dir=data_dir, artifacts=artifacts)
    student, plain, retriever, head = train_stack(stack, data_out, artifacts, opts)
    fmap = FeatureMap.load(data_out / "feature_map.json")
    records, labels = sample_records(data_out / "test", fmap, opts.n_records)
    run, ingress = serve_and_score(student, retriever, head, records, opts)
    student_probs = Scorer.load(student.artifact).score(records)
    lines = [
        ("dataset", f"{manifest.dataset}: {manifest.rows} rows, {manifest.rows_quarantined} quarantined, "
                    f"{manifest.rows_dropped_by_label_rule} dropped by label rule"),
        *model_lines(stack, student, plain),
        *llm_path_lines(retriever, head),
        ("served", f"{len(records)} test records over HTTP in {len(run.latencies_ms)} requests"),
        *route_lines(run, labels, student_probs, ingress),
        ("prepared data", shown(data_out)),
        ("student artifact", shown(student.artifact)),
        ("training curve", shown(student.artifact / "training_curve.png")),
        ("run table", shown(storage.join(artifacts_root(artifacts), "runs.jsonl"))),
    ]
    if retriever is not None:
        lines.insert(-2, ("retriever / head", f"{shown(retriever.artifact)}  {shown(head.artifact)}"))
    return DemoReport(manifest.dataset, lines)


def model_lines(stack: Stack, student, plain) -> list[tuple[str, str]]:
    m, exp = student.metrics, stack.exp
    if plain is None:  # the student alone (a dataset without user / item entities)
        return [("student", f"{exp.model.name} ({exp.name}): test AUC {m['test_auc']:.4f} "
                            f"(logloss {m['test_logloss']:.4f}); no LLM path (the dataset names no user / item "
                            "entities)"),
                ("train throughput", f"{m['train_samples_per_s']:,.0f} samples/s on Ray Train")]
    return [
        ("LLM vectors", f"{shown((m.get('distillation') or {}).get('semantic_tables', '-'))} "
                        f"({m.get('semantics_seconds', 0):.1f} s; texts already in the cache are not re-encoded)"),
        ("teacher / student", f"{exp.model.name} ({exp.name}): test AUC teacher {m['test_teacher_auc']:.4f}, "
                              f"distilled student {m['test_auc']:.4f} (logloss {m['test_logloss']:.4f})"),
        ("vs plain student", f"served student test AUC {m['test_auc']:.4f} ({student_reads(exp)}) vs "
                             f"{plain.metrics['test_auc']:.4f} plain {plain.metrics['model']} (static fields only), "
                             "whole test split"),
        ("train throughput", f"{m['train_samples_per_s']:,.0f} samples/s, teacher + student jointly on Ray Train")]


def llm_path_lines(retriever, head) -> list[tuple[str, str]]:
    if retriever is None:
        return []
    hm = head.metrics
    return [
        ("retriever", "LightGCN, test recall@20 {:.4f} (popularity {:.4f})".format(
            retriever.metrics.get("test_recall@20", float("nan")),
            retriever.metrics.get("test_popularity_recall@20", float("nan")))),
        ("LLM head", f"{hm['full_layers']} layers; fitted on {hm['train_rows']} {hm['fit_split']} rows (a demo "
                     f"sample), thresholds {hm['thresholds']}: valid depth cut {hm['valid_depth_cut']:.0%}, AUC "
                     f"loss {hm['valid_auc_loss']:.4f}")]
