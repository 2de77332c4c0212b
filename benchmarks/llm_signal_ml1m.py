"""Does the LLM add signal once it reads the user's behaviour? ML-1M (the shared copy), under the benchmark protocol
(benchmarks/lib/protocol.py): for each backbone, three arms with the same declared seeds, best epoch on validation,
paired differences with their standard error, and AUC on slices (users unseen in training, users and items with
fewer than 10 training rows):

- ``base``: the backbone on the static fields;
- ``id``: plus the id history, the variant the history benchmark chose on validation (``ID_HISTORY``);
- ``semantic``: plus the same history read through the items' MiniLM vectors (``history.semantic``: target
  attention over the projected vectors and the candidate-to-history cosines); which semantic variant
  (``--candidates``) is chosen on validation AUC alone, on ``--select-model`` with the first declared seed.

``semantic_gain`` is semantic minus id on the same backbone and seeds. ``--serve MODEL``: that model's semantic arm
and its plain student trained by the Ray Train job, each deployed and the test split scored over HTTP, 100 records
per request one at a time: served AUC against offline, and the HTTP p50 ratio.

    python -m benchmarks.llm_signal_ml1m --serve fm

Runs are trained in this process and cached with the history benchmark's (benchmarks/lib/ml1m_runs.py): its base
and id-history runs are read, not trained again, when they are there (``--verify-cached`` re-trains one and reports
the difference). ELEC on top (``--elec-models``): the semantic arm as the teacher of an id-history student, with
CLID over the rows a random batch holds or over packed lists of 8 rows of one user, and a teacher whose LLM vector is
each row's instance text (the issue's item 3b: ``elec/.../texts``, every ML-1M row's text encoded once, its time
under ``instance_texts``); ``distill_gain`` is the distilled student minus the same student alone. Cold-start texts
(``--cold-models``, benchmarks/lib/cold_start.py): the chosen semantic arm with ``:cold`` against it, under
``cold_start``. ``--elec-arms texts --models --out NAME``: one declared ELEC arm and the student alone it is
paired with, written to results/NAME.json (a supplement measured after the main file). The routed graph and
the early exit (item 6) are measured by ``benchmarks.early_exit_ml1m``
(``routed_gain``, ``early_exit``); the result says so under ``not_run``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from benchmarks.lib import protocol as proto
from benchmarks.lib.cold_start import COLD_COLUMNS, cold_arm, cold_summary
from benchmarks.lib.common import RESULTS
from benchmarks.lib.inprocess import load_prepared
from benchmarks.lib.ml1m_runs import ENCODERS, Runs, Tables, compare, select, served_experiment, slices, start
from llmctr.data.feature_map import LABEL
from llmctr.train.metrics import auc

log = logging.getLogger("llm_signal_ml1m")
MODELS = ["fm", "fwfm", "fmfm", "deepfm", "dcnv2", "autoint", "finalmlp", "wukong"]
#: benchmarks/results/history_ml1m.json's choice (on validation)
ID_HISTORY = "target_attention:20:drop0.5"
#: declared before any semantic run: the probe in the issue used the cosines and the candidate's vector
CANDIDATES = [f"{ID_HISTORY}:sem", f"{ID_HISTORY}:sem:cand", f"{ID_HISTORY}:sem:nocos"]
#: ELEC arms (benchmarks/lib/ml1m_runs.py): the semantic arm as the teacher of an id-history student, with
#: batches as they are (CLID's lists: whatever rows of one user a random batch holds) or packed in lists of 8
#: ``alpha0`` (CLID without the representation MSE) was added on 2026-12-05 after the first two arms' test AUCs were
#: known (both below the student alone); it is chosen, like them, on the first seed's validation AUC. ``texts`` (the
#: instance-text teacher) was declared on 2026-12-05 before any of its runs, with the first three arms' results known
#: ``tstop`` (the teacher frozen at its best validation epoch, distill.teacher_stop) was declared on 2026-12-05 before
#: any of its runs, with the first three arms' results known and the texts arm running
ELEC_ARMS = ["elec/{chosen}", "elec/{chosen}/lists8", "elec/{chosen}/alpha0", "elec/{chosen}/texts",
             "elec/{chosen}/tstop"]
ELEC_ARM_NAMES = dict(zip(["plain", "lists8", "alpha0", "texts", "tstop"], ELEC_ARMS, strict=True))
NOT_RUN = {"routed_graph_and_early_exit": "item 6: measured by benchmarks.early_exit_ml1m (early_exit_ml1m.json)"}


def serve_pair(model: str, variant: str, data_dir: Path, root: Path, port: int) -> dict:
    """The plain student and ``variant`` trained by the platform's Ray Train job, each deployed in turn and the test
    split scored over HTTP (100 records per request, one request at a time)."""
    import pandas as pd
    from ray import serve

    from llmctr.data import FeatureMap
    from llmctr.data.records import raw_records
    from llmctr.runtime import init_ray
    from llmctr.serve.client import score_over_http, wait_healthy
    from llmctr.serve.deploy import deploy
    from llmctr.train import fit

    init_ray()
    frame = pd.read_parquet(data_dir / "test")
    records = raw_records(frame, FeatureMap.load(data_dir / "feature_map.json"))
    labels = frame[LABEL].to_numpy()
    out = {}
    for arm in ("base", variant):
        result = fit(served_experiment(model, arm), data_dir, artifacts=root)
        history = False if arm == "base" else {"events_log": str(root / "bench_events.jsonl")}
        url = deploy(result.artifact, port=port, history=history)
        try:
            wait_healthy(url, timeout=300)
            run = score_over_http(url, records, per_request=100, progress=True)
        finally:
            serve.shutdown()
        out["plain" if arm == "base" else "semantic"] = {
            "arm": arm, "artifact": Path(result.artifact).name, "offline_auc": result.metrics["test_auc"],
            "served_auc": auc(labels, np.asarray(run.probabilities)), "http_p50_ms": run.percentile(50),
            "http_p99_ms": run.percentile(99), "requests": len(run.latencies_ms)}
    out["p50_ratio"] = out["semantic"]["http_p50_ms"] / out["plain"]["http_p50_ms"]
    out.update(model=model, records=len(records), records_per_request=100)
    return out


def summarise(runs: Runs, models: list[str], chosen: str, slice_rows: dict[str, int]) -> list[dict]:
    rows = []
    for model in models:
        row = {"model": model}
        for name, (treatment, baseline) in {"semantic_vs_id": (chosen, ID_HISTORY), "id_vs_base": (ID_HISTORY, "base"),
                                            "semantic_vs_base": (chosen, "base")}.items():
            c = compare(runs.done, runs.protocol.seeds, model, treatment, baseline, slice_rows)
            if c is not None:
                c["verdict"] = proto.verdict(c["diff"], c["diff_se"], 0.0)
                row[name] = c
        rows.append(row)
    return rows


def elec_summary(runs: Runs, models: list[str], arms: list[str], chosen: str, slice_rows: dict[str, int]) -> dict:
    """Per model and ELEC arm: the distilled student against the same student alone (the id arm), the teacher's
    test AUC beside the semantic arm's; ``distill_gain``: the arm chosen on validation (first seed) of the first
    model."""
    out: dict = {"rows": [], "distill_gain": None}
    for model in models:
        seed = runs.protocol.seeds[0]
        scores = {a: {"valid_auc": r["valid_auc"]} for a in arms if (r := runs.find(model, a, seed))}
        pick = proto.choose_on_validation(scores) if scores else None
        for arm in arms:
            c = compare(runs.done, runs.protocol.seeds, model, arm, ID_HISTORY, slice_rows)
            if c is None:
                continue
            teachers = [r["teacher_test_auc"] for r in runs.done if r["model"] == model and r["arm"] == arm
                        and r["seed"] in c["seeds"]]
            c.update(model=model, arm=arm, chosen_on_validation=arm == pick, teacher_test_auc=float(np.mean(teachers)),
                     verdict=proto.verdict(c["diff"], c["diff_se"], 0.0))
            out["rows"].append(c)
            if arm == pick and out["distill_gain"] is None:
                out["distill_gain"] = {"model": model, "arm": arm, "diff": c["diff"], "se": c["diff_se"]}
    return out


def list_size_report(data, seed: int, batch_size: int = 4096, list_size: int = 8) -> dict:
    """The lists CLID sees in one epoch's batches (rows per user per batch): shuffled rows against packed lists."""
    from llmctr.train import feed

    out = {}
    for name, lists in (("shuffled", None), (f"packed_{list_size}", ("user_id", list_size))):
        batches = feed.memory_batches(data.splits["train"], batch_size, True, seed, "cpu", lists)
        sizes = np.concatenate([feed.list_sizes(b["user_id"]).numpy() for b in batches])
        out[name] = {"lists": int(len(sizes)), "mean_rows": float(sizes.mean()),
                     "single_row_share": float((sizes == 1).mean()), "rows_in_single_lists": float(
                         (sizes == 1).sum() / sizes.sum()), "p50": float(np.percentile(sizes, 50)),
                     "p90": float(np.percentile(sizes, 90)), "max": int(sizes.max())}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=["fm", "deepfm"], choices=MODELS,
                        help="backbones whose base, id-history and semantic arms run (none: only the other parts)")
    parser.add_argument("--candidates", nargs="+", default=CANDIDATES, help="semantic variants to choose from")
    parser.add_argument("--select-model", default="deepfm", choices=MODELS)
    parser.add_argument("--select-only", action="store_true")
    parser.add_argument("--no-train", action="store_true", help="write the result from cached runs only")
    parser.add_argument("--verify-cached", action="store_true",
                        help="re-train the first cached id-history run and record how far it lands from the cache")
    parser.add_argument("--data", type=Path, help="prepared ML-1M (default ARTIFACTS/data/ml1m)")
    parser.add_argument("--cache", type=Path, help="runs cache (default ARTIFACTS/bench/history_ml1m_runs.jsonl)")
    parser.add_argument("--serve", choices=MODELS, help="also train this model's semantic arm with Ray Train, serve it")
    parser.add_argument("--port", type=int, default=8152)
    parser.add_argument("--encoder-models", nargs="*", default=["fm"], choices=MODELS,
                        help="backbones whose chosen semantic arm also runs with each of --encoders")
    parser.add_argument("--encoders", nargs="*", default=["mpnet"], choices=sorted(ENCODERS),
                        help="encoders besides MiniLM (benchmarks/lib/ml1m_runs.py: ENCODERS)")
    parser.add_argument("--elec-models", nargs="*", default=["fm"], choices=MODELS,
                        help="backbones whose ELEC arms run (teacher: the chosen semantic arm)")
    parser.add_argument("--cold-models", nargs="*", default=["fm"], choices=MODELS,
                        help="backbones whose chosen semantic arm also runs with cold-start texts (:cold)")
    parser.add_argument("--elec-arms", nargs="+", default=list(ELEC_ARM_NAMES), choices=list(ELEC_ARM_NAMES),
                        help="which declared ELEC arms run (default all; distill_gain is chosen among those run)")
    parser.add_argument("--out", default="llm_signal_ml1m", help="result name under benchmarks/results/")
    parser.add_argument("--remark")
    args, protocol, prov, root, data_dir = start(parser)
    data = load_prepared(data_dir, raw_columns=COLD_COLUMNS)
    tables = Tables(data_dir, root)
    runs = Runs(args.cache or root / "bench" / "history_ml1m_runs.jsonl", data, protocol, semantics=tables)
    selection = select(runs, args.select_model, args.candidates)
    log.info("chosen on validation: %s (%s)", selection["chosen"], selection["valid_auc"])
    if args.select_only:
        return
    chosen = selection["chosen"]
    missing = [{"model": m, "arm": arm, "seed": s} for m in args.models for s in protocol.seeds
               for arm in ("base", ID_HISTORY, chosen) if runs.get(m, arm, s, train=not args.no_train) is None]
    elec_arms = [ELEC_ARM_NAMES[a].format(chosen=chosen) for a in args.elec_arms]
    missing += [{"model": m, "arm": arm, "seed": s} for m in args.elec_models for s in protocol.seeds
                for arm in (ID_HISTORY, *elec_arms) if runs.get(m, arm, s, train=not args.no_train) is None]
    encoder_arms = {e: f"{chosen}@{e}" for e in args.encoders if e != "minilm"}
    missing += [{"model": m, "arm": arm, "seed": s} for m in args.encoder_models for s in protocol.seeds
                for arm in encoder_arms.values() if runs.get(m, arm, s, train=not args.no_train) is None]
    missing += [{"model": m, "arm": cold_arm(chosen), "seed": s} for m in args.cold_models for s in protocol.seeds
                if runs.get(m, cold_arm(chosen), s, train=not args.no_train) is None]
    verify = None
    if args.verify_cached:
        model, seed = args.models[0], protocol.seeds[0]
        again = runs.train(model, ID_HISTORY, seed)
        verify = {"model": model, "arm": ID_HISTORY, "seed": seed, "cached_test_auc": runs.find(
            model, ID_HISTORY, seed)["test_auc"], "retrained_test_auc": again["test_auc"]}
        verify["abs_diff"] = abs(verify["cached_test_auc"] - verify["retrained_test_auc"])
    slice_rows = {k: int(m.sum()) for k, m in slices(data).items()}
    rows = summarise(runs, args.models, chosen, slice_rows)
    encoders = [{"model": m, "encoder": e, **c} for m in args.encoder_models for e, arm in encoder_arms.items()
                if (c := compare(runs.done, protocol.seeds, m, arm, chosen, slice_rows))]
    elec = elec_summary(runs, args.elec_models, elec_arms, chosen, slice_rows)
    not_run = dict(NOT_RUN)
    if not elec["rows"]:
        not_run["elec_teacher_and_distilled_student"] = (
            "item 3: no ELEC arm in this result (--elec-models was empty); the arms exist (elec/TEACHER[/listsN])")
    served_file = root / "bench" / "llm_signal_ml1m_served.json"
    if args.serve:
        served_file.write_text(json.dumps({**serve_pair(args.serve, chosen, data_dir, root, args.port),
                                           "git_commit": prov["git_commit"], "date": prov["date"]}))
    served = json.loads(served_file.read_text()) if served_file.is_file() else None
    gains = {r["model"]: r["semantic_vs_id"] for r in rows if "semantic_vs_id" in r}
    best = max(gains, key=lambda m: gains[m]["treatment_auc"]) if gains else None

    def gain(c: dict) -> dict:
        unseen = c["slices"]["users_unseen_in_train"]
        return {"all": {"diff": c["diff"], "se": c["diff_se"]}, "unseen_users": {"diff": unseen["diff"],
                                                                                 "se": unseen["diff_se"]}}

    payload = {
        "semantic_gain": {m: gain(c) for m, c in gains.items()},
        "best_served_auc": None if best is None else {"model": best, "auc": gains[best]["treatment_auc"],
                                                      "seeds": gains[best]["seeds"]},
        "served_p50_ratio": None if served is None else served["p50_ratio"],
        "distill_gain": elec["distill_gain"], "routed_gain": None, "early_exit": None, "not_run": not_run,
        "cold_start": cold_summary(runs, args.cold_models, chosen, slice_rows),
        "elec": elec, "instance_texts": next((r["instance_texts"] for r in runs.done
                                              if r.get("instance_texts", {}).get("encoded")), None),
        "clid_lists": list_size_report(data, runs.protocol.seeds[0]),
        "rows": rows, "id_history": ID_HISTORY, "semantic": chosen, "selection": selection, "served": served,
        "slice_rows": slice_rows, "missing_runs": missing, "verify_cached": verify,
        "encoders": tables.describe(), "encoder_effect": encoders,
        "test_rows": int(len(data.splits["test"][LABEL])), **({"remark": args.remark} if args.remark else {}),
        "training": "in process with the library's objective, epoch and predict functions (one run per model, arm "
                    "and seed, cached in the runs file shared with history_ml1m); --serve trains with the Ray Train "
                    "job"}
    path = proto.write(args.out, payload, prov, protocol)
    if rows:
        plot(rows, RESULTS / f"{args.out}.png")
    print(path)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [("id_vs_base", "id history − base"), ("semantic_vs_id", "semantic − id history")]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
    for ax, slice_name in zip(axes, (None, "users_unseen_in_train")):
        for k, (key, label) in enumerate(names):
            xs, ys, es = [], [], []
            for i, r in enumerate(rows):
                if key in r:
                    c = r[key] if slice_name is None else r[key]["slices"][slice_name]
                    xs.append(i + 0.15 * (k - 0.5))
                    ys.append(c["diff"])
                    es.append(2 * c["diff_se"])
            ax.errorbar(xs, ys, yerr=es, fmt="o", capsize=4, label=label)
        ax.axhline(0, color="grey", lw=1)
        ax.set_xticks(range(len(rows)), [r["model"] for r in rows])
        ax.set_title("all test rows" if slice_name is None else "users unseen in training", fontsize=9)
    axes[0].set_ylabel("test AUC difference (±2 SE)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
