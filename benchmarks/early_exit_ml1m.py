"""The LLM path of the ML-1M scoring graph, measured where it works: on the rows the router sends it.

One run, under the protocol's rules for choices (every threshold is chosen on validation rows, test rows only
report):
- the early-exit LLM head (``--config``, default ``ml1m_minilm_history``: MiniLM + LoRA, exits after layers 2/4/6,
  each correcting the served student's logit, the context the request's own history ranked by the items' MiniLM
  vectors) is fitted on the validation split outside a calibration sample, and its best epoch and exit thresholds
  are chosen on the calibration rows the router sends to the LLM path (``train.calibrate_on: routed``);
- on the routed test rows: the student alone, every fixed depth (all rows answered by head k), the adaptive exit
  chosen on validation, a sweep of one shared threshold, and what ships (adaptive only where it beat the fixed
  depths on validation) -> AUC against mean depth, JSON + PNG;
- ``routed_gain``: the routed graph minus its student on the routed test rows, with a paired bootstrap standard
  error over those rows (one fitted head: the seed-to-seed spread of the head is not in it);
- wall time of real early exit against full depth on the same routed records.

Usage: python -m benchmarks.early_exit_ml1m [--quick] [--student models/ml1m_fm_elec_semantic]
Writes benchmarks/results/early_exit_ml1m.json (``--quick``: early_exit_ml1m_quick.json) and a PNG beside it.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.lib.common import RESULTS
from benchmarks.lib.protocol import provenance, write
from llmctr.data import FeatureMap, prepared_dir, resolve_prepared
from llmctr.data.feature_map import LABEL
from llmctr.data.records import raw_records
from llmctr.models.ctr_model import sigmoid
from llmctr.models.llm_head import EarlyExitHead
from llmctr.models.llm_head_config import load_llm_head_config
from llmctr.runtime import init_ray, setup_logging
from llmctr.train.llm_head import fit_early_exit
from llmctr.train.llm_head.calibration import evaluate_policy, fixed_auc_at, fixed_depth_points, simulate_exit
from llmctr.train.llm_head.rows import resolve_student, routed_rows, student_logits
from llmctr.train.metrics import auc

log = logging.getLogger("bench")

SWEEP = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0]


def paired_bootstrap(labels: np.ndarray, treated: np.ndarray, base: np.ndarray, rounds: int, seed: int) -> float:
    """Standard error of AUC(treated) - AUC(base) over resamples of the rows (both scored on the same rows)."""
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(rounds):
        idx = rng.integers(0, len(labels), len(labels))
        diffs.append(auc(labels[idx], treated[idx]) - auc(labels[idx], base[idx]))
    return float(np.nanstd(diffs, ddof=1))


def depth_curve(head_probs: np.ndarray, labels: np.ndarray, exit_layers: list[int], shipped: list[float],
                adaptive: list[float]) -> dict:
    """AUC against mean depth on one set of rows: fixed depths, a shared-threshold sweep, adaptive, shipped."""
    fixed = fixed_depth_points(head_probs, labels, exit_layers)
    heads = len(exit_layers)
    sweep = [evaluate_policy(head_probs, labels, exit_layers, [t] * (heads - 1) + [1.0]) for t in SWEEP]
    at_adaptive = evaluate_policy(head_probs, labels, exit_layers, adaptive)
    return {"fixed_depths": [asdict(p) for p in fixed], "shared_threshold_sweep": [asdict(p) for p in sweep],
            "adaptive": asdict(at_adaptive), "shipped": asdict(evaluate_policy(head_probs, labels, exit_layers,
                                                                               shipped)),
            "fixed_auc_at_adaptive_depth": fixed_auc_at(fixed, at_adaptive.mean_layers),
            "adaptive_beats_fixed": at_adaptive.auc > fixed_auc_at(fixed, at_adaptive.mean_layers)}


def plot(test: dict, student_auc: float, valid: dict, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, curve, name, base in ((axes[0], valid, "validation (calibration) rows", None),
                                  (axes[1], test, "test rows", student_auc)):
        fixed = curve["fixed_depths"]
        ax.plot([p["mean_layers"] for p in fixed], [p["auc"] for p in fixed], "s-", color="tab:blue",
                label="fixed depth (every row at one head)")
        sweep = curve["shared_threshold_sweep"]
        ax.plot([p["mean_layers"] for p in sweep], [p["auc"] for p in sweep], ".:", color="tab:green",
                label="adaptive, one shared threshold 0..1")
        a, s = curve["adaptive"], curve["shipped"]
        ax.scatter([a["mean_layers"]], [a["auc"]], marker="D", color="tab:red", s=50, zorder=3,
                   label="adaptive thresholds chosen on validation")
        ax.scatter([s["mean_layers"]], [s["auc"]], marker="*", color="tab:orange", s=160, zorder=4, label="shipped")
        if base is not None:
            ax.axhline(base, color="0.4", ls="--", lw=1, label="student alone")
        ax.set_xlabel("mean transformer layers run")
        ax.set_ylabel("AUC on routed rows")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def timed(head: EarlyExitHead, records, base, contexts) -> dict:
    """Real early exit at the shipped thresholds vs full depth on the same records (seconds, rows/s)."""
    t0 = time.perf_counter()
    head.score(records, base, contexts, thresholds=[1.0] * len(head.exit_layers))
    full_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, _, layers = head.score(records, base, contexts)
    early_s = time.perf_counter() - t0
    return {"records": len(records), "full_depth_seconds": full_s, "shipped_seconds": early_s,
            "speedup": full_s / early_s, "shipped_mean_layers": float(layers.mean()),
            "full_depth_rows_per_s": len(records) / full_s}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="ml1m_minilm_history")
    parser.add_argument("--student", default="artifacts/models/ml1m_fm_elec_semantic",
                        help="the served student (model folder): the router's probabilities and the heads' base")
    parser.add_argument("--quick", action="store_true", help="2k fit rows, 3k calibration rows, 3k test rows")
    parser.add_argument("--fit-rows", type=int, help="fit on a sample of this many rows (default: the config's)")
    parser.add_argument("--calibration-rows", type=int, help="validation rows held out to calibrate on, before "
                        "routing (default: the config's valid_sample)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--calibration-groups", help="hold the calibration sample out by this field (e.g. user_id)")
    parser.add_argument("--test-sample", type=int, help="test rows considered before routing (default: all)")
    parser.add_argument("--bootstrap", type=int, default=300, help="resamples for the routed gain's SE")
    parser.add_argument("--timing-records", type=int, default=300)
    parser.add_argument("--artifacts", default="artifacts")
    parser.add_argument("--allow-dirty", action="store_true")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    prov = provenance(args.allow_dirty)
    setup_logging()
    init_ray()
    config = load_llm_head_config(args.config)
    config.student = str(Path(args.student).resolve())
    if args.quick:
        config.train = replace(config.train, sample=2000, valid_sample=3000, epochs=1)
    if args.fit_rows is not None:
        config.train.sample = args.fit_rows or None
    if args.calibration_rows:
        config.train.valid_sample = args.calibration_rows
    if args.epochs:
        config.train.epochs = args.epochs
    if args.calibration_groups:
        config.train.calibration_groups = args.calibration_groups
    data_dir = Path(resolve_prepared(prepared_dir(config.dataset, args.artifacts)))
    fmap = FeatureMap.load(data_dir / "feature_map.json")

    result = fit_early_exit(config, data_dir, artifacts=args.artifacts)
    head = EarlyExitHead.load(result.artifact)
    m = result.metrics
    test = pd.read_parquet(data_dir / "test")
    test_sample = args.test_sample or (3000 if args.quick else None)
    if test_sample and test_sample < len(test):
        test = test.sample(n=test_sample, random_state=config.train.seed).sort_index().reset_index(drop=True)
    base_all = student_logits(resolve_student(config.student, args.artifacts), fmap, test)
    ctx = head.meta["context"]
    mask = routed_rows(base_all, test, [ctx["user_field"], ctx["item_field"]], config.train.routing_band)
    routed = test[mask].reset_index(drop=True)
    labels, base = routed[LABEL].to_numpy(), base_all[mask]
    records = raw_records(routed, fmap)
    t0 = time.perf_counter()
    contexts = head.contexts(records)
    context_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    head_probs = head.head_probabilities(records, base, contexts)
    full_depth_s = time.perf_counter() - t0

    student = sigmoid(base)
    student_auc = auc(labels, student)
    shipped, adaptive = head.thresholds, m["valid_adaptive"]["thresholds"]
    curve = depth_curve(head_probs, labels, head.exit_layers, shipped, adaptive)
    valid_labels = result.valid[LABEL].to_numpy()
    valid_curve = depth_curve(result.valid_head_probs, valid_labels, head.exit_layers, shipped, adaptive)
    graph_probs, _ = simulate_exit(head_probs, shipped)
    gain = curve["shipped"]["auc"] - student_auc
    gain_se = paired_bootstrap(labels, graph_probs, student, args.bootstrap, config.train.seed)
    full_gain = curve["fixed_depths"][-1]["auc"] - student_auc
    all_labels = test[LABEL].to_numpy()
    student_all = sigmoid(base_all.astype(np.float64))
    graph_all = student_all.copy()
    graph_all[mask] = graph_probs
    n_time = min(args.timing_records, len(records))
    timing = timed(head, records[:n_time], base[:n_time], contexts[:n_time])
    layers = head.exit_layers
    payload = {
        "routed_gain": {"diff": gain, "se": gain_se, "rows": int(mask.sum()),
                        "what": "AUC on the routed test rows: the graph (head at the shipped thresholds) minus its "
                                "student; SE: paired bootstrap over those rows"},
        "early_exit": {"mean_depth": curve["shipped"]["mean_layers"], "first_head_depth": layers[0],
                       "last_head_depth": layers[-1], "adaptive_beats_fixed": bool(m["adaptive_beats_fixed"]),
                       "adaptive_beats_fixed_on_test": bool(curve["adaptive_beats_fixed"]), "shipped": m["shipped"],
                       "shipped_thresholds": shipped, "adaptive_thresholds": adaptive},
        "config": config.name, "student": config.student, "artifact": str(result.artifact),
        "context_source": m["context_source"], "routing_band": list(config.train.routing_band),
        "test": {"rows": len(test), "is_sample": bool(test_sample), "routed_rows": int(mask.sum()),
                 "fraction_routed": float(mask.mean()), "student_auc_routed": student_auc,
                 "full_depth_gain_routed": full_gain, "curve": curve,
                 "student_auc_all": auc(all_labels, student_all), "graph_auc_all": auc(all_labels, graph_all),
                 "context_seconds_per_1k": 1000 * context_s / max(len(records), 1),
                 "full_depth_rows_per_s": len(records) / full_depth_s},
        "valid": {"calibration_sample_rows": m["calibration_sample_rows"], "routed_rows": m["valid_rows"],
                  "student_auc_routed": m.get("valid_student_auc"), "curve": valid_curve},
        "fit": {"split": m["fit_split"], "rows": m["train_rows"], "split_rows": m["train_split_rows"],
                "is_sample": m["train_is_sample"], "epochs": m["epochs_run"], "best_epoch": m["best_epoch"],
                "rows_per_s": m["train_samples_per_s"], "wall_seconds": m["train_wall_seconds"]},
        "timing": timing,
        "notes": "One head, one seed: routed_gain's SE covers the test rows' sampling, not the head's seed spread. "
                 "Exits on the test rows are simulated from every head's full-depth probability with the model's "
                 "own rule; 'timing' runs the real early exit.",
    }
    name = "early_exit_ml1m_quick" if args.quick else "early_exit_ml1m"
    plot(curve, student_auc, valid_curve,
         f"LLM head on the {int(mask.sum()):,} routed test rows: shipped {m['shipped']} "
         f"(graph - student {gain:+.4f} ± {gain_se:.4f})", RESULTS / f"{name}.png")
    path = write(name, payload, prov)
    log.info("wrote %s: routed gain %+.4f ± %.4f, shipped %s at mean depth %.2f", path, gain, gain_se, m["shipped"],
             curve["shipped"]["mean_layers"])


if __name__ == "__main__":
    main()
