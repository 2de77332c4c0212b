"""LLaCTR (arXiv 2505.14057) on ML-1M under the benchmark protocol (benchmarks/lib/protocol.py).

Per backbone, configs/experiments/ml1m_<model>.yaml ("base") against ml1m_<model>_llactr.yaml (the same model plus
SSFT, FRE and FIE over MiniLM field vectors): the same declared seeds, the protocol's epoch budget with early stopping
on validation AUC, each run trained in this process by the library's objective and epoch functions
(benchmarks/lib/inprocess.py). Reported: the paired test-AUC difference LLaCTR - base with its standard error, its
verdict against 0 ("met": better beyond two SE; "missed": worse beyond them; else "inconclusive"), the same on the
slices (users unseen in training, users / items with < 10 training rows, items unseen in training).

- ``--grid kl0.1_fm0.1 kl0.5_fm0.1 ...``: LLaCTR's two loss weights per backbone, chosen on the first seed's
  validation AUC (the paper grid-searches them per model and dataset); the base has no such choice.
- ``--ablation-model``: that backbone's LLaCTR without SSFT, without FRE and without FIE, each paired against the
  full LLaCTR arm.
- ``--llactr-options``: options added to every LLaCTR arm (benchmarks/lib/ml1m_runs.py: LLACTR_OPTIONS), e.g.
  ``fre-entity`` or ``ssft40`` (40 SSFT features per field: a smoke run).

SSFT's adapter and the semantic tables are built as ``llmctr train`` builds them (llmctr.train.ctr.semantic_tables,
cached under ARTIFACTS); their seconds come from their own records. Runs are cached in
ARTIFACTS/bench/history_ml1m_runs.jsonl (``--cache``), shared with history_ml1m and llm_signal_ml1m, so an interrupted
run resumes and the base runs are the same runs. Writes benchmarks/results/llactr_ml1m.json (``--out``).

    python -m benchmarks.llactr_ml1m                 # 6 backbones x seeds 2026 1 2 3 4, ablations on fm
    python -m benchmarks.llactr_ml1m --models fm --seeds 1 --max-epochs 1 --llactr-options ssft40 --no-ablations \\
        --allow-dirty --cache /tmp/llactr_runs.jsonl --out /tmp/llactr.json      # a smoke run
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from benchmarks.lib import protocol as proto
from benchmarks.lib.common import RESULTS
from benchmarks.lib.inprocess import load_prepared
from benchmarks.lib.ml1m_runs import LLACTR_OPTIONS, Runs, Tables, compare, select, slices, start
from llmctr.runtime import init_ray

log = logging.getLogger("bench")

MODELS = ["fm", "deepfm", "fwfm", "fmfm", "finalmlp", "wukong"]
ABLATIONS = {"without SSFT": "noft", "without FRE": "nofre", "without FIE": "nofie"}


def llactr_arm(*options: str) -> str:
    return "/".join(["llactr", *options])


def ensure(runs: Runs, model: str, arms: list[str], seeds: list[int], train: bool) -> list[dict]:
    """Every (arm, seed) run of ``model``, trained where missing (unless not ``train``); what is still missing."""
    return [{"model": model, "arm": arm, "seed": s} for arm in arms for s in seeds
            if runs.get(model, arm, s, train=train) is None]


def backbone_row(runs: Runs, model: str, arm: str, seeds: list[int], slice_rows: dict[str, int]) -> dict | None:
    c = compare(runs.done, seeds, model, arm, "base", slice_rows)
    if c is None:
        return None
    by = {a: [r for r in runs.done if r["model"] == model and r["arm"] == a and r["seed"] in c["seeds"]]
          for a in ("base", arm)}
    row = {"model": model, "llactr_arm": arm, **c, "verdict": proto.verdict(c["diff"], c["diff_se"])}
    for side, a in (("base", "base"), ("llactr", arm)):
        row[f"{side}_valid_auc"] = sum(r["valid_auc"] for r in by[a]) / len(by[a])
        row[f"{side}_epochs_run"] = [r["epochs_run"] for r in by[a]]
        row[f"{side}_best_epoch"] = [r["best_epoch"] for r in by[a]]
        row[f"{side}_seconds"] = sum(r["seconds"] for r in by[a]) / len(by[a])
    for s in row["slices"].values():
        s["verdict"] = proto.verdict(s["diff"], s["diff_se"])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    parser.add_argument("--grid", nargs="*", default=[], metavar="klA_fmB",
                        help="loss weights chosen per backbone on the first seed's validation AUC")
    parser.add_argument("--ablation-model", default="fm", choices=MODELS)
    parser.add_argument("--no-ablations", action="store_true")
    parser.add_argument("--llactr-options", nargs="*", default=[], metavar="OPTION",
                        help=f"added to every LLaCTR arm: {', '.join(LLACTR_OPTIONS)}, ssftN")
    parser.add_argument("--no-train", action="store_true", help="write the result from cached runs only")
    parser.add_argument("--data", type=Path, help="prepared ML-1M (default ARTIFACTS/data/ml1m)")
    parser.add_argument("--cache", type=Path, help="runs cache (default ARTIFACTS/bench/history_ml1m_runs.jsonl)")
    parser.add_argument("--out", type=Path, default=RESULTS / "llactr_ml1m.json", help="the result file")
    args, protocol, prov, root, data_dir = start(parser)
    init_ray()  # SSFT is a Ray Train job, the tables a Ray Data job (as in `llmctr train`)
    data = load_prepared(data_dir)
    tables = Tables(data_dir, root)
    runs = Runs(args.cache or root / "bench" / "history_ml1m_runs.jsonl", data, protocol, semantics=tables)
    seeds, train = list(protocol.seeds), not args.no_train
    slice_rows = {k: int(m.sum()) for k, m in slices(data).items()}

    rows, selections, missing = [], {}, []
    for model in args.models:
        arm = llactr_arm(*args.llactr_options)
        if args.grid:
            candidates = [llactr_arm(*args.llactr_options, weights) for weights in args.grid]
            selections[model] = select(runs, model, candidates)
            arm = selections[model]["chosen"]
        missing += ensure(runs, model, ["base", arm], seeds, train)
        row = backbone_row(runs, model, arm, seeds, slice_rows)
        if row is not None:
            rows.append(row)
            log.info("%s: base %.4f, LLaCTR %.4f: %+.4f ± %.4f (%s)", model, row["baseline_auc"],
                     row["treatment_auc"], row["diff"], row["diff_se"], row["verdict"])

    ablations = []
    full = next((r["llactr_arm"] for r in rows if r["model"] == args.ablation_model), None)
    if full is not None and not args.no_ablations:
        for variant, option in ABLATIONS.items():
            arm = f"{full}/{option}"
            missing += ensure(runs, args.ablation_model, [arm], seeds, train)
            c = compare(runs.done, seeds, args.ablation_model, arm, full, slice_rows)
            if c is not None:
                ablations.append({"variant": variant, "arm": arm, "auc": c["treatment_auc"],
                                  "llactr_auc": c["baseline_auc"], "diff_vs_llactr": c["diff"],
                                  "diff_se": c["diff_se"], "seeds": c["seeds"]})

    verdicts = {v: [r["model"] for r in rows if r["verdict"] == v] for v in ("met", "missed", "inconclusive")}
    payload = {
        "benchmark": "llactr_ml1m", "dataset": "ml1m", "rows": rows,
        "summary": {"bar": "LLaCTR - base > 0 beyond two standard errors (paired over seeds)", "verdicts": verdicts,
                    "improved": f"{len(verdicts['met'])}/{len(rows)}"},
        "grid": args.grid, "selection": selections, "llactr_options": args.llactr_options,
        "ablation_model": args.ablation_model if ablations else None, "ablations": ablations,
        "semantics": tables.describe(), "slice_rows": slice_rows, "missing_runs": missing,
        "training": "in process with the library's objective, epoch and predict functions (one run per model, arm "
                    "and seed, cached in the runs file shared with history_ml1m and llm_signal_ml1m); SSFT and the "
                    "tables as `llmctr train` builds them",
    }
    path = proto.write(args.out.stem, payload, prov, protocol, folder=args.out.parent)
    log.info("wrote %s%s", path, "; regenerate the docs: python -m benchmarks.docs" if path.parent == RESULTS else "")


if __name__ == "__main__":
    main()
