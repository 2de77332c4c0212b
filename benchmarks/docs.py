"""Tables of docs/benchmarks.md generated from the result files, so the doc cannot drift from the JSON.

A generated block sits between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->``; NAME is a renderer below,
reading ``benchmarks/results/<file>.json``. ``python -m benchmarks.docs`` rewrites every block;
``python -m benchmarks.docs --check`` lists the stale ones and exits 1 (tests/test_benchmark_docs.py runs it).
The prose around the blocks is written by hand and cites the blocks' numbers.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

from benchmarks.lib.common import RESULTS

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
BLOCK = re.compile(r"(<!-- results:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /results:(?P=name) -->)", re.S)


def _load(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def _diff(d: float, se: float) -> str:
    return f"{d:+.4f} ± {se:.4f}".replace("-", "−")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


SLICES = [("users_lt10_train_rows", "users < 10 train rows"), ("users_unseen_in_train", "users unseen in train"),
          ("items_lt10_train_rows", "items < 10 train rows")]


def history_ml1m() -> str:
    r = _load("history_ml1m")
    rows = [[x["model"], f"{x['base_auc']:.4f}", f"{x['history_auc']:.4f}", _diff(x["diff"], x["diff_se"]),
             x["verdict"], *[_diff(x["slices"][k]["diff"], x["slices"][k]["diff_se"]) for k, _ in SLICES]]
            for x in r["rows"]]
    return _table(["model", "base test AUC", "with history", "diff ± SE", "verdict", *[s for _, s in SLICES]], rows)


def llm_signal_ml1m() -> str:
    r = _load("llm_signal_ml1m")
    rows = []
    for x in r["rows"]:
        sem, idh = x.get("semantic_vs_id"), x.get("id_vs_base")
        if sem is None or idh is None:
            continue
        rows.append([x["model"], f"{idh['baseline_auc']:.4f}", f"{idh['treatment_auc']:.4f}",
                     f"{sem['treatment_auc']:.4f}", _diff(sem["diff"], sem["diff_se"]), sem["verdict"],
                     *[_diff(sem["slices"][k]["diff"], sem["slices"][k]["diff_se"]) for k, _ in SLICES]])
    out = _table(["model", "base", "id history", "semantic history", "semantic − id ± SE", "verdict",
                  *[f"semantic − id: {s}" for _, s in SLICES]], rows)
    elec = (r.get("elec") or {}).get("rows") or []
    if elec:
        out += "\n" + _table(
            ["ELEC arm (teacher: semantic history)", "teacher test AUC", "distilled student", "student alone (id)",
             "diff ± SE", "verdict", "chosen on validation"],
            [[f"{x['model']} {x['arm'].split('/', 2)[-1] if x['arm'].count('/') > 1 else 'batches as drawn'}",
              f"{x['teacher_test_auc']:.4f}", f"{x['treatment_auc']:.4f}", f"{x['baseline_auc']:.4f}",
              _diff(x["diff"], x["diff_se"]), x["verdict"], "yes" if x["chosen_on_validation"] else "no"]
             for x in elec])
    cold = r.get("cold_start") or {}
    if cold.get("rows"):
        out += "\n" + _table(
            [f"cold-start texts ({cold['test_rows_with_oov_candidate']} test rows with an unseen movie)",
             "unseen movies: own text", "unseen movies: \"unknown\"", "diff ± SE", "all rows: diff ± SE",
             "retrained against the semantic arm: diff ± SE"],
            [[f"{x['model']} (same weights, texts on / off)", f"{t['items_unseen_in_train']['texts_auc']:.4f}",
              f"{t['items_unseen_in_train']['unknown_auc']:.4f}",
              _diff(t["items_unseen_in_train"]["diff"], t["items_unseen_in_train"]["diff_se"]),
              _diff(t["all"]["diff"], t["all"]["diff_se"]), _diff(v["diff"], v["diff_se"])]
             for x in cold["rows"] for t, v in [(x["texts_vs_unknown_same_weights"], x["vs_semantic"])]])
    enc = r.get("encoder_effect") or []
    if enc:
        seconds = {k: v.get("seconds") for k, v in (r.get("encoders") or {}).items()}
        out += "\n" + _table(
            ["encoder against MiniLM (same semantic arm)", "MiniLM", "other", "diff ± SE", "tables built in"],
            [[f"{x['model']} {x['encoder']}", f"{x['baseline_auc']:.4f}", f"{x['treatment_auc']:.4f}",
              _diff(x["diff"], x["diff_se"]), f"{seconds[x['encoder']]:.0f} s" if seconds.get(x["encoder"])
              else "cached (not built in this run)"] for x in enc])
    served = r.get("served")
    if served:
        out += "\n" + _table(
            ["served over HTTP (100 records per request, one at a time)", "offline test AUC", "served AUC",
             "HTTP p50", "HTTP p99"],
            [[f"{served['model']} {name}", f"{served[name]['offline_auc']:.6f}", f"{served[name]['served_auc']:.6f}",
              f"{served[name]['http_p50_ms']:.1f} ms", f"{served[name]['http_p99_ms']:.1f} ms"]
             for name in ("plain", "semantic")])
    return out


def serve_load_onehop() -> str:
    rows, steps = [], []
    for n in (20, 100):
        r = _load(f"serve_load_onehop_{n}")
        seq, dep = r["kinds"]["student_sequential"], r["placement_baseline"]["kinds"]["student_sequential"]
        conc, conc_dep = r["kinds"]["student"], r["placement_baseline"]["kinds"]["student"]
        rows.append([str(n), f"{r['serve_echo_floor']['p50_ms']:.1f}", f"**{seq['p50_ms']:.1f}**",
                     f"{dep['p50_ms']:.1f}", f"{dep['p50_ms'] / seq['p50_ms']:.2f}×",
                     f"{r['in_process']['forward_ms']:.2f}", f"{r['student_sequential_target_ms']:.1f}",
                     "met" if r["student_sequential_within_target"] else "missed",
                     f"{conc['p50_ms']:.1f} / {conc_dep['p50_ms']:.1f}",
                     f"{conc['throughput_rps']:.0f} / {conc_dep['throughput_rps']:.0f}"])
        s, inside = r["router_steps_ms"], seq.get("in_router_ms") or {}
        steps.append([str(n), *[f"{s[k]:.2f}" for k in ("parse", "limits", "validate", "encode", "forward",
                                                         "respond")],
                      f"{inside.get('request', float('nan')):.2f}", f"{inside.get('student', float('nan')):.2f}",
                      f"{seq['p50_ms'] - r['serve_echo_floor']['p50_ms']:.1f}"])
    out = _table(["records / request", "echo p50 ms", "student in the Router, one at a time p50 ms",
                  "student as a deployment p50 ms", "ratio", "in-process forward ms", "bar ms", "bar",
                  "8 clients p50 ms, router / deployment", "8 clients req/s, router / deployment"], rows)
    return out + "\n" + _table(
        ["records / request", "parse", "limits", "validate", "encode", "forward", "respond",
         "inside the Router (mean)", "of it the student (mean)", "student p50 − echo p50"], steps)


def serve_chaos() -> str:
    rows = []
    for name in ("serve_chaos", "serve_chaos_deployment"):
        if not (RESULTS / f"{name}.json").is_file():
            continue
        r = _load(name)
        placement = r.get("student_placement", "deployment")  # runs before the option existed: a deployment
        for k in r["kills"]:
            failed = ", ".join(f"{n} × {status}" for status, n in k["failed_by_status"].items())
            rows.append([f"{k['deployment']} (student in {'the Router' if placement == 'router' else 'its own'}"
                         f"{'' if placement == 'router' else ' deployment'})", f"{k['sent']:,}",
                         f"{k['failed']}" + (f" ({failed})" if failed else ""), f"{k['p99_ms_before_kill']:.0f} ms",
                         f"{k['p99_ms']:.0f} ms", f"{k['recovery_s']:.1f} s", r["provenance"]["git_commit"][:7]])
    return _table(["killed", "requests", "failed", "p99 before the kill", "p99 from the kill to full strength",
                   "back to 2 replicas", "commit"], rows)


def ml1m_deepfm() -> str:
    r = _load("ml1m_deepfm")
    rows = [["test AUC / logloss", f"{r['test_auc']:.4f} / {r['test_logloss']:.4f} (best epoch {r['best_epoch']} "
             f"of {r['epochs']})", f"{r['plain_torch_test_auc']:.4f}", ""],
            ["training steps, samples/s", f"{r['train_samples_per_s']:,.0f}", f"{r['plain_torch_samples_per_s']:,.0f}",
             f"{r['ray_train_vs_plain']:.2f}×"],
            ["whole fit (start-up, loading, validation), samples/s",
             f"{r['ray_train_end_to_end_samples_per_s']:,.0f} ({r['train_wall_seconds']:.0f} s)", "", ""],
            [f"scoring {r['records_per_request']} records, p50", f"{r['serve_p50_ms']:.1f} ms over HTTP",
             f"{r['inprocess_score_p50_ms']:.2f} ms in process", ""],
            ["served AUC (sample) / largest served − offline gap", f"{r['served_auc']:.4f} / "
             f"{r['served_max_abs_diff_vs_offline']:.1e}", "", ""]]
    return _table(["", "llmctr (Ray Train, Ray Serve)", "baseline (plain torch loop; in-process scorer)",
                   "ratio"], rows)


def _provenance(r: dict) -> str:
    prov = r["provenance"]
    return (f"commit `{prov['git_commit'][:7]}`{' with uncommitted changes' if prov['dirty'] else ''}, "
            f"{prov['date']}, " + (f"FuxiCTR {prov['packages']['fuxictr']}, " if prov['packages'].get('fuxictr')
                                    else "") + f"{prov['machine']['cpus']} CPUs")


def _protocol_result(name: str) -> tuple[dict | None, str | None]:
    """(the result, None), or (None, a line standing in for its table) when the file is missing or predates the
    protocol (no provenance)."""
    r = _load(name) if (RESULTS / f"{name}.json").is_file() else None
    if r is not None and "provenance" in r:
        return r, None
    return None, (f"_No protocol result yet: `benchmarks/results/{name}.json` "
                  + ("is missing" if r is None else f"predates the protocol (measured {r.get('measured_at', '?')})")
                  + f"; run `python -m benchmarks.{name}`, then `python -m benchmarks.docs`._\n")


def zoo_vs_fuxictr() -> str:
    r, pending = _protocol_result("zoo_vs_fuxictr")
    if pending:
        return pending
    rows = [[x["model"], str(len(x["seeds"])), f"{x['ours_auc']:.4f}", f"{x['fuxictr_auc']:.4f}",
             _diff(x["diff"], x["diff_se"]), x["verdict"], f"{x['ours_samples_per_s']:,.0f}",
             f"{x['fuxictr_samples_per_s']:,.0f}", f"{x['ours_samples_per_s'] / x['fuxictr_samples_per_s']:.2f}×"]
            for x in r["rows"]]
    p = r["protocol"]
    return _table(["model", "seeds", "ours AUC", "FuxiCTR AUC", "diff ± SE", "verdict (bar −0.001)",
                   "ours samples/s", "FuxiCTR samples/s", "speedup"], rows) + (
        f"\nSeeds {', '.join(map(str, p['seeds']))} on both sides; at most {p['max_epochs']} epochs, patience "
        f"{p['patience']}, best epoch on validation AUC; {_provenance(r)}.\n")


def wall_vs_fuxictr() -> str:
    r, pending = _protocol_result("wall_vs_fuxictr")
    if pending:
        return pending

    def cell(stage: str, side: str) -> str:
        return f"{r[stage][side + '_median']:.1f} ({', '.join(f'{s:.1f}' for s in r[stage][side + '_seconds'])})"

    rows = [[stage, cell(stage, "ours"), cell(stage, "fuxictr"), f"{r[stage + '_ratio']:.2f}"]
            for stage in ("prepare", "train")]
    return _table(["whole process", "ours s, median (runs)", "FuxiCTR s, median (runs)", "ours / FuxiCTR"], rows) + (
        f"\n{r['experiment']}, {r['epochs']} epochs (run: ours {r['epochs_run']['ours']}, FuxiCTR "
        f"{r['epochs_run']['fuxictr']}), {r['repeats']} alternating runs per side; {_provenance(r)}.\n")


def scaling() -> str:
    r, pending = _protocol_result("scaling")
    if pending:
        return pending
    from benchmarks.scaling import MEASURES

    labels = {"prepare": "prepare", "train_epoch": "one training epoch", "score": "scoring the test split over HTTP"}
    steps = [(step, labels[step], key, counted) for step, (key, counted) in MEASURES.items()]

    def memory(size: dict, step: str) -> str:  # scoring: the client's processes plus the serving processes
        x = size[step]
        return f"{(x['tree_peak_pss_mb'] + x.get('serving_tree_peak_pss_mb', 0)) / 1024:.2f}"

    rows = [[label, f"{size['rows']:,}", f"{size[counted]:,}", f"{size[step]['seconds']:.1f}",
             f"{size[step][key]:.1f}", f"{size['seconds_per_million'][step]:.1f}",
             f"{size[step]['driver_peak_rss_mb'] / 1024:.2f}", memory(size, step)]
            for step, label, key, counted in steps for size in r["sizes"]]
    last = list(r["growth"])[-1]
    ratios = r["growth"][last]["seconds_per_million_ratio"]
    return _table(["step", "rows in the log", "rows processed", "whole process s", "step s",
                   "step s per million rows processed", "driver peak GiB", "all processes peak GiB"], rows) + (
        f"\nStep seconds: prepare's whole process, the epoch's own seconds (history.json), the client's scoring "
        f"loop. Seconds per million rows, {last.replace('_vs_', ' rows against ')}: "
        + ", ".join(f"{label} {ratios[step]:.2f}×" for step, label, _, _ in steps)
        + f" (bar: ≤ 1.5×). Plot: `benchmarks/results/{r['plot']}`; {_provenance(r)}.\n")


RENDERERS: dict[str, Callable[[], str]] = {"ml1m_deepfm": ml1m_deepfm,
    "serve_chaos": serve_chaos, "history_ml1m": history_ml1m, "llm_signal_ml1m": llm_signal_ml1m,
    "serve_load_onehop": serve_load_onehop, "zoo_vs_fuxictr": zoo_vs_fuxictr, "wall_vs_fuxictr": wall_vs_fuxictr,
    "scaling": scaling}


def render(text: str) -> tuple[str, list[str]]:
    """(the doc with every block regenerated, the names of the blocks that changed)."""
    stale = []

    def one(m: re.Match) -> str:
        name = m.group("name")
        if name not in RENDERERS:
            raise KeyError(f"docs block {name!r} has no renderer in benchmarks/docs.py")
        body = RENDERERS[name]()
        if body != m.group("body"):
            stale.append(name)
        return m.group(1) + body + m.group(4)

    return BLOCK.sub(one, text), stale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="list stale blocks, exit 1 if any")
    args = parser.parse_args()
    text = DOC.read_text()
    new, stale = render(text)
    if args.check:
        print("\n".join(stale) or "docs/benchmarks.md is up to date")
        sys.exit(1 if stale else 0)
    DOC.write_text(new)
    print(f"regenerated: {', '.join(stale) or 'nothing'}")


if __name__ == "__main__":
    main()
