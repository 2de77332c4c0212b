"""The early-exit LLM head on ML-1M, with its baselines measured in the same run:

- the head alone on the test rows: AUC and mean depth at several shared exit thresholds and at the shipped
  (validation-calibrated) per-head thresholds, against the same head at full depth -> top-level ``depth_cut``
  (fraction of layers saved) and ``auc_loss`` (full-depth AUC minus early-exit AUC);
- the routed system (``llmctr.serve.routing``: the student everywhere, the LLM head on the records the student
  is unsure of or that carry unseen ids) against the student alone and the LLM head alone, with the fraction
  routed and the depth on the routed records (the traffic the head really sees);
- wall time of real early exit vs full depth on the same records (layers skipped are compute saved).

The heads are fitted on a sample of the config's ``train.fit_split`` (ml1m_minilm: validation rows outside the
calibration sample; MiniLM forward+backward ~25 rows/s on 2 idle CPU cores). The context is the retriever's
(``--retriever``) or, without one, the user's most recent train interactions; the JSON says which.

Usage: python -m benchmarks.early_exit_ml1m [--quick] [--retriever artifacts/retrievers/ml1m_lightgcn]
Writes benchmarks/results/early_exit_ml1m.json (``--quick``: early_exit_ml1m_quick.json) and a PNG beside it.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.lib.common import RESULTS, write_result
from llmctr.data import FeatureMap, prepared_dir, resolve_prepared
from llmctr.data.feature_map import LABEL
from llmctr.data.records import raw_records
from llmctr.models.llm_head import EarlyExitHead
from llmctr.models.llm_head_config import RetrieverSource, load_llm_head_config
from llmctr.runtime import init_ray, setup_logging
from llmctr.serve.routing import RoutingConfig, cold_start_mask, llm_route_mask, routed_probabilities
from llmctr.serve.scorer import Scorer
from llmctr.train.llm_head import fit_early_exit
from llmctr.train.llm_head.calibration import evaluate_policy, simulate_exit
from llmctr.train.metrics import auc

log = logging.getLogger("bench")

SHARED_THRESHOLDS = [0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0]


def logit(probs: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


def head_alone(head_probs: np.ndarray, labels: np.ndarray, exit_layers: list[int], shipped: list[float]) -> dict:
    """AUC / mean layers at shared thresholds, at the shipped ones and at full depth (exits simulated with the
    model's rule; the real early exit is checked against it on a subset)."""
    full_layers = exit_layers[-1]
    full = evaluate_policy(head_probs, labels, exit_layers, [1.0] * len(exit_layers))
    at_shipped = evaluate_policy(head_probs, labels, exit_layers, shipped)
    sweep = [evaluate_policy(head_probs, labels, exit_layers, [t] * (len(exit_layers) - 1) + [1.0])
             for t in SHARED_THRESHOLDS]
    return {"full_depth_auc": full.auc, "shipped_auc": at_shipped.auc, "shipped_mean_layers": at_shipped.mean_layers,
            "depth_cut": at_shipped.depth_cut(full_layers), "auc_loss": full.auc - at_shipped.auc,
            "shared_threshold_sweep": [{"threshold": t, "auc": p.auc, "mean_layers": p.mean_layers,
                                        "depth_cut": p.depth_cut(full_layers)}
                                       for t, p in zip(SHARED_THRESHOLDS, sweep)]}


def timed_scores(head: EarlyExitHead, records, base, contexts, n: int) -> dict:
    """Real early exit vs full depth on the same ``n`` records: seconds, and agreement with the simulation."""
    records, base, contexts = records[:n], base[:n], contexts[:n]
    t0 = time.perf_counter()
    full_probs, _, _ = head.score(records, base, contexts, thresholds=[1.0] * len(head.exit_layers))
    full_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    probs, heads, layers = head.score(records, base, contexts)
    early_s = time.perf_counter() - t0
    return {"records": n, "full_depth_seconds": full_s, "early_exit_seconds": early_s,
            "speedup": full_s / early_s, "mean_layers": float(layers.mean()), "probs": probs, "heads": heads,
            "full_probs": full_probs}


def plot(sweep: list[dict], shipped: dict, aucs: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax3) = plt.subplots(1, 2, figsize=(10, 3.8))
    ts = [p["threshold"] for p in sweep]
    ax1.plot(ts, [p["auc"] for p in sweep], "o-", color="tab:green", label="test AUC (LLM head alone)")
    ax1.axhline(shipped["full_depth_auc"], color="0.5", ls=":", lw=1, label="full depth")
    ax1.set_xlabel("exit threshold on |2p-1|, shared by the heads")
    ax1.set_ylabel("test AUC")
    ax2 = ax1.twinx()
    ax2.plot(ts, [p["mean_layers"] for p in sweep], "s-", color="tab:blue", label="mean layers")
    ax2.set_ylabel("mean layers run")
    ax1.legend(loc="upper left", fontsize=8)
    ax2.legend(loc="lower right", fontsize=8)
    names = list(aucs)
    ax3.bar(range(len(names)), [aucs[n] for n in names], color=["0.6", "tab:green", "tab:olive", "tab:orange"])
    ax3.set_xticks(range(len(names)), names, fontsize=8, rotation=12)
    lo = min(aucs.values())
    ax3.set_ylim(lo - 0.02, max(aucs.values()) + 0.01)
    for i, n in enumerate(names):
        ax3.text(i, aucs[n], f"{aucs[n]:.4f}", ha="center", va="bottom", fontsize=8)
    ax3.set_ylabel("test AUC")
    fig.suptitle(f"early-exit LLM head on ML-1M: shipped thresholds cut depth by {100 * shipped['depth_cut']:.0f}%, "
                 f"AUC loss {shipped['auc_loss']:.4f}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="ml1m_minilm")
    parser.add_argument("--student", default="artifacts/models/ml1m_dcnv2_elec", help="student model folder")
    parser.add_argument("--retriever", help="retriever artifact (default: the user's recent train interactions)")
    parser.add_argument("--retriever-loader", default="llmctr.models.retriever:Retriever.load",
                        help="MODULE:CALLABLE that loads --retriever")
    parser.add_argument("--quick", action="store_true", help="3k train rows, 1 epoch, 1.5k valid and test rows")
    parser.add_argument("--sample", type=int, help="train rows (default: the config's)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--fit-split", choices=["train", "valid"], help="split the heads are fitted on")
    parser.add_argument("--out", help="results name (default early_exit_ml1m, with --quick early_exit_ml1m_quick)")
    parser.add_argument("--test-sample", type=int, help="test rows scored (default: all)")
    parser.add_argument("--band", type=float, nargs=2, default=(0.4, 0.6), help="student 'unsure' band")
    parser.add_argument("--timing-records", type=int, default=500)
    parser.add_argument("--artifacts", default="artifacts")
    args = parser.parse_args()
    setup_logging()
    init_ray()

    config = load_llm_head_config(args.config)
    config.student = str(Path(args.student).resolve())
    if args.quick:
        config.train = replace(config.train, sample=3000, valid_sample=1500, epochs=1)
    if args.sample is not None:
        config.train.sample = args.sample or None
    if args.epochs is not None:
        config.train.epochs = args.epochs
    if args.fit_split:
        config.train.fit_split = args.fit_split
    if args.retriever:
        config.retriever = RetrieverSource(path=args.retriever, loader=args.retriever_loader)
    test_sample = args.test_sample or (1500 if args.quick else None)
    data_dir = Path(resolve_prepared(prepared_dir(config.dataset, args.artifacts)))
    fmap = FeatureMap.load(data_dir / "feature_map.json")

    result = fit_early_exit(config, data_dir, artifacts=args.artifacts)
    head = EarlyExitHead.load(result.artifact)
    scorer = Scorer.load(config.student)

    test = pd.read_parquet(data_dir / "test")
    if test_sample and test_sample < len(test):
        test = test.sample(n=test_sample, random_state=config.train.seed).sort_index().reset_index(drop=True)
    labels = test[LABEL].to_numpy()
    records = raw_records(test, fmap)
    student_probs = scorer.score(records)
    base = logit(student_probs)
    t0 = time.perf_counter()
    contexts = head.contexts(records, result.retriever)
    context_s = time.perf_counter() - t0
    head_probs = head.head_probabilities(records, base, contexts)
    alone = head_alone(head_probs, labels, head.exit_layers, head.thresholds)
    timing = timed_scores(head, records, base, contexts, min(args.timing_records, len(records)))
    sim_probs, sim_heads = simulate_exit(head_probs[:timing["records"]], head.thresholds)
    llm_probs, llm_heads = simulate_exit(head_probs, head.thresholds)
    layers = np.asarray(head.exit_layers)[llm_heads]

    ctx = head.meta["context"]
    routing = RoutingConfig(band=tuple(args.band), cold_fields=[ctx["user_field"], ctx["item_field"]])
    cold = cold_start_mask({n: test[n].to_numpy() for n in routing.cold_fields}, routing.cold_fields)
    mask = llm_route_mask(student_probs, cold, routing)
    routed = routed_probabilities(student_probs, llm_probs, mask)
    routed_full = routed_probabilities(student_probs, head_probs[:, -1], mask)
    aucs = {"student alone": auc(labels, student_probs), "LLM head alone": auc(labels, llm_probs),
            "routed (full depth)": auc(labels, routed_full), "routed system": auc(labels, routed)}
    full_layers = head.exit_layers[-1]
    routed_section = {
        "band": list(args.band), "cold_fields": routing.cold_fields, "fraction_routed": float(mask.mean()),
        "fraction_cold": float(cold.mean()), "routed_rows": int(mask.sum()),
        "routed_system_auc": aucs["routed system"], "routed_system_full_depth_auc": aucs["routed (full depth)"],
        "student_auc": aucs["student alone"], "llm_head_alone_auc": aucs["LLM head alone"],
        "llm_head_alone_full_depth_auc": alone["full_depth_auc"],
        "on_routed_rows": {"student_auc": auc(labels[mask], student_probs[mask]),
                           "llm_head_auc": auc(labels[mask], llm_probs[mask]),
                           "llm_head_full_depth_auc": auc(labels[mask], head_probs[mask, -1]),
                           "mean_layers": float(layers[mask].mean()) if mask.any() else None,
                           "depth_cut": float(1 - layers[mask].mean() / full_layers) if mask.any() else None},
        "routed_minus_student_auc": aucs["routed system"] - aucs["student alone"]}
    m = result.metrics
    payload = {
        "dataset": config.dataset, "quick": args.quick, "config": config.name, "artifact": str(result.artifact),
        "depth_cut": alone["depth_cut"], "auc_loss": alone["auc_loss"],
        "shipped_thresholds": head.thresholds, "exit_layers": head.exit_layers,
        "test_rows": len(test), "test_is_sample": bool(test_sample), "test": alone, "routed": routed_section,
        "early_exit_timing": {k: v for k, v in timing.items() if k not in ("probs", "heads", "full_probs")}
        | {"real_vs_simulated_exit_agreement": float((timing["heads"] == sim_heads).mean()),
           "max_abs_real_vs_simulated_prob": float(np.abs(timing["probs"] - sim_probs)[
               timing["heads"] == sim_heads].max())},
        "context_source": m["context_source"], "context_seconds_per_1k": 1000 * context_s / len(test),
        "student": config.student,
        "train": {"fit_split": m["fit_split"], "rows": m["train_rows"], "split_rows": m["train_split_rows"],
                  "is_sample": m["train_is_sample"],
                  "epochs": m["epochs_run"], "samples_per_s": m["train_samples_per_s"],
                  "wall_seconds": m["train_wall_seconds"]},
        "valid_calibration": {k: m[k] for k in ("valid_rows", "valid_auc_full_depth", "valid_auc_early_exit",
                                                "valid_auc_loss", "valid_mean_layers", "valid_depth_cut",
                                                "target_auc_loss")}
        | {"valid_student_auc": m.get("valid_student_auc"),
           "valid_auc_by_head": [m[f"valid_auc_head{k}"] for k in range(len(head.exit_layers))]},
        "notes": "depth_cut / auc_loss: the LLM head alone on every test row, shipped thresholds vs full depth. "
                 "Exits over the test rows are simulated from every head's probability with the model's exit rule; "
                 "early_exit_timing runs the real early exit on a subset and reports its agreement with the "
                 "simulation. The heads were fitted on a sample of train.fit_split when train.is_sample is true.",
    }
    name = args.out or ("early_exit_ml1m_quick" if args.quick else "early_exit_ml1m")
    plot(alone["shared_threshold_sweep"], alone, aucs, RESULTS / f"{name}.png")
    path = write_result(name, payload)
    print(path.read_text())


if __name__ == "__main__":
    main()
