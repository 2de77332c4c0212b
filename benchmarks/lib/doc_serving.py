"""Generated blocks of docs/benchmarks.md: serving (``benchmarks.docs`` registers them)."""

from __future__ import annotations

from benchmarks.lib import docfmt as fmt


def serve_load_onehop() -> str:
    rows, steps = [], []
    for n in (20, 100):
        r = fmt.load(f"serve_load_onehop_{n}")
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
    out = fmt.table(["records / request", "echo p50 ms", "student in the Router, one at a time p50 ms",
                  "student as a deployment p50 ms", "ratio", "in-process forward ms", "bar ms", "bar",
                  "8 clients p50 ms, router / deployment", "8 clients req/s, router / deployment"], rows)
    return out + "\n" + fmt.table(
        ["records / request", "parse", "limits", "validate", "encode", "forward", "respond",
         "inside the Router (mean)", "of it the student (mean)", "student p50 − echo p50"], steps)


def serve_chaos() -> str:
    rows = []
    for name in ("serve_chaos", "serve_chaos_deployment"):
        if not fmt.exists(name):
            continue
        r = fmt.load(name)
        placement = r.get("student_placement", "deployment")  # runs before the option existed: a deployment
        for k in r["kills"]:
            failed = ", ".join(f"{n} × {status}" for status, n in k["failed_by_status"].items())
            rows.append([f"{k['deployment']} (student in {'the Router' if placement == 'router' else 'its own'}"
                         f"{'' if placement == 'router' else ' deployment'})", f"{k['sent']:,}",
                         f"{k['failed']}" + (f" ({failed})" if failed else ""), f"{k['p99_ms_before_kill']:.0f} ms",
                         f"{k['p99_ms']:.0f} ms", f"{k['recovery_s']:.1f} s", r["provenance"]["git_commit"][:7]])
    return fmt.table(["killed", "requests", "failed", "p99 before the kill", "p99 from the kill to full strength",
                   "back to 2 replicas", "commit"], rows)


def _ms(kind: dict) -> str:
    return f"{kind['p50_ms']:.1f} / {kind['p95_ms']:.1f}"


SERVE_LOAD_KINDS = [("student_sequential", "student-only records, one request at a time"),
                    ("student", "student-only records, 8 clients"), ("llm", "LLM-route records, 8 clients"),
                    ("mixed", "test order (mixed), 8 clients")]


def serve_load() -> str:
    """HAProxy ingress (what llmctr ships) against Serve's Python proxy, the same load on a fresh Ray each."""
    r = fmt.load("serve_load")
    base = r["baseline"]
    kinds = [(k, label, r["kinds"][k], base["kinds"][k]) for k, label in SERVE_LOAD_KINDS]
    kinds.append(("serve_echo_floor", "do-nothing FastAPI ingress, one at a time", r["serve_echo_floor"],
                  base["serve_echo_floor"]))
    rows = [[label, _ms(ours), f"{ours['throughput_rps']:.0f}", _ms(theirs), f"{theirs['throughput_rps']:.0f}",
             f"{theirs['p50_ms'] / ours['p50_ms']:.2f}×"] for _, label, ours, theirs in kinds]
    errors = sum(k["errors"] for _, _, a, b in kinds for k in (a, b))
    return fmt.table(["kind", "HAProxy ingress p50 / p95 ms", "req/s", "Python proxy p50 / p95 ms", "req/s",
                      "p50 ratio"], rows) + (
        f"\n{r['kinds']['student']['requests']} requests of {r['per_request']} records per kind (one at a time: "
        f"{r['kinds']['student_sequential']['requests']}), deadline {r['deadline_ms']} ms; {errors} errors in all. "
        f"In process the student's forward on one request takes {r['in_process']['forward_ms']:.2f} ms (encode + "
        f"forward {r['in_process']['encode_and_forward_ms']:.2f} ms).") + fmt.origin(r)


def serve_load_admission() -> str:
    """The LLM path with ``max_llm_inflight: auto`` against no cap, same replicas, same load."""
    r = fmt.load("serve_load_admission")
    base = r["admission_baseline"]["kinds"]

    def llm_rate(kind: dict) -> str:
        return f"{kind['route_records_per_s'].get('llm', 0.0):.1f}"

    rows = [[label, _ms(r["kinds"][k]), f"{r['kinds'][k]['throughput_rps']:.0f}", llm_rate(r["kinds"][k]),
             _ms(base[k]), f"{base[k]['throughput_rps']:.0f}", llm_rate(base[k]),
             f"{base[k]['p50_ms'] / r['kinds'][k]['p50_ms']:.2f}×"]
            for k, label in (("llm", "LLM-route records"), ("mixed", "test order (mixed)"))]
    return fmt.table(["kind, 8 clients", "p50 / p95 ms, auto", "req/s", "LLM answers/s", "p50 / p95 ms, no cap",
                      "req/s", "LLM answers/s", "p50 ratio"], rows) + fmt.origin(r)


def early_exit_ml1m() -> str:
    r, missing = fmt.protocol_result("early_exit_ml1m")
    if missing:
        return missing
    t, v = r["test"], r["valid"]
    tc, vc = t["curve"], v["curve"]
    student = t["student_auc_routed"]

    def row(name: str, test_point: dict, valid_point: dict) -> list[str]:
        return [name, f"{test_point['auc']:.4f}", fmt.signed(test_point["auc"] - student, 4),
                f"{test_point['mean_layers']:.2f}", f"{valid_point['auc']:.4f}", f"{valid_point['mean_layers']:.2f}"]

    rows = [["student alone", f"{student:.4f}", "–", "0", f"{v['student_auc_routed']:.4f}", "0"]]
    rows += [row(f"fixed depth {p['mean_layers']:.0f}", p, q) for p, q in zip(tc["fixed_depths"], vc["fixed_depths"])]
    ee = r["early_exit"]
    rows.append(row(f"adaptive thresholds {[round(x, 4) for x in ee['adaptive_thresholds'][:-1]]}", tc["adaptive"],
                    vc["adaptive"]))
    rows.append(row(f"**shipped** ({ee['shipped']})", tc["shipped"], vc["shipped"]))
    g, f, tm = r["routed_gain"], r["fit"], r["timing"]
    return fmt.table(["on routed rows", "test AUC", "− student", "mean layers (test)", "valid AUC",
                      "mean layers (valid)"], rows) + (
        f"\nRouted: {t['routed_rows']:,} of {t['rows']:,} test rows ({100 * t['fraction_routed']:.1f} %: student "
        f"probability in {r['routing_band'][0]}–{r['routing_band'][1]} or an unseen user / movie); validation: "
        f"{v['routed_rows']:,} of the {v['calibration_sample_rows']:,}-row calibration sample. **Routed gain "
        f"(graph − student on routed rows): {fmt.diff(g['diff'], g['se'])}** (paired bootstrap over the rows, one "
        f"head). All test rows: student {t['student_auc_all']:.5f}, graph {t['graph_auc_all']:.5f}. "
        f"Adaptive beats the fixed depths at its mean depth: {'yes' if ee['adaptive_beats_fixed'] else 'no'} on "
        f"validation, {'yes' if ee['adaptive_beats_fixed_on_test'] else 'no'} on test. Head fitted on "
        f"{f['rows']:,} {f['split']} rows, {f['epochs']} epoch, {f['rows_per_s']:.1f} rows/s, "
        f"{f['wall_seconds'] / 60:.0f} min on the CPUs; context from {r['context_source']}. Real early exit on "
        f"{tm['records']} routed records: {tm['speedup']:.2f}× faster than full depth "
        f"({tm['full_depth_rows_per_s']:.0f} rows/s at full depth). {fmt.provenance(r)}.\n")
