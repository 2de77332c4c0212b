"""Does the user's behaviour history help every backbone? ML-1M (the shared copy), each backbone of the zoo with
and without the history layer (``model.history``), under the benchmark protocol (benchmarks/lib/protocol.py): the
same declared seeds for both arms, best epoch on validation AUC, paired differences with their standard error; plus
AUC on slices (users with fewer than 10 training rows, users unseen in training, items with fewer than 10 training
rows). ``--serve MODEL``: that model with history trained by ``llmctr.train.fit`` (Ray Train), deployed, and the
test split scored over HTTP.

Which history variant (``--candidates``, named as in benchmarks/lib/history_spec.py) is chosen on validation AUC
alone: each candidate is trained on ``--select-model`` with the first declared seed, the best validation AUC wins,
and every backbone then runs with that one variant.

    python -m benchmarks.history_ml1m                      # selection, then all 8 backbones, 5 seeds
    python -m benchmarks.history_ml1m --select-only        # only the selection runs
    python -m benchmarks.history_ml1m --models deepfm --serve deepfm

Runs are trained in this process (benchmarks/lib/inprocess.py) and appended to a cache
(``ARTIFACTS/bench/history_ml1m_runs.jsonl``) as they finish, so an interrupted benchmark resumes where it stopped;
the result is written from the cache: ``benchmarks/results/history_ml1m.json`` and ``history_ml1m.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from benchmarks.lib import protocol as proto
from benchmarks.lib.common import RESULTS
from benchmarks.lib.inprocess import load_prepared
from benchmarks.lib.ml1m_runs import Runs, compare, select, served_experiment, slices, start
from llmctr.data import prepare
from llmctr.data.feature_map import LABEL
from llmctr.train.metrics import auc

log = logging.getLogger("history_ml1m")
MODELS = ["fm", "fwfm", "fmfm", "deepfm", "dcnv2", "autoint", "finalmlp", "wukong"]
ARMS = ("base", "history")
#: drawn up after benchmarks/probes/history_variants.py (one seed, DeepFM): without regularisation the history
#: models peaked on validation at epoch 3-5 and lost test AUC; stopping the history's gradient into the item
#: embeddings or dropping history positions removed that. The choice among these is on validation only.
#: Attention over 50 entries is left out for its cost (about 3x an epoch over 20 on this machine's 2 cores).
CANDIDATES = ["target_attention:20:sg", "target_attention:20:drop0.5", "target_attention:20:sg:drop0.5",
              "mean:50:drop0.5", "mean:50:sg:drop0.5"]


def summarise(runs: list[dict], protocol: proto.Protocol, models: list[str], slice_rows: dict[str, int],
              chosen: str) -> list[dict]:
    rows = []
    for model in models:
        c = compare(runs, protocol.seeds, model, chosen, "base", slice_rows)
        if c is None:
            continue
        by = {arm: {r["seed"]: r for r in runs if r["model"] == model and r["arm"] == name}
              for arm, name in (("base", "base"), ("history", chosen))}
        seeds = c["seeds"]
        rows.append({"model": model, "seeds": seeds, "base_auc": c["baseline_auc"], "history_auc": c["treatment_auc"],
                     "diff": c["diff"], "diff_se": c["diff_se"], "verdict": proto.verdict(c["diff"], c["diff_se"], 0.0),
                     "per_seed_diff": c["per_seed_diff"],
                     "base_epochs": [by["base"][s]["best_epoch"] for s in seeds],
                     "history_epochs": [by["history"][s]["best_epoch"] for s in seeds],
                     "epoch_seconds": {arm: float(np.mean([by[arm][s]["epoch_seconds"] for s in seeds]))
                                       for arm in ARMS},
                     "slices": {name: {"rows": v["rows"], "base_auc": v["baseline_auc"],
                                       "history_auc": v["treatment_auc"], "diff": v["diff"], "diff_se": v["diff_se"]}
                                for name, v in c["slices"].items()}})
    return rows


def serve_one(model: str, variant: str, data_dir: Path, artifacts: Path, port: int) -> dict:
    """The history model trained by the platform's own job, deployed, and the test split scored over HTTP."""
    import pandas as pd
    from ray import serve

    from llmctr.data import FeatureMap
    from llmctr.data.records import raw_records
    from llmctr.runtime import init_ray
    from llmctr.serve.client import score_over_http, wait_healthy
    from llmctr.serve.deploy import deploy
    from llmctr.train import fit

    init_ray()
    result = fit(served_experiment(model, variant), data_dir, artifacts=artifacts)
    url = deploy(result.artifact, port=port, history={"events_log": str(artifacts / "bench_events.jsonl")})
    try:
        wait_healthy(url, timeout=300)
        frame = pd.read_parquet(data_dir / "test")
        records = raw_records(frame, FeatureMap.load(data_dir / "feature_map.json"))
        run = score_over_http(url, records, per_request=100, progress=True)
    finally:
        serve.shutdown()
    labels = frame[LABEL].to_numpy()
    served = np.asarray(run.probabilities)
    return {"model": model, "artifact": str(result.artifact), "offline_auc": result.metrics["test_auc"],
            "served_auc": auc(labels, served), "records": len(records),
            "http_p50_ms": run.percentile(50)}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    x = np.arange(len(rows))
    ax.errorbar(x, [r["diff"] for r in rows], yerr=[2 * r["diff_se"] for r in rows], fmt="o", capsize=4)
    ax.axhline(0, color="grey", lw=1)
    ax.set_xticks(x, [r["model"] for r in rows])
    ax.set_ylabel("test AUC: history − base (±2 SE)")
    ax.set_title(f"ML-1M, {len(rows[0]['seeds'])} paired seeds per model", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    parser.add_argument("--candidates", nargs="+", default=CANDIDATES, help="history variants to choose from")
    parser.add_argument("--select-model", default="deepfm", choices=MODELS)
    parser.add_argument("--select-only", action="store_true", help="run the selection only")
    parser.add_argument("--no-train", action="store_true",
                        help="write the result from the cached runs only (missing ones are listed, not run)")
    parser.add_argument("--remark", help="a sentence stored with the result (e.g. where its cached runs came from)")
    parser.add_argument("--data", type=Path, help="prepared ML-1M (default ARTIFACTS/data/ml1m, prepared if missing)")
    parser.add_argument("--serve", choices=MODELS, help="also train this model with Ray Train and serve it over HTTP")
    parser.add_argument("--port", type=int, default=8151)
    parser.add_argument("--name", default="history_ml1m")
    args, protocol, prov, root, data_dir = start(parser)
    if not (data_dir / "feature_map.json").is_file():
        from llmctr.runtime import init_ray

        init_ray()
        prepare("ml1m", artifacts=root)
    data = load_prepared(data_dir)
    runs = Runs(root / "bench" / f"{args.name}_runs.jsonl", data, protocol)
    selection = select(runs, args.select_model, args.candidates)
    log.info("chosen on validation: %s (%s)", selection["chosen"], selection["valid_auc"])
    if args.select_only:
        return
    missing = [{"model": model, "arm": arm, "seed": seed} for model in args.models for seed in protocol.seeds
               for arm in ("base", selection["chosen"]) if runs.get(model, arm, seed, train=not args.no_train) is None]
    slice_rows = {k: int(m.sum()) for k, m in slices(data).items()}
    rows = summarise(runs.done, protocol, args.models, slice_rows, selection["chosen"])
    payload = {"rows": rows, "best_served_student_auc": max(r["history_auc"] for r in rows),
               "history": selection["chosen"], "selection": selection, "slice_rows": slice_rows,
               "missing_runs": missing, **({"remark": args.remark} if args.remark else {}),
               "test_rows": int(len(data.splits["test"][LABEL])),
               "training": "in process with the library's objective, epoch and predict functions (one run per "
                           "model, arm and seed); --serve trains with the Ray Train job"}
    served = root / "bench" / f"{args.name}_served.json"  # kept beside the runs: a later summary carries it
    if args.serve:
        out = serve_one(args.serve, selection["chosen"], data_dir, root, args.port)
        served.write_text(json.dumps({**out, "git_commit": prov["git_commit"], "date": prov["date"]}))
    if served.is_file():
        payload["served"] = json.loads(served.read_text())
    path = proto.write(args.name, payload, prov, protocol)
    plot(rows, RESULTS / f"{args.name}.png")
    print(path)


if __name__ == "__main__":
    main()
