"""Generated blocks of docs/benchmarks.md: models and training (``benchmarks.docs`` registers them)."""

from __future__ import annotations

from benchmarks.lib import docfmt as fmt


def history_ml1m() -> str:
    r = fmt.load("history_ml1m")
    rows = [[x["model"], f"{x['base_auc']:.4f}", f"{x['history_auc']:.4f}", fmt.diff(x["diff"], x["diff_se"]),
             x["verdict"], *[fmt.diff(x["slices"][k]["diff"], x["slices"][k]["diff_se"]) for k, _ in fmt.SLICES]]
            for x in r["rows"]]
    return fmt.table(["model", "base test AUC", "with history", "diff ± SE", "verdict",
                      *[s for _, s in fmt.SLICES]], rows)


def llm_signal_ml1m() -> str:
    r = fmt.load("llm_signal_ml1m")
    rows = []
    for x in r["rows"]:
        sem, idh = x.get("semantic_vs_id"), x.get("id_vs_base")
        if sem is None or idh is None:
            continue
        rows.append([x["model"], f"{idh['baseline_auc']:.4f}", f"{idh['treatment_auc']:.4f}",
                     f"{sem['treatment_auc']:.4f}", fmt.diff(sem["diff"], sem["diff_se"]), sem["verdict"],
                     *[fmt.diff(sem["slices"][k]["diff"], sem["slices"][k]["diff_se"]) for k, _ in fmt.SLICES]])
    out = fmt.table(["model", "base", "id history", "semantic history", "semantic − id ± SE", "verdict",
                  *[f"semantic − id: {s}" for _, s in fmt.SLICES]], rows)
    elec = (r.get("elec") or {}).get("rows") or []
    if elec:
        out += "\n" + _elec_table(elec)
    cold = r.get("cold_start") or {}
    if cold.get("rows"):
        out += "\n" + fmt.table(
            [f"cold-start texts ({cold['test_rows_with_oov_candidate']} test rows with an unseen movie)",
             "unseen movies: own text", "unseen movies: \"unknown\"", "diff ± SE", "all rows: diff ± SE",
             "retrained against the semantic arm: diff ± SE"],
            [[f"{x['model']} (same weights, texts on / off)", f"{t['items_unseen_in_train']['texts_auc']:.4f}",
              f"{t['items_unseen_in_train']['unknown_auc']:.4f}",
              fmt.diff(t["items_unseen_in_train"]["diff"], t["items_unseen_in_train"]["diff_se"]),
              fmt.diff(t["all"]["diff"], t["all"]["diff_se"]), fmt.diff(v["diff"], v["diff_se"])]
             for x in cold["rows"] for t, v in [(x["texts_vs_unknown_same_weights"], x["vs_semantic"])]])
    enc = r.get("encoder_effect") or []
    if enc:
        seconds = {k: v.get("seconds") for k, v in (r.get("encoders") or {}).items()}
        out += "\n" + fmt.table(
            ["encoder against MiniLM (same semantic arm)", "MiniLM", "other", "diff ± SE", "tables built in"],
            [[f"{x['model']} {x['encoder']}", f"{x['baseline_auc']:.4f}", f"{x['treatment_auc']:.4f}",
              fmt.diff(x["diff"], x["diff_se"]), f"{seconds[x['encoder']]:.0f} s" if seconds.get(x["encoder"])
              else "cached (not built in this run)"] for x in enc])
    served = r.get("served")
    if served:
        out += "\n" + fmt.table(
            ["served over HTTP (100 records per request, one at a time)", "offline test AUC", "served AUC",
             "HTTP p50", "HTTP p99"],
            [[f"{served['model']} {name}", f"{served[name]['offline_auc']:.6f}", f"{served[name]['served_auc']:.6f}",
              f"{served[name]['http_p50_ms']:.1f} ms", f"{served[name]['http_p99_ms']:.1f} ms"]
             for name in ("plain", "semantic")])
    return out


def _elec_arm(x: dict) -> str:
    """An ELEC row's label: its model and the arm's options (``elec/TEACHER/OPTION``), or "batches as drawn"."""
    return f"{x['model']} {x['arm'].split('/', 2)[-1] if x['arm'].count('/') > 1 else 'batches as drawn'}"


def _elec_table(elec: list[dict]) -> str:
    return fmt.table(
        ["ELEC arm (teacher: semantic history)", "teacher test AUC", "distilled student", "student alone (id)",
         "diff ± SE", "verdict", "chosen on validation"],
        [[_elec_arm(x),
          f"{x['teacher_test_auc']:.4f}", f"{x['treatment_auc']:.4f}", f"{x['baseline_auc']:.4f}",
          fmt.diff(x["diff"], x["diff_se"]), x["verdict"], "yes" if x["chosen_on_validation"] else "no"]
         for x in elec])


def llm_signal_ml1m_instance_texts() -> str:
    """The supplement: the instance-text teacher's ELEC arm, its slices and the time to encode every row's text."""
    r = fmt.load("llm_signal_ml1m_instance_texts")
    elec = r["elec"]["rows"]
    out = _elec_table(elec) + "\n" + fmt.table(
        ["distilled student − student alone", *[s for _, s in fmt.SLICES]],
        [[_elec_arm(x), *[fmt.diff(x["slices"][k]["diff"], x["slices"][k]["diff_se"]) for k, _ in fmt.SLICES]]
         for x in elec])
    t = r.get("instance_texts")
    if t:
        out += "\n" + fmt.table(
            ["every row's instance text, encoded once (MiniLM, Ray Data actors)", ""],
            [["rows (train, validation, test)", f"{t['rows']:,}"], ["distinct texts", f"{t['distinct_texts']:,}"],
             ["encoded in this run (the rest from the cache)", f"{t['encoded']:,}"],
             ["rendering the texts", f"{t['render_seconds']:.0f} s"],
             ["encoding", f"{t['encode_seconds']:,.0f} s ({t['encoded'] / max(t['encode_seconds'], 1e-9):,.0f} "
                          f"texts/s, {t['actors']} actor{'s' * (t['actors'] != 1)})"],
             ["one text", f"“{t['example']}”"]])
    return out + fmt.protocol_footer(r, "for both arms")


def ml1m_deepfm() -> str:
    r = fmt.load("ml1m_deepfm")
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
    return fmt.table(["", "llmctr (Ray Train, Ray Serve)", "baseline (plain torch loop; in-process scorer)",
                   "ratio"], rows)


def zoo_vs_fuxictr() -> str:
    r, pending = fmt.protocol_result("zoo_vs_fuxictr")
    if pending:
        return pending
    rows = [[x["model"], str(len(x["seeds"])), f"{x['ours_auc']:.4f}", f"{x['fuxictr_auc']:.4f}",
             fmt.diff(x["diff"], x["diff_se"]), x["verdict"], f"{x['ours_samples_per_s']:,.0f}",
             f"{x['fuxictr_samples_per_s']:,.0f}", f"{x['ours_samples_per_s'] / x['fuxictr_samples_per_s']:.2f}×"]
            for x in r["rows"]]
    return fmt.table(["model", "seeds", "ours AUC", "FuxiCTR AUC", "diff ± SE", "verdict (bar −0.001)",
                   "ours samples/s", "FuxiCTR samples/s", "speedup"], rows) + fmt.protocol_footer(r, "on both sides")


def wall_vs_fuxictr() -> str:
    r, pending = fmt.protocol_result("wall_vs_fuxictr")
    if pending:
        return pending

    def cell(stage: str, side: str) -> str:
        return f"{r[stage][side + '_median']:.1f} ({', '.join(f'{s:.1f}' for s in r[stage][side + '_seconds'])})"

    rows = [[stage, cell(stage, "ours"), cell(stage, "fuxictr"), f"{r[stage + '_ratio']:.2f}"]
            for stage in ("prepare", "train")]
    return fmt.table(["whole process", "ours s, median (runs)", "FuxiCTR s, median (runs)", "ours / FuxiCTR"], rows) + (
        f"\n{r['experiment']}, {r['epochs']} epochs (run: ours {r['epochs_run']['ours']}, FuxiCTR "
        f"{r['epochs_run']['fuxictr']}), {r['repeats']} alternating runs per side; {fmt.provenance(r)}.\n")


def scaling() -> str:
    r, pending = fmt.protocol_result("scaling")
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
    return fmt.table(["step", "rows in the log", "rows processed", "whole process s", "step s",
                   "step s per million rows processed", "driver peak GiB", "all processes peak GiB"], rows) + (
        f"\nStep seconds: prepare's whole process, the epoch's own seconds (history.json), the client's scoring "
        f"loop. Seconds per million rows, {last.replace('_vs_', ' rows against ')}: "
        + ", ".join(f"{label} {ratios[step]:.2f}×" for step, label, _, _ in steps)
        + f" (bar: ≤ 1.5×). Plot: `benchmarks/results/{r['plot']}`; {fmt.provenance(r)}.\n")


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


def _llactr(name: str) -> str:
    """LLaCTR against each backbone alone under the protocol; a weight grid's validation AUCs; the ablations."""
    r = fmt.load(name)
    rows = [[x["model"], x["llactr_arm"], f"{x['baseline_auc']:.4f}", f"{x['treatment_auc']:.4f}",
             fmt.diff(x["diff"], x["diff_se"]), x["verdict"],
             *[fmt.diff(x["slices"][k]["diff"], x["slices"][k]["diff_se"]) if k in x["slices"] else "–"
               for k, _ in fmt.SLICES]] for x in r["rows"]]
    out = fmt.table(["model", "LLaCTR arm", "base test AUC", "LLaCTR", "diff ± SE", "verdict (bar 0)",
                     *[s for _, s in fmt.SLICES]], rows)
    if r.get("selection"):
        picks = list(r["selection"].values())
        grid = list(picks[0]["valid_auc"])
        out += (f"\nValidation AUC of each weight pair on seed {picks[0]['seed']} (the chosen one in bold; test AUC "
                "plays no part):\n\n" + fmt.table(
                    ["model", *[g.split("/")[-1] for g in grid]],
                    [[x["model"], *[f"**{x['valid_auc'][g]:.5f}**" if g == x["chosen"] else f"{x['valid_auc'][g]:.5f}"
                                    for g in grid]] for x in picks]))
    if r.get("ablations"):
        out += "\n" + fmt.table([f"{r['ablation_model']}: LLaCTR", "test AUC", "full LLaCTR", "diff ± SE"],
                                [[a["variant"], f"{a['auc']:.4f}", f"{a['llactr_auc']:.4f}",
                                  fmt.diff(a["diff_vs_llactr"], a["diff_se"])] for a in r["ablations"]])
    return out + fmt.protocol_footer(r, "for both arms")


def llactr_ml1m() -> str:
    return _llactr("llactr_ml1m")


def llactr_ml1m_grid() -> str:
    return _llactr("llactr_ml1m_grid")


def llactr_ml1m_entity() -> str:
    return _llactr("llactr_ml1m_entity")


def llactr_ml1m_16ep() -> str:
    return _llactr("llactr_ml1m_16ep")


DISTILL_LABELS = {"elec": "ELEC (CLID + MSE)", "no_clid": "no CLID (β = 0)", "no_mse": "no MSE (α = 0)",
                  "sparse": "dynamic-sparse student (trained)"}


def distill_ml1m() -> str:
    """ELEC's variants against the student alone under the protocol; the inference-only sparsity sweep and the
    inference cost per 1,000 samples (first seed's artifacts)."""
    r = fmt.load("distill_ml1m")
    rows = [["student alone (no teacher)", f"{r['student_alone_auc']:.4f}", "–", "–", "–"]]
    for x in r["rows"]:
        if x["variant"] == "student_alone":
            continue
        vs = x["vs_student_alone"]
        note = (f"; {100 * x['test_active_fraction']:.1f} % of hidden units active, {100 * x['test_mac_fraction']:.0f}"
                " % of MACs" if "test_active_fraction" in x else "")
        rows.append([DISTILL_LABELS.get(x["variant"], x["variant"]) + note, f"{x['test_auc']:.4f}",
                     f"{x['test_teacher_auc']:.4f}" if "test_teacher_auc" in x else "–",
                     fmt.diff(vs["diff"], vs["diff_se"]), vs["verdict"]])
    teacher = r.get("teacher_gain")
    if teacher:
        rows.append(["the ELEC teacher itself", "–", f"{r['teacher_auc']:.4f}", fmt.diff(teacher["diff"],
                                                                                    teacher["diff_se"]),
                     teacher["verdict"]])
    out = fmt.table(["variant", "student test AUC", "teacher test AUC", "vs student alone ± SE",
                     "verdict (bar 0)"], rows)
    sweep = r.get("inference_only_sparsity") or []
    if sweep:
        out += "\nThe same top-k rule at inference only, over the dense distilled student (first seed):\n\n"
        out += fmt.table(
            ["nucleus mass", "test AUC", "hidden units kept by the mask", "MLP multiply-adds on non-zero inputs"],
            [["1 (no mask)" if x["mass"] >= 1 else f"{x['mass']:g}", f"{x['test_auc']:.5f}",
              "all" if x["mass"] >= 1 else f"{100 * x['active_fraction']:.0f} %", f"{100 * x['mac_fraction']:.0f} %"]
             for x in sweep])
    cost = r.get("inference_per_1000")
    if cost:
        out += (f"\nInference per 1,000 test samples, one batch, {cost['threads']} threads (first seed): distilled "
                f"student {cost['student_ms']:.1f} ms, student alone {cost['student_alone_ms']:.1f} ms "
                f"({cost['student_params']:,} vs {cost['student_alone_params']:,} parameters), teacher "
                f"{cost['teacher_ms_precomputed_llm']:.1f} ms with its LLM vectors precomputed, and "
                f"{cost['llm_encode_ms'] / 1000:.1f} s for the encoder to encode those samples' texts.\n")
    reused = r.get("reused_runs", 0)
    if reused:
        total = sum(len(x["runs"]) for x in r["rows"])
        out += (f"\n{reused} of the {total} runs were read from artifacts an earlier invocation of the script wrote "
                "with the same experiment configs (the file's `remark` says which).\n")
    return out + fmt.protocol_footer(r, "for every variant", f"{r['experiment']}. ")
