"""Our backbone zoo vs FuxiCTR, side by side on ML-1M, in one run on the same cores.

For every backbone both libraries have (deepfm, fm, fwfm, fmfm, dcnv2, autoint, finalmlp, wukong):

- ours:    ``llmctr.train.fit`` (Ray Train, 1 worker, the experiment's YAML: configs/experiments/ml1m_<model>.yaml);
- fuxictr: ``benchmarks/fuxictr/runner.py`` in its own venv (benchmarks/.venv-fuxictr, created when missing:
  torch==2.13.0 fuxictr==2.3.10 "polars<2"), the same model composed from FuxiCTR's layers as its model_zoo does,
  trained by FuxiCTR's ``BaseModel.fit`` on the SAME encoded parquet splits, with the same embedding size,
  hyper-parameters, batch size, Adam lr, epoch budget (best epoch by validation AUC, patience 2), seed and
  torch threads. It runs twice: fed by FuxiCTR's own parquet pipeline (``feed=fuxictr``, its Ray Data
  ``ParquetDataLoader``: the headline FuxiCTR number) and by in-memory tensors batched by index like our feed
  (``feed=memory``: the model-and-train-step-only comparison).

Runs are interleaved per model (ours A, fuxictr A, fuxictr-memory A, ours B, ...), each after the CPUs are
quiet. Throughput on both sides: training samples / seconds in the epoch's batch loop (batch fetch + forward +
backward + optimizer step; no validation, no start-up), averaged over epochs. Wall: each side's whole fit.

Writes benchmarks/results/zoo_vs_fuxictr.json and the zoo-vs-FuxiCTR section of docs/benchmarks.md.
With ``--seeds a,b,c`` every AUC / logloss is the mean over those seeds (per-seed values in the JSON); the first
seed is the measured run above, the others are AUC-only runs (ours via Ray Train as above; FuxiCTR with the
``--extra-seed-feed``, by default its in-memory feed).

Usage: python -m benchmarks.zoo_vs_fuxictr [--models deepfm,fm] [--epochs 4] [--artifacts DIR] [--seeds 2026,1,2]
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import logging
import os
import subprocess
from functools import partial
from pathlib import Path

from benchmarks.lib.common import write_result
from benchmarks.lib.quiet_cpu import measured
from benchmarks.lib.zoo_report import (
    AUC_TOLERANCE,
    COMMON_NOTES,
    DOCS,
    SPEEDUP_TARGET,
    make_row,
    markdown,
    targets,
    write_docs,
)
from llmctr.data import FeatureMap, prepare
from llmctr.models.registry import get_backbone
from llmctr.runtime import init_ray, setup_logging
from llmctr.train import fit, load_experiment

log = logging.getLogger("bench")

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-fuxictr"
RUNNER = HERE / "fuxictr" / "runner.py"  # a script of the FuxiCTR venv, run by path (not a module of ours)
# torch 2.13.0: the local CPU wheel; polars<2: FuxiCTR's CSV reader uses scan_csv(dtypes=...), gone in polars 2;
# aiohttp: Ray Data 2.60 (FuxiCTR's parquet loader) probes fsspec's HTTP filesystem, which needs it.
PINS = ["torch==2.13.0", "fuxictr==2.3.10", "polars<2", "aiohttp"]
MODELS = ["deepfm", "fm", "fwfm", "fmfm", "dcnv2", "autoint", "finalmlp", "wukong"]
FUXI_NAMES = {"deepfm": "DeepFM", "fm": "FM", "fwfm": "FwFM", "fmfm": "FmFM", "dcnv2": "DCNv2",
              "autoint": "AutoInt", "finalmlp": "FinalMLP", "wukong": "WuKong"}
WORKER_NICENESS = 15  # Ray's default for worker processes (RAY_worker_niceness)


# --------------------------------------------------------------------------------------------------------------
# The FuxiCTR venv
# --------------------------------------------------------------------------------------------------------------

def ensure_venv() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        log.info("creating %s (%s)", VENV, " ".join(PINS))
        subprocess.run(["python3.11", "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PINS], check=True)
    probe = "import fuxictr, torch, pyarrow, pandas, sklearn, aiohttp"
    if subprocess.run([str(python), "-c", probe], capture_output=True).returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PINS], check=True)
        subprocess.run([str(python), "-c", probe], check=True)
    return python


# --------------------------------------------------------------------------------------------------------------
# Hyper-parameters: our YAML params (with the backbone's defaults) → the FuxiCTR model's keyword arguments
# --------------------------------------------------------------------------------------------------------------

def our_params(exp) -> dict:
    sig = inspect.signature(get_backbone(exp.model.name).__init__)
    defaults = {k: p.default for k, p in sig.parameters.items()
                if p.default is not inspect.Parameter.empty and k != "extra_dim"}
    merged = {**defaults, **(exp.model.params or {})}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in merged.items()}


def fuxictr_params(model: str, p: dict, field_order: list[str]) -> dict:
    act = {"relu": "ReLU"}.get(p.get("activation", "relu"), p.get("activation"))
    if model == "deepfm":
        return {"hidden_units": p["hidden_units"], "hidden_activations": act, "net_dropout": p["dropout"],
                "batch_norm": p["batch_norm"]}
    if model == "fm":
        return {}
    if model == "fwfm":
        return {"linear_type": "LW"}
    if model == "fmfm":
        return {"field_interaction_type": p["field_interaction_type"]}
    if model == "dcnv2":
        units = p["hidden_units"]
        return {"model_structure": p["structure"], "num_cross_layers": p["num_cross_layers"],
                "parallel_dnn_hidden_units": units if p["structure"] == "parallel" else [],
                "stacked_dnn_hidden_units": units if p["structure"] == "stacked" else [],
                "dnn_activations": act, "net_dropout": p["dropout"], "batch_norm": p["batch_norm"]}
    if model == "autoint":
        return {"attention_layers": p["attention_layers"], "num_heads": p["num_heads"],
                "attention_dim": p["attention_dim"], "use_residual": p["use_residual"], "use_scale": p["use_scale"],
                "layer_norm": p["layer_norm"], "dnn_hidden_units": p["hidden_units"], "dnn_activations": act,
                "net_dropout": p["dropout"], "batch_norm": p["batch_norm"], "use_wide": False}
    if model == "finalmlp":
        return {"mlp1_hidden_units": p["mlp1_hidden_units"], "mlp2_hidden_units": p["mlp2_hidden_units"],
                "mlp1_hidden_activations": act, "mlp2_hidden_activations": act, "mlp1_dropout": p["dropout"],
                "mlp2_dropout": p["dropout"], "mlp1_batch_norm": p["batch_norm"], "mlp2_batch_norm": p["batch_norm"],
                "use_fs": p["use_fs"], "fs_hidden_units": p["fs_hidden_units"],
                "fs1_context": [field_order[i] for i in p["fs1_context"]],
                "fs2_context": [field_order[i] for i in p["fs2_context"]], "num_heads": p["num_heads"]}
    if model == "wukong":
        return {"num_layers": p["num_layers"], "compression_dim": p["compression_dim"], "fmb_units": p["fmb_units"],
                "fmb_dim": p["fmb_dim"], "project_dim": p["project_dim"], "dropout_rate": p["dropout"],
                "mlp_hidden_units": p["hidden_units"]}
    raise ValueError(f"no FuxiCTR mapping for {model!r}")


# --------------------------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------------------------

def start_private_ray() -> None:
    """A Ray of our own for each of our runs. ``init_ray()`` without an address would join whatever cluster
    /tmp/ray/ray_current_cluster names (``ray.init``'s auto-discovery), e.g. another session's test cluster on this
    machine; a benchmark must not share (or be killed with) someone else's cluster."""
    import ray

    if os.environ.get("RAY_ADDRESS"):
        init_ray()
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING)


def run_ours(exp, data_dir: Path, artifacts: Path) -> dict:
    import ray

    start_private_ray()
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        result = fit(exp, data_dir, artifacts=artifacts)
    finally:
        ray.shutdown()
    m = result.metrics
    return {"test_auc": m["test_auc"], "test_logloss": m["test_logloss"],
            "train_samples_per_s": m["train_samples_per_s"], "wall_seconds": m["train_wall_seconds"],
            "epochs_run": m["epochs_run"], "best_epoch": m["best_epoch"], "valid_auc": m.get("valid_auc"),
            "threads": m["threads_per_worker"],
            "epoch_samples_per_s": [h["samples_per_s"] for h in result.history], "seed": exp.train.seed}


def run_fuxictr(python: Path, model: str, params: dict, exp, data_dir: Path, threads: int, feed: str) -> dict:
    tc = exp.train
    cmd = [str(python), str(RUNNER), "--data-dir", str(data_dir), "--model", FUXI_NAMES[model],
           "--params", json.dumps(params), "--embedding-dim", str(exp.model.embedding_dim),
           "--batch-size", str(tc.batch_size), "--epochs", str(tc.epochs), "--lr", str(tc.lr),
           "--patience", str(tc.early_stopping_patience), "--seed", str(tc.seed), "--threads", str(threads),
           "--feed", feed]
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "PYTHONPATH", "VIRTUAL_ENV")}
    env["RAY_AUTH_MODE"] = "disabled"
    # Same scheduling terms as our side: Ray runs our training worker at niceness 15 (RAY_worker_niceness's
    # default); FuxiCTR trains in its driver process, so give that process the same niceness.
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(HERE),
                          preexec_fn=lambda: os.nice(WORKER_NICENESS))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"fuxictr runner failed ({proc.returncode}) for {model}/{feed}:\n{proc.stderr[-4000:]}")
    out = json.loads(lines[-1])
    out["epoch_samples_per_s"] = [h["samples_per_s"] for h in out.pop("history")]
    out["seed"] = tc.seed
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of " + ",".join(MODELS))
    parser.add_argument("--epochs", type=int, default=None, help="override the YAMLs' epoch budget (quick runs)")
    parser.add_argument("--artifacts", default="artifacts")
    parser.add_argument("--no-memfeed", action="store_true", help="skip the FuxiCTR in-memory-feed runs")
    parser.add_argument("--quiet-threshold", type=float, default=0.15)
    parser.add_argument("--max-quiet-wait", type=float, default=180.0)
    parser.add_argument("--max-foreign", type=float, default=0.1,
                        help="re-measure a run if processes outside this benchmark used more cores than this")
    parser.add_argument("--max-attempts", type=int, default=3)
    parser.add_argument("--name", default="zoo_vs_fuxictr", help="result name (benchmarks/results/<name>.json)")
    parser.add_argument("--no-docs", action="store_true")
    parser.add_argument("--seeds", default=None,
                        help="comma-separated seeds (default: the YAML's). AUC/logloss are means over them; the "
                             "first seed is the fully measured run (throughput, wall, in-memory comparison)")
    parser.add_argument("--extra-seed-feed", choices=("memory", "fuxictr"), default="memory",
                        help="FuxiCTR's feed for the seeds after the first (memory: its model and train step on "
                             "in-memory batches, the cheap option; fuxictr: its own parquet pipeline)")
    parser.add_argument("--precision", choices=("fp32", "bf16", "auto"), default=None,
                        help="our training forward precision (default: the YAMLs' train.precision); FuxiCTR trains "
                             "in fp32")
    parser.add_argument("--fp32-baseline", action="store_true",
                        help="with --precision bf16/auto: also train ours in fp32 on every seed, measured the same "
                             "way (the ours_fp32_* columns: what the precision costs in AUC and gains in speed)")
    parser.add_argument("--fuxictr-single-seed", default="",
                        help="comma-separated models whose FuxiCTR side runs only the first seed (e.g. finalmlp, "
                             "whose FuxiCTR implementation trains at ~2.3k samples/s)")
    args = parser.parse_args()
    setup_logging()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {MODELS}")
    seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else None
    single_seed = {m.strip() for m in args.fuxictr_single_seed.split(",") if m.strip()}
    artifacts = Path(args.artifacts).resolve()
    python = ensure_venv()

    start_private_ray()
    data_dir, manifest = prepare("ml1m", artifacts=artifacts)
    import ray

    ray.shutdown()
    fmap = FeatureMap.load(data_dir / "feature_map.json")
    field_order = [f.name for f in fmap.input_fields]

    rows, runs, settings, versions = [], [], None, {}
    for model in models:
        exp = load_experiment(f"ml1m_{model}")
        if args.epochs is not None:
            exp.train.epochs = args.epochs
        if args.precision is not None:
            exp.train.precision = args.precision
        model_seeds = seeds or [exp.train.seed]
        exp.train.seed = model_seeds[0]
        threads = exp.train.threads_per_worker or max(1, (os.cpu_count() or 2) // exp.train.num_workers)
        settings = {"embedding_dim": exp.model.embedding_dim, "batch_size": exp.train.batch_size, "lr": exp.train.lr,
                    "epochs": exp.train.epochs, "patience": exp.train.early_stopping_patience,
                    "seed": model_seeds[0], "seeds": model_seeds, "extra_seed_feed": args.extra_seed_feed,
                    "fuxictr_single_seed": sorted(single_seed), "threads": threads,
                    "ours_precision": exp.train.precision, "fuxictr_precision": "fp32"}
        fx_params = fuxictr_params(model, our_params(exp), field_order)

        ours = measured(f"[{model}] ours", partial(run_ours, exp, data_dir, artifacts), args)
        theirs = partial(run_fuxictr, python, model, fx_params, exp, data_dir, threads)
        fx = measured(f"[{model}] fuxictr (its parquet pipeline)", partial(theirs, "fuxictr"), args)
        versions = fx.pop("versions", versions)
        fxm = None
        if not args.no_memfeed:
            fxm = measured(f"[{model}] fuxictr (in-memory feed)", partial(theirs, "memory"), args)
            fxm.pop("versions", None)
        exp_fp32 = copy.deepcopy(exp)
        exp_fp32.train.precision = "fp32"
        fp32_runs = ([measured(f"[{model}] ours fp32", partial(run_ours, exp_fp32, data_dir, artifacts), args)]
                     if args.fp32_baseline else None)
        ours_runs, fx_runs = [ours], [fx]
        for seed in model_seeds[1:]:  # AUC only: one run each, no quiet-machine wait
            exp_s = copy.deepcopy(exp)
            exp_s.train.seed = seed
            log.info("[%s] seed %d", model, seed)
            ours_runs.append(run_ours(exp_s, data_dir, artifacts))
            if fp32_runs is not None:
                exp_s.train.precision = "fp32"
                fp32_runs.append(run_ours(exp_s, data_dir, artifacts))
            if model not in single_seed:
                fx_runs.append(run_fuxictr(python, model, fx_params, exp_s, data_dir, threads, args.extra_seed_feed))
                fx_runs[-1].pop("versions", None)

        row = make_row(model, ours_runs, fx_runs, fxm, fp32_runs)
        rows.append(row)
        runs.append({"model": model, "fuxictr_kwargs": fx_params, "ours_params": our_params(exp)})
        log.info("[%s] AUC ours %.4f vs fuxictr %.4f; samples/s ours %.0f vs fuxictr %.0f (%.2fx)%s", model,
                 row["ours_auc"], row["fuxictr_auc"], row["ours_samples_per_s"], row["fuxictr_samples_per_s"],
                 row["speedup"], f", vs in-memory {row['speedup_vs_memfeed']:.2f}x" if fxm else "")

    payload = {
        "benchmark": "zoo_vs_fuxictr", "dataset": "ml1m", "rows": rows, "targets": targets(rows),
        "auc_tolerance": AUC_TOLERANCE, "speedup_target": SPEEDUP_TARGET, "settings": settings,
        "rows_per_split": manifest.rows, "fields": field_order,
        "fuxictr_version": versions.get("fuxictr"), "fuxictr_torch": versions.get("torch"),
        "fuxictr_venv_pins": PINS, "runs": runs,
        "common_differences": COMMON_NOTES,
        "measurement": {"quiet_threshold": args.quiet_threshold, "max_quiet_wait": args.max_quiet_wait,
                        "max_foreign": args.max_foreign, "max_attempts": args.max_attempts,
                        "fuxictr_niceness": WORKER_NICENESS},
        "notes": "ours_auc / fuxictr_auc (and logloss): means over the seeds in settings.seeds (per-seed values "
                 "in *_per_seed; fuxictr_feed_per_seed says which FuxiCTR feed each seed used); samples_per_s and "
                 "wall: the first seed's run. samples_per_s on both sides: training samples / seconds in each "
                 "epoch's batch loop (fetch + "
                 "forward + backward + step), validation and start-up excluded, averaged over epochs. "
                 "fuxictr_* = FuxiCTR fed by its own parquet pipeline (Ray Data ParquetDataLoader); "
                 "fuxictr_memfeed_* = the same FuxiCTR model fed from in-memory tensors. Wall: ours = trainer.fit(); "
                 "fuxictr = loaders + fit + test evaluate.",
    }
    path = write_result(args.name, payload)
    payload = json.loads(path.read_text())
    if not args.no_docs:
        write_docs(markdown(payload))
    print(markdown(payload))
    log.info("wrote %s%s", path, "" if args.no_docs else f" and {DOCS}")


if __name__ == "__main__":
    main()
