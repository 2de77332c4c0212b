"""Generated blocks of docs/benchmarks.md read from results that predate the benchmark protocol (no provenance
block, 2 or 3 seeds, commits with uncommitted changes): the tables are still generated from the files, and each
says under it what the file lacks (``docfmt.legacy``). ``benchmarks.docs`` registers them."""

from __future__ import annotations

from benchmarks.lib import docfmt as fmt


def _pm(mean: float, std: float | None) -> str:
    return f"{mean:.5f}" + (f" ± {std:.5f}" if std is not None else "")


def retriever_ml1m() -> str:
    name = "retriever_ml1m" if fmt.exists("retriever_ml1m") else "retriever_ml1m_quick"
    r = fmt.load(name)
    keys = ("recall@10", "recall@50", "recall@100", "ndcg@10")
    rows = [[label, *[f"{r[side][k]:.4f}" for k in keys]] for side, label in (("lightgcn", "LightGCN"),
                                                                               ("popularity", "popularity"))]
    users = f"{r['sampled_users']:,} sampled users" if r["sampled_users"] else "all users"
    scope = (f"`{name}.json`: {'--quick, ' if r['quick'] else ''}{users}, "
             f"{r['train_edges']:,} train edges, {r['epochs_run']} epochs (best {r['best_epoch']}), "
             f"{r['test_users']:,} test users")
    return fmt.table(["", "recall@10", "recall@50", "recall@100", "NDCG@10"], rows) + f"\n{scope}." + fmt.origin(r)


def _llactr_rows(r: dict, grid: bool) -> list[list[str]]:
    out = []
    for x in r["rows"]:
        lam = [f"{x['lambda_kl']:g}, {x['lambda_fm']:g}"] if grid else []
        tail = [] if grid else [f"{x['base_logloss']:.4f}", f"{x['llactr_logloss']:.4f}"]
        out.append([x["model"], *lam, f"{x['base_auc']:.5f}", f"{x['llactr_auc']:.5f}",
                    fmt.signed(x["llactr_auc"] - x["base_auc"]), *tail])
    return out


def _llactr_footer(r: dict) -> str:
    seeds = r["seeds"]
    return (f"\nSeeds {', '.join(map(str, seeds))}; means over seeds." if len(seeds) > 1 else
            f"\nSeed {seeds[0]}.") + fmt.origin(r)


def llactr_ml1m() -> str:
    r = fmt.load("llactr_ml1m")
    return fmt.table(["model", "base test AUC", "LLaCTR test AUC", "Δ AUC", "base logloss", "LLaCTR logloss"],
                     _llactr_rows(r, grid=False)) + _llactr_footer(r)


def llactr_ml1m_grid() -> str:
    r = fmt.load("llactr_ml1m_grid")
    return fmt.table(["model", "chosen λ_kl, λ_fm", "base test AUC", "LLaCTR test AUC", "Δ AUC"],
                     _llactr_rows(r, grid=True)) + _llactr_footer(r)


def llactr_ml1m_entity_probe() -> str:
    """Entity-level FRE targets on one seed, next to field-level targets on the same seed (llactr_ml1m.json)."""
    r, field = fmt.load("llactr_ml1m_entity_probe"), fmt.load("llactr_ml1m")
    seed = r["seeds"][0]
    same_seed = {x["model"]: field_delta(field, x, seed) for x in field["rows"]}
    rows = [[x["model"], f"{x['base_auc']:.5f}", f"{x['llactr_auc']:.5f}", fmt.signed(x["llactr_auc"] - x["base_auc"]),
             fmt.signed(same_seed[x["model"]])] for x in r["rows"]]
    return fmt.table(["model", "base test AUC", "LLaCTR (entity targets)", "Δ AUC",
                      f"Δ with field targets, seed {seed} (llactr_ml1m.json)"], rows) + _llactr_footer(r)


def field_delta(r: dict, row: dict, seed: int) -> float:
    """LLaCTR minus base test AUC of ``row``'s run with ``seed`` (a row's runs follow the file's ``seeds``)."""
    i = r["seeds"].index(seed)
    return row["llactr_runs"][i]["test_auc"] - row["base_runs"][i]["test_auc"]
