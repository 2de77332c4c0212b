"""ELEC distillation on ML-1M under the benchmark protocol (benchmarks/lib/protocol.py): every variant in the same
run on the same declared seeds, the protocol's epoch budget with early stopping on validation AUC, each trained by
the platform's Ray Train job (``llmctr.train.fit``):

- ``student_alone``: the student's backbone trained on its own (the experiment without ``distill``/``semantics``);
- ``elec``: teacher (backbone + injected LLM vector) and student trained jointly → teacher AUC, distilled student AUC;
- ablations: ``no_clid`` (beta 0), ``no_mse`` (alpha 0);
- ``sparse``: the dynamic-sparse student trained with the same distillation (mean share of active hidden units);
- a sweep of inference-only sparsity (nucleus mass) over the dense distilled student;
- inference time per 1,000 samples: the distilled student, the student-alone model (same backbone: the served cost
  must match), the teacher with precomputed LLM vectors, and the LLM encoding those 1,000 samples' texts would cost.

Every variant's student (and the ELEC teacher) against the student alone: the paired per-seed test-AUC difference
with its standard error and its verdict against 0 ("met": better beyond two SE). The inference costs and the
inference-only sparsity sweep use the first seed's artifacts.

A run whose exact experiment (the config its artifact's metrics.json records: seed, epochs, settings) already has an
artifact under ARTIFACTS/models/ is read from there instead of trained again (``--retrain`` trains anyway), so an
interrupted run resumes; each run says whether it was reused, and its artifact version.

Writes benchmarks/results/distill_ml1m.json (``--out``). Usage:
    python -m benchmarks.distill_ml1m [--experiment ml1m_dcnv2_elec] [--seeds 2026 1 2 3 4] [--max-epochs 8]
                                      [--variants elec no_clid no_mse sparse] [--set distill.beta=0.5 ...]
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file

from benchmarks.lib import protocol as proto
from benchmarks.lib.common import RESULTS
from llmctr.config import dump_config
from llmctr.data import FeatureMap, prepare
from llmctr.data.feature_map import LABEL
from llmctr.models.artifact import load_artifact
from llmctr.models.distill import build_pseudo_siamese
from llmctr.models.layers import FieldInput
from llmctr.models.sparse import SparseConfig, SparsityMeter, sparsify
from llmctr.runtime import init_ray, setup_logging
from llmctr.semantics.tables import SemanticTables
from llmctr.storage import artifacts_root
from llmctr.train import feed, fit, load_experiment
from llmctr.train.metrics import auc
from llmctr.tune import with_settings

log = logging.getLogger("bench")
VARIANTS = {
    "elec": {},
    "no_clid": {"distill.beta": 0.0},
    "no_mse": {"distill.alpha": 0.0},
}


def variant_experiment(base, name: str, seed: int, protocol: proto.Protocol, sparse_mass: float):
    if name == "student_alone":
        exp = copy.deepcopy(base)
        exp.distill, exp.semantics = None, None
    elif name == "sparse":
        exp = with_settings(base, {"model.dynamic_sparse": {"mass": sparse_mass, "train": True}})
    else:
        exp = with_settings(base, VARIANTS[name])
    exp.name = f"bench_{base.name}-{name}"  # never the LATEST of the experiment's own folder
    exp.train.seed, exp.train.epochs, exp.train.early_stopping_patience = seed, protocol.max_epochs, protocol.patience
    return exp


def trained_before(exp) -> tuple[Path, dict] | None:
    """The newest artifact of exactly ``exp`` (same config, as its metrics.json records it) and its metrics."""
    want = json.loads(json.dumps(dump_config(exp)))
    for meta in sorted((Path(artifacts_root()) / "models" / exp.name).glob("v*/metrics.json"), reverse=True):
        metrics = json.loads(meta.read_text())
        if metrics.get("experiment") == want:
            return meta.parent, metrics
    return None


def fit_or_reuse(exp, data_dir: Path, retrain: bool) -> tuple[Path, dict, bool]:
    found = None if retrain else trained_before(exp)
    if found is not None:
        log.info("%s seed %d: reusing %s", exp.name, exp.train.seed, found[0])
        return found[0], found[1], True
    result = fit(exp, data_dir)
    return Path(result.artifact), result.metrics, False


def load_test(data_dir: Path, fmap: FeatureMap, n: int | None = None) -> tuple[dict, np.ndarray, pd.DataFrame]:
    frame = pd.read_parquet(data_dir / "test")
    if n:
        frame = frame.head(n)
    batch = feed.to_tensors({c: frame[c].to_numpy() for c in [*fmap.input_columns, LABEL]}, fmap.input_columns)
    return batch, frame[LABEL].to_numpy(), frame


def median_ms(fn, repeats: int = 20) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


@torch.inference_mode()
def inference_costs(elec_artifact: Path, alone_artifact: Path, exp, data_dir: Path) -> dict:
    """Per 1,000 test samples, one batch, this process's threads."""
    student, fmap, meta = load_artifact(elec_artifact)
    alone, _, _ = load_artifact(alone_artifact)
    tables = SemanticTables.load(meta["metrics"]["distillation"]["semantic_tables"])
    pair = build_pseudo_siamese(FieldInput.from_feature_map(fmap), exp.model, exp.distill, tables)
    pair.load_state_dict({**load_file(str(Path(elec_artifact) / "teacher.safetensors")),
                          **{f"student.{k}": v for k, v in student.state_dict().items()}})
    pair.eval()
    batch, _, frame = load_test(data_dir, fmap, 1000)
    out = {"threads": torch.get_num_threads(),
           "student_ms": median_ms(lambda: student(batch)),
           "student_alone_ms": median_ms(lambda: alone(batch)),
           "teacher_ms_precomputed_llm": median_ms(lambda: pair.teacher_forward(batch)),
           "student_params": sum(p.numel() for p in student.parameters()),
           "student_alone_params": sum(p.numel() for p in alone.parameters()),
           "teacher_params": sum(p.numel() for p in pair.parameters()) - sum(p.numel() for p in
                                                                             pair.student.parameters())}
    out["llm_encode_ms"] = _llm_encode_ms(frame, exp)
    out["teacher_vs_student"] = out["teacher_ms_precomputed_llm"] / out["student_ms"]
    out["student_vs_alone"] = out["student_ms"] / out["student_alone_ms"]
    return out


def _llm_encode_ms(frame: pd.DataFrame, exp) -> float:
    """What a teacher would pay to encode 1,000 unseen samples' texts with the experiment's encoder."""
    from llmctr.data import load_dataset_config
    from llmctr.semantics.encoders import build_encoder
    from llmctr.semantics.text import sample_text

    dataset = load_dataset_config(exp.dataset)
    records = [{k[len("raw__"):]: v for k, v in r.items() if k.startswith("raw__")} for r in
               frame.to_dict("records")]
    texts = [sample_text(r, dataset.fields) for r in records]
    encoder = build_encoder(exp.semantics.encoder)
    encoder.encode(texts[:64])  # warm-up
    t0 = time.perf_counter()
    encoder.encode(texts)
    return (time.perf_counter() - t0) * 1000


@torch.inference_mode()
def sparsity_sweep(artifact: Path, data_dir: Path, masses: list[float]) -> list[dict]:
    """Inference-only nucleus masks over the dense distilled student (same weights)."""
    rows = []
    for mass in masses:
        model, fmap, _ = load_artifact(artifact)
        if mass < 1.0:
            sparsify(model.backbone, SparseConfig(mass=mass))
        batch, labels, _ = load_test(data_dir, fmap)
        with SparsityMeter(model.backbone) as meter:
            probs = torch.sigmoid(model.eval()(batch).logit).numpy()
        rows.append({"mass": mass, "test_auc": auc(labels, probs),
                     "active_fraction": meter.active_fraction if mass < 1.0 else 1.0,
                     "mac_fraction": meter.mac_fraction})
    return rows


def paired(runs: dict[str, list[dict]], name: str, key: str = "test_auc") -> dict:
    """``name``'s ``key`` (per seed) against the student alone's test AUC on the same seeds."""
    d = proto.paired_difference([r[key] for r in runs[name]], [r["test_auc"] for r in runs["student_alone"]])
    return {"diff": d.diff, "diff_se": d.se, "per_seed": d.per_seed, "verdict": proto.verdict(d.diff, d.se)}


def summarise(runs: list[dict]) -> dict:
    keys = ["test_auc", "test_logloss", "test_teacher_auc", "test_active_fraction", "test_mac_fraction",
            "valid_auc", "valid_teacher_auc", "best_epoch", "train_wall_seconds"]
    out = {}
    for key in keys:
        values = [r[key] for r in runs if key in r]
        if values:
            out[key] = statistics.fmean(values)
            if len(values) > 1 and key.endswith("auc"):
                out[key + "_std"] = statistics.stdev(values)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", default="ml1m_dcnv2_elec")
    parser.add_argument("--variants", nargs="+", default=["elec", "no_clid", "no_mse", "sparse"])
    parser.add_argument("--sparse-mass", type=float, default=0.9)
    parser.add_argument("--sweep", type=float, nargs="+", default=[1.0, 0.95, 0.9, 0.8, 0.7, 0.6])
    parser.add_argument("--set", nargs="*", default=[], help="dotted settings of the ELEC experiment, k=v (YAML)")
    parser.add_argument("--retrain", action="store_true", help="train every run, even one with a matching artifact")
    parser.add_argument("--remark", help="a sentence stored with the result (e.g. where its reused runs came from)")
    parser.add_argument("--out", type=Path, default=RESULTS / "distill_ml1m.json", help="the result file")
    proto.add_protocol_args(parser)
    args, prov = proto.parse_with_provenance(parser)
    protocol = proto.protocol_from_args(args)
    setup_logging()
    import yaml

    base = load_experiment(args.experiment)
    base = with_settings(base, {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)})
    init_ray()
    data_dir, _ = prepare(base.dataset)
    runs: dict[str, list[dict]] = {}
    artifacts: dict[str, Path] = {}
    for seed in protocol.seeds:
        for name in ["student_alone", *args.variants]:
            exp = variant_experiment(base, name, seed, protocol, args.sparse_mass)
            artifact, metrics, reused = fit_or_reuse(exp, data_dir, args.retrain)
            row = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
            runs.setdefault(name, []).append({"seed": seed, **row, "artifact": artifact.name, "reused": reused})
            artifacts.setdefault(name, artifact)
            log.info("seed %d %s: test AUC %.4f (teacher %s)", seed, name, row["test_auc"],
                     row.get("test_teacher_auc"))
    rows = [{"variant": name, "seeds": [r["seed"] for r in rs], **summarise(rs), "runs": rs,
             **({"vs_student_alone": paired(runs, name)} if name != "student_alone" else {})}
            for name, rs in runs.items()]
    by = {r["variant"]: r for r in rows}
    payload = {
        "benchmark": "distill_ml1m", "experiment": base.name, "backbone": base.model.name, "settings": args.set,
        "teacher_auc": by["elec"]["test_teacher_auc"] if "elec" in by else None,
        "student_alone_auc": by["student_alone"]["test_auc"],
        "distilled_student_auc": by["elec"]["test_auc"] if "elec" in by else None,
        "distill_gain": by["elec"]["vs_student_alone"] if "elec" in by else None,
        "teacher_gain": paired(runs, "elec", "test_teacher_auc") if "elec" in by else None,
        "rows": rows, "reused_runs": sum(r["reused"] for rs in runs.values() for r in rs),
        **({"remark": args.remark} if args.remark else {}),
    }
    if "elec" in by:
        payload["inference_per_1000"] = inference_costs(artifacts["elec"], artifacts["student_alone"], base,
                                                        data_dir)
        payload["inference_only_sparsity"] = sparsity_sweep(artifacts["elec"], data_dir, args.sweep)
    path = proto.write(args.out.stem, payload, prov, protocol, folder=args.out.parent)
    log.info("wrote %s%s", path, "; regenerate the docs: python -m benchmarks.docs" if path.parent == RESULTS else "")
    for r in rows:
        vs = r.get("vs_student_alone")
        log.info("%14s: test AUC %.4f%s, teacher %.4f, active %.2f", r["variant"], r["test_auc"],
                 f" ({vs['diff']:+.4f} ± {vs['diff_se']:.4f} vs alone, {vs['verdict']})" if vs else "",
                 r.get("test_teacher_auc", float("nan")), r.get("test_active_fraction", 1.0))


if __name__ == "__main__":
    main()
