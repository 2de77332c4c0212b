"""LLaCTR (arXiv 2505.14057) on ML-1M: each backbone's base test AUC vs the same backbone with LLaCTR (SSFT +
FRE + FIE), same seed and training budget, plus ablations (w/o FT, w/o FRE, w/o FIE) for one backbone.

Base experiments are configs/experiments/ml1m_<model>.yaml, LLaCTR ones ml1m_<model>_llactr.yaml (identical
but for ``model.llactr`` and ``semantics``). SSFT's adapter and the semantic tables are cached, so the SSFT
and encoding seconds are measured by the first LLaCTR run and reported (from the cache's own records) after.

Writes benchmarks/results/llactr_ml1m.json (``--quick``: llactr_ml1m_quick.json, a tiny budget for a smoke run).
``--grid 0.1:0.1,0.5:0.1,...`` selects (lambda_kl, lambda_fm) per backbone by validation AUC (the paper grid-searches
them per model and dataset); without it the YAML's values are used.

Usage: python -m benchmarks.llactr_ml1m [--quick] [--models fm,deepfm] [--ablation-model deepfm] [--seeds 2026]
                                        [--grid 0.1:0.1,0.5:0.1,0.1:0.5 [--select-seeds 2026]] [--name NAME]
                                        [--fre-target field|feature|entity]
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics

from benchmarks.lib.common import write_result
from llmctr.data import prepare
from llmctr.runtime import init_ray, setup_logging
from llmctr.train import fit, load_experiment

log = logging.getLogger("bench")

MODELS = ["fm", "deepfm", "fwfm", "fmfm", "finalmlp", "wukong"]
QUICK = {"epochs": 1, "features_per_field": 40, "models": ["fm", "deepfm"]}


def _run(exp, data_dir, artifacts, seed: int) -> dict:
    exp = copy.deepcopy(exp)
    exp.train.seed = seed
    m = fit(exp, data_dir, artifacts=artifacts).metrics
    keys = ("test_auc", "test_logloss", "valid_auc", "best_epoch", "epochs_run", "train_wall_seconds",
            "train_samples_per_s", "ssft_seconds", "encode_seconds", "semantics_seconds", "ssft_loss_before",
            "ssft_loss_after")
    return {k: m[k] for k in keys if k in m}


def _budget(exp, quick: bool, epochs: int | None = None, fre_target: str | None = None):
    exp = copy.deepcopy(exp)
    if fre_target and exp.model.llactr is not None:
        exp.model.llactr.fre_target = fre_target
    if epochs:
        exp.train.epochs = epochs
    if quick:
        exp.train.epochs = QUICK["epochs"]
        if exp.semantics is not None and exp.semantics.ssft is not None:
            exp.semantics.ssft.features_per_field = QUICK["features_per_field"]
    return exp


def _mean(runs: list[dict], key: str):
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.fmean(values) if values else None


def _with_lambdas(exp, lambda_kl: float, lambda_fm: float):
    exp = copy.deepcopy(exp)
    exp.model.llactr.lambda_kl, exp.model.llactr.lambda_fm = lambda_kl, lambda_fm
    return exp


def _select(llactr_exp, grid, data_dir, artifacts, seeds, select_seeds=None) -> tuple[object, list[dict], list[dict]]:
    """(chosen experiment, its runs on ``seeds``, the grid's summary): the lambdas with the best mean validation
    AUC over ``select_seeds`` (default: all ``seeds``); the chosen pair then also runs the remaining seeds."""
    if not grid:
        return llactr_exp, [_run(llactr_exp, data_dir, artifacts, s) for s in seeds], []
    select_seeds = select_seeds or seeds
    tried = []
    for lambda_kl, lambda_fm in grid:
        exp = _with_lambdas(llactr_exp, lambda_kl, lambda_fm)
        runs = {s: _run(exp, data_dir, artifacts, s) for s in select_seeds}
        tried.append({"lambda_kl": lambda_kl, "lambda_fm": lambda_fm, "valid_auc": _mean(list(runs.values()),
                      "valid_auc"), "test_auc": _mean(list(runs.values()), "test_auc"), "exp": exp, "runs": runs})
    best = max(tried, key=lambda t: t["valid_auc"])
    runs = [best["runs"].get(s) or _run(best["exp"], data_dir, artifacts, s) for s in seeds]
    return best["exp"], runs, [{k: v for k, v in t.items() if k not in ("exp", "runs")} for t in tried]


def _ablations(llactr_exp) -> dict:
    """The LLaCTR experiment with one part switched off."""
    no_ft = copy.deepcopy(llactr_exp)
    no_ft.semantics.ssft = None
    no_fre = copy.deepcopy(llactr_exp)
    no_fre.model.llactr.fre = False
    no_fie = copy.deepcopy(llactr_exp)
    no_fie.model.llactr.fie = False
    return {"w/o FT": no_ft, "w/o FRE": no_fre, "w/o FIE": no_fie}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 epoch, 40 SSFT features per field, fm + deepfm")
    parser.add_argument("--models", help=f"comma-separated backbones (default {','.join(MODELS)})")
    parser.add_argument("--ablation-model", default=None, help="backbone of the ablations (default: the first)")
    parser.add_argument("--seeds", default="2026", help="comma-separated seeds; AUCs are averaged over them")
    parser.add_argument("--grid", help="lambda_kl:lambda_fm pairs chosen from per backbone by validation AUC")
    parser.add_argument("--select-seeds", help="seeds the grid is chosen on (default: all --seeds); the chosen "
                        "lambdas then run every seed")
    parser.add_argument("--no-ablations", action="store_true")
    parser.add_argument("--epochs", type=int, help="override the YAMLs' epoch budget (both sides alike; early "
                        "stopping still applies)")
    parser.add_argument("--fre-target", choices=["field", "feature", "entity"],
                        help="override the LLaCTR YAMLs' model.llactr.fre_target (default: as the YAMLs say)")
    parser.add_argument("--name", help="result name (default llactr_ml1m, or llactr_ml1m_quick with --quick)")
    parser.add_argument("--artifacts", default="artifacts")
    args = parser.parse_args()
    setup_logging()
    init_ray()
    models = args.models.split(",") if args.models else (QUICK["models"] if args.quick else MODELS)
    seeds = [int(s) for s in args.seeds.split(",")]
    grid = [tuple(float(x) for x in pair.split(":")) for pair in args.grid.split(",")] if args.grid else []
    select_seeds = [int(s) for s in args.select_seeds.split(",")] if args.select_seeds else None
    data_dir, manifest = prepare("ml1m", artifacts=args.artifacts)

    rows, chosen_exps = [], {}
    for name in models:
        base_exp = _budget(load_experiment(f"ml1m_{name}"), args.quick, args.epochs)
        llactr_exp = _budget(load_experiment(f"ml1m_{name}_llactr"), args.quick, args.epochs, args.fre_target)
        base = [_run(base_exp, data_dir, args.artifacts, s) for s in seeds]
        chosen, enhanced, tried = _select(llactr_exp, grid, data_dir, args.artifacts, seeds, select_seeds)
        chosen_exps[name] = chosen
        row = {"model": name, "base_auc": _mean(base, "test_auc"), "llactr_auc": _mean(enhanced, "test_auc"),
               "base_logloss": _mean(base, "test_logloss"), "llactr_logloss": _mean(enhanced, "test_logloss"),
               "base_train_seconds": _mean(base, "train_wall_seconds"),
               "llactr_train_seconds": _mean(enhanced, "train_wall_seconds"),
               "ssft_seconds": enhanced[0].get("ssft_seconds"), "encode_seconds": enhanced[0].get("encode_seconds"),
               "ssft_loss_before": enhanced[0].get("ssft_loss_before"),
               "ssft_loss_after": enhanced[0].get("ssft_loss_after"),
               "lambda_kl": chosen.model.llactr.lambda_kl, "lambda_fm": chosen.model.llactr.lambda_fm,
               "base_valid_auc": _mean(base, "valid_auc"), "llactr_valid_auc": _mean(enhanced, "valid_auc"),
               "grid": tried, "base_runs": base, "llactr_runs": enhanced}
        row["delta_auc"] = row["llactr_auc"] - row["base_auc"]
        rows.append(row)
        log.info("%s: base AUC %.4f, LLaCTR AUC %.4f (%+.4f)", name, row["base_auc"], row["llactr_auc"],
                 row["delta_auc"])

    ablation_model = args.ablation_model or models[0]
    full = next((r for r in rows if r["model"] == ablation_model), None)
    ablation_exp = chosen_exps.get(ablation_model) or _budget(load_experiment(f"ml1m_{ablation_model}_llactr"),
                                                              args.quick, args.epochs, args.fre_target)
    ablations = [{"variant": "LLaCTR", "test_auc": full["llactr_auc"]}] if full else []
    for variant, exp in ({} if args.no_ablations else _ablations(ablation_exp)).items():
        runs = [_run(exp, data_dir, args.artifacts, s) for s in seeds]
        ablations.append({"variant": variant, "test_auc": _mean(runs, "test_auc"), "runs": runs})
        log.info("%s %s: AUC %.4f", ablation_model, variant, ablations[-1]["test_auc"])

    improved = sum(r["delta_auc"] > 0 for r in rows)
    payload = {
        "dataset": "ml1m", "rows_per_split": manifest.rows, "quick": args.quick, "seeds": seeds,
        "epochs_override": args.epochs, "fre_target_override": args.fre_target,
        "encoder": "all-MiniLM-L6-v2 (CPU, default)", "rows": rows, "grid": grid,
        "grid_selected_on_seeds": (select_seeds or seeds) if grid else None,
        "improved": f"{improved}/{len(rows)}", "ablation_model": ablation_model, "ablations": ablations,
        "notes": "Same seed, same epochs/batch/lr for base and LLaCTR (the _llactr YAML only adds model.llactr "
                 "and semantics). ssft_seconds/encode_seconds come from the cached adapter's and tables' own "
                 "records, i.e. the time they took when first built. Quick mode: 1 epoch, 40 SSFT features per "
                 "field: a smoke run, not a result. With --grid, LLaCTR's lambdas are picked per backbone by mean "
                 "validation AUC (test AUC never used for the choice); the base has no such choice, which favours "
                 "LLaCTR slightly under seed noise.",
    }
    path = write_result(args.name or ("llactr_ml1m_quick" if args.quick else "llactr_ml1m"), payload)
    print(path.read_text())


if __name__ == "__main__":
    main()
