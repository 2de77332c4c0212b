"""Our backbone zoo vs FuxiCTR on ML-1M, under the benchmark protocol (benchmarks/lib/protocol.py).

For every backbone both libraries have (deepfm, fm, fwfm, fmfm, dcnv2, autoint, finalmlp, wukong) and every declared
seed (the same seeds for every model and both sides):

- ours:    ``llmctr.train.fit`` (Ray Train, 1 worker) on configs/experiments/ml1m_<model>.yaml;
- fuxictr: benchmarks/fuxictr/runner.py in its own venv (benchmarks/.venv-fuxictr, created when missing), the same
  model composed from FuxiCTR's layers as its model_zoo does, trained by FuxiCTR's ``BaseModel.fit`` on the SAME
  encoded parquet splits, fed by FuxiCTR's own parquet pipeline (its Ray Data ``ParquetDataLoader``), with the same
  embedding size, hyper-parameters, batch size, Adam lr, seed and torch threads.

Both sides: the protocol's epoch budget (``--max-epochs``) with early stopping on validation AUC (``--patience``), the
best epoch by validation AUC, dense layers initialised xavier_normal (FuxiCTR's ``reset_parameters``; our YAMLs'
``model.dense_init`` is overridden where it differs, and the JSON says so). Per model: means over seeds, the paired
per-seed test-AUC difference ours - FuxiCTR with its standard error, and the verdict against the bar
"ours >= FuxiCTR - 0.001" (``protocol.verdict(diff, se, bar=-0.001)``: met when the whole ±2 SE interval is above it).
Throughput on both sides: training samples / seconds in each epoch's batch loop (no validation, no start-up), averaged
over epochs, then over seeds. ``--memfeed`` adds FuxiCTR fed from in-memory tensors (one more run per seed).
``--tune-init MODEL``: an extra row for MODEL whose dense init (xavier_normal or torch_default) is chosen on mean
validation AUC over the seeds; the main rows never use it.

Runs are interleaved (per seed: ours and FuxiCTR, their order alternating), each after the CPUs are quiet; finished runs
are cached in ARTIFACTS/bench/zoo_vs_fuxictr_runs.jsonl (reused only at the same clean commit and settings), so an
interrupted run resumes. Writes benchmarks/results/zoo_vs_fuxictr.json (``--out`` elsewhere); ``python -m
benchmarks.docs`` then regenerates its table in docs/benchmarks.md.

    python -m benchmarks.zoo_vs_fuxictr                  # all 8 models, seeds 2026 1 2 3 4, <= 8 epochs
    python -m benchmarks.zoo_vs_fuxictr --models fm --seeds 2026 --max-epochs 1 --allow-dirty --out /tmp/zoo.json
    python -m benchmarks.zoo_vs_fuxictr --merge A.json B.json   # one comparison from runs over different models
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import time
from functools import partial
from pathlib import Path

from benchmarks.lib import protocol as proto
from benchmarks.lib.common import RESULTS
from benchmarks.lib.fuxictr_side import (
    WORKER_NICENESS,
    add_to_provenance,
    ensure_venv,
    fuxictr_params,
    our_params,
    run_fuxictr,
)
from benchmarks.lib.quiet_cpu import measured
from benchmarks.lib.zoo_report import AUC_BAR, COMMON_NOTES, make_row, merge, summary
from llmctr import storage
from llmctr.data import FeatureMap, Manifest, prepare
from llmctr.runtime import init_ray, setup_logging
from llmctr.train import fit, load_experiment
from llmctr.train.job import threads_per_worker

log = logging.getLogger("bench")

MODELS = ["deepfm", "fm", "fwfm", "fmfm", "dcnv2", "autoint", "finalmlp", "wukong"]
INIT = "xavier_normal"  # FuxiCTR's BaseModel.reset_parameters: xavier_normal_ weights, zero biases
#: samples/s in the training loop (ours fp32, FuxiCTR with its parquet pipeline), quiet 2-core machine, 2026-11-24
#: (the pre-protocol zoo run): only for the runtime estimate printed before running
RATES = {"deepfm": (204_531, 129_705), "fm": (979_200, 191_213), "fwfm": (311_201, 147_968),
         "fmfm": (290_228, 40_029), "dcnv2": (62_720, 53_678), "autoint": (52_608, 43_958),
         "finalmlp": (30_166, 1_831), "wukong": (65_174, 51_487)}
FIXED_SECONDS = (35.0, 12.0)  # per run: ours (Ray start, worker group, shard load, test), FuxiCTR (process, loaders)


def run_seconds(model: str, side: int, protocol: proto.Protocol, train_rows: int) -> float:
    """One run of ``side`` (0 ours, 1 FuxiCTR) taking all ``max_epochs`` (an upper bound), validation ~15 % of an
    epoch, no wait for quiet CPUs."""
    return FIXED_SECONDS[side] + protocol.max_epochs * 1.15 * train_rows / RATES[model][side]


def estimate_seconds(models: list[str], protocol: proto.Protocol, train_rows: int, memfeed: bool,
                     tuned: list[str]) -> float:
    per_seed = sum(run_seconds(m, 0, protocol, train_rows) + (2 if memfeed else 1) * run_seconds(
        m, 1, protocol, train_rows) for m in models)  # FuxiCTR in memory: at most its pipeline's time
    per_seed += sum(run_seconds(m, 0, protocol, train_rows) for m in tuned)
    return per_seed * len(protocol.seeds)


def start_private_ray() -> None:
    """A Ray of our own for each of our runs: ``ray.init`` without an address would join whatever cluster
    /tmp/ray/ray_current_cluster names (e.g. another session's test cluster on this machine)."""
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
    return {"test_auc": m["test_auc"], "test_logloss": m["test_logloss"], "valid_auc": m["valid_auc"],
            "train_samples_per_s": m["train_samples_per_s"], "wall_seconds": m["train_wall_seconds"],
            "epochs_run": m["epochs_run"], "best_epoch": m["best_epoch"], "threads": m["threads_per_worker"],
            "epoch_samples_per_s": [h["samples_per_s"] for h in result.history], "seed": exp.train.seed}


class Cache:
    """Finished runs (JSON lines), keyed by model, side, seed and a fingerprint of the commit and the settings; only
    runs from a clean tree are written, and reused at the same commit and settings."""

    def __init__(self, path: Path, prov: dict, settings: dict):
        self.path, self.usable = path, not prov["dirty"]
        key = json.dumps({"commit": prov["git_commit"], **settings}, sort_keys=True)
        self.fingerprint = hashlib.sha1(key.encode()).hexdigest()[:12]
        lines = path.read_text().splitlines() if path.is_file() else []
        self.done = {r["key"]: r["run"] for r in map(json.loads, lines) if r["fingerprint"] == self.fingerprint}

    def get(self, key: str, run) -> dict:
        if self.usable and key in self.done:
            log.info("%s: cached", key)
            return self.done[key]
        out = run()
        if self.usable:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as fh:
                fh.write(json.dumps({"fingerprint": self.fingerprint, "key": key, "run": out}) + "\n")
        return out


def experiment(model: str, protocol: proto.Protocol, seed: int, precision: str | None, init: str = INIT):
    """ml1m_<model> under the protocol, named bench_zoo_* so its artifact never becomes the real experiment's LATEST."""
    exp = load_experiment(f"ml1m_{model}")
    exp.name = f"bench_zoo_{exp.name}"
    exp.train.engine = "ray"  # ours is Ray Train (1 worker), as the docs say; the in-process engine gives the same
    exp.model.dense_init = init  # model (tests/test_train.py) and is what benchmarks.wall_vs_fuxictr times
    exp.train.epochs, exp.train.early_stopping_patience, exp.train.seed = protocol.max_epochs, protocol.patience, seed
    if precision is not None:
        exp.train.precision = precision
    return exp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    proto.add_protocol_args(parser)
    parser.add_argument("--artifacts", default=None, help="artifacts root (default $LLMCTR_ARTIFACTS or ./artifacts)")
    parser.add_argument("--data", type=Path, help="prepared ML-1M (default ARTIFACTS/data/ml1m, prepared if missing)")
    parser.add_argument("--out", type=Path, default=RESULTS / "zoo_vs_fuxictr.json", help="the result file")
    parser.add_argument("--memfeed", action="store_true", help="also FuxiCTR fed from in-memory tensors")
    parser.add_argument("--tune-init", nargs="*", default=[], choices=MODELS,
                        help="extra rows: these models with their dense init chosen on validation AUC")
    parser.add_argument("--precision", choices=("fp32", "bf16", "auto"), help="ours (default: YAML); FuxiCTR: fp32")
    parser.add_argument("--estimate-only", action="store_true", help="print the runtime estimate and exit")
    parser.add_argument("--quiet-threshold", type=float, default=0.15)
    parser.add_argument("--max-quiet-wait", type=float, default=60.0)
    parser.add_argument("--max-foreign", type=float, default=0.1,
                        help="re-measure a run if processes outside this benchmark used more cores than this")
    parser.add_argument("--max-attempts", type=int, default=1)
    parser.add_argument("--merge", nargs="+", type=Path, metavar="RESULT",
                        help="run nothing: write --out as one comparison made of these results (other models, same "
                             "commit and settings)")
    args = parser.parse_args()
    setup_logging()
    if args.merge:
        payload, prov = merge([json.loads(p.read_text()) for p in args.merge], MODELS)
        log.info("wrote %s", proto.write(args.out.stem, payload, prov, folder=args.out.parent))
        return
    protocol = proto.protocol_from_args(args)
    prov = proto.provenance(args.allow_dirty)
    root = Path(storage.artifacts_root(args.artifacts)).resolve()
    data_dir = (args.data or root / "data" / "ml1m").resolve()
    if not (data_dir / "feature_map.json").is_file():
        start_private_ray()
        prepare("ml1m", artifacts=root)
        import ray

        ray.shutdown()
    manifest = Manifest.load(data_dir / "manifest.json")
    upper = estimate_seconds(args.models, protocol, manifest.rows["train"], args.memfeed, args.tune_init)
    n_runs = len(protocol.seeds) * (len(args.models) * (3 if args.memfeed else 2) + len(args.tune_init))
    log.info("estimate: at most %.0f min (%.1f h) for %d models x %d seeds x 2 sides (every run to %d epochs, quiet "
             "machine; early stopping shortens it) + up to %.0f min waiting for quiet CPUs on a busy machine (%d runs)",
             upper / 60, upper / 3600, len(args.models), len(protocol.seeds), protocol.max_epochs,
             n_runs * args.max_quiet_wait / 60, n_runs)
    if args.estimate_only:
        return
    python = ensure_venv()
    prov = add_to_provenance(prov, python)
    field_order = [f.name for f in FeatureMap.load(data_dir / "feature_map.json").static_fields]
    first = experiment(args.models[0], protocol, protocol.seeds[0], args.precision)
    threads = threads_per_worker(first.train)  # our worker's torch threads; FuxiCTR's process gets the same
    settings = {"max_epochs": protocol.max_epochs, "patience": protocol.patience, "precision": first.train.precision,
                "threads": threads, "data": str(data_dir)}
    cache = Cache(root / "bench" / "zoo_vs_fuxictr_runs.jsonl", prov, settings)
    measure = partial(measured, args=args)

    rows, runs, t_start = [], [], time.time()
    for model in args.models:
        yaml_init = load_experiment(f"ml1m_{model}").model.dense_init
        exps = {seed: experiment(model, protocol, seed, args.precision) for seed in protocol.seeds}
        fx_kwargs = fuxictr_params(model, our_params(exps[protocol.seeds[0]]), field_order)
        fx = partial(run_fuxictr, python, params=fx_kwargs, data_dir=data_dir, threads=threads)
        sides = {"ours": partial(run_ours, data_dir=data_dir, artifacts=root), "fuxictr": partial(fx, feed="fuxictr"),
                 **({"fuxictr_memfeed": partial(fx, feed="memory")} if args.memfeed else {})}
        out = {side: [] for side in sides}
        for i, seed in enumerate(protocol.seeds):
            order = list(sides) if i % 2 == 0 else list(reversed(sides))
            for side in order:
                label = f"{model}/{side}/{seed}"
                out[side].append(cache.get(label, partial(measure, label, partial(sides[side], exps[seed]))))
            log.info("[%s seed %d] test AUC ours %.4f, fuxictr %.4f (%.0f min so far)", model, seed,
                     out["ours"][-1]["test_auc"], out["fuxictr"][-1]["test_auc"], (time.time() - t_start) / 60)
        row = make_row(model, out["ours"], out["fuxictr"], out.get("fuxictr_memfeed"))
        rows.append(row)
        runs.append({"model": model, "yaml_dense_init": yaml_init, "dense_init": INIT, "fuxictr_kwargs": fx_kwargs,
                     "ours_params": our_params(exps[protocol.seeds[0]])})
        log.info("[%s] ours %.4f vs fuxictr %.4f: diff %+.4f ± %.4f (%s); samples/s %.0f vs %.0f", model,
                 row["ours_auc"], row["fuxictr_auc"], row["diff"], row["diff_se"], row["verdict"],
                 row["ours_samples_per_s"], row["fuxictr_samples_per_s"])
        if model in args.tune_init:
            rows.append(tuned_row(model, protocol, args.precision, out, cache, measure, data_dir, root))

    payload = {
        "benchmark": "zoo_vs_fuxictr", "dataset": "ml1m", "rows": rows, "summary": summary(rows),
        "auc_bar": AUC_BAR, "settings": {**settings, "embedding_dim": first.model.embedding_dim,
                                         "batch_size": first.train.batch_size, "lr": first.train.lr,
                                         "dense_init": INIT, "fuxictr_precision": "fp32",
                                         "fuxictr_feed": "its parquet pipeline (Ray Data ParquetDataLoader)",
                                         "fuxictr_niceness": WORKER_NICENESS},
        "measurement": {k: getattr(args, k) for k in ("quiet_threshold", "max_quiet_wait", "max_foreign",
                                                      "max_attempts")},
        "rows_per_split": manifest.rows, "fields": field_order, "runs": runs, "common_differences": COMMON_NOTES,
        "elapsed_seconds": time.time() - t_start, "estimated_upper_seconds": upper,
    }
    path = proto.write(args.out.stem, payload, prov, protocol, folder=args.out.parent)
    log.info("wrote %s in %.0f min (estimate: at most %.0f min)%s", path, (time.time() - t_start) / 60, upper / 60,
             "; regenerate the docs table: python -m benchmarks.docs" if path.parent == RESULTS else "")


def tuned_row(model: str, protocol: proto.Protocol, precision, out: dict, cache: Cache, measure, data_dir: Path,
              root: Path) -> dict:
    """``model`` with PyTorch's default init too; the init with the better mean validation AUC is compared with the
    same FuxiCTR runs (its test AUC plays no part in the choice)."""
    alt = "torch_default"
    labels = {seed: f"{model}/ours_{alt}/{seed}" for seed in protocol.seeds}
    runs = {INIT: out["ours"], alt: [cache.get(labels[seed], partial(measure, labels[seed], partial(
        run_ours, experiment(model, protocol, seed, precision, alt), data_dir, root))) for seed in protocol.seeds]}
    valid = {k: {"valid_auc": sum(r["valid_auc"] for r in v) / len(v)} for k, v in runs.items()}
    chosen = proto.choose_on_validation(valid)
    row = make_row(model, runs[chosen], out["fuxictr"], label=f"{model} (init chosen on validation: {chosen})")
    return {**row, "tuned": {"choice": "dense_init", "valid_auc": {k: v["valid_auc"] for k, v in valid.items()},
                             "chosen": chosen}}


if __name__ == "__main__":
    main()
