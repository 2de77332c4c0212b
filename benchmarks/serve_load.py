"""A bounded load test of the scoring graph on localhost (fixed number of requests, concurrent clients), with the
student's in-process cost on the same batch size measured in the same run.

Requests are built from test records so that each kind exercises one route: ``student`` (every record outside the
routing band with ids seen in training: the student answers alone), ``llm`` (every record inside the band or with
an unseen id: retriever + early-exit head), and ``mixed`` (records in test-split order); ``student_sequential`` is
the student kind one request at a time, and ``serve_echo_floor`` a do-nothing ingress on the same bodies (what
Serve itself costs here). Per kind: p50/p95/p99 latency, throughput, errors (non-200 answers and
transport failures), the route mix the graph reported, and the graph's own Prometheus counters.

Both HTTP ingress paths run side by side in one invocation, each on a fresh local Ray (the choice is an
environment variable of the Ray processes): ``haproxy`` (what llmctr ships, ``llmctr.runtime``) gives the
top-level figures, ``python-proxy`` (Serve's default) goes under ``baseline`` with the ratios.

Writes benchmarks/results/serve_load.json. Usage:
    python -m benchmarks.serve_load --student models/ml1m_dcnv2_elec [--retriever retrievers/ml1m_lightgcn]
        [--head llm_heads/ml1m_minilm] [--requests 600] [--concurrency 8] [--per-request 20]
        [--ingress both|haproxy|python-proxy] [--max-llm-records N] [--max-llm-inflight N|auto]

With an admission cap (``--max-llm-records`` / ``--max-llm-inflight``, routing.py), the graph serves every kind
with the cap, then the ``llm`` and ``mixed`` kinds again on the same deployment reconfigured without it
(``admission_baseline``): what shedding buys under load, side by side.
"""

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from benchmarks.lib.common import write_result
from llmctr.data.feature_map import raw_records
from llmctr.models.ctr_model import sigmoid
from llmctr.runtime import ingress_mode, init_ray, setup_logging
from llmctr.serve.client import wait_healthy
from llmctr.serve.routing import RoutingConfig, cold_start_mask, inflight_cap, llm_route_mask
from llmctr.serve.schemas import GraphScoreResponse, RecordScore, ScoreRequest
from llmctr.serve.scorer import Scorer
from llmctr.storage import resolve_artifact_path

log = logging.getLogger("bench")


def request_sets(scorer: Scorer, data_dir: Path, routing: RoutingConfig, per_request: int, n: int
                 ) -> dict[str, list[list[dict]]]:
    frame = pd.read_parquet(data_dir / "test")
    records = raw_records(frame, scorer.fmap)
    encoded = scorer.encode(records)
    probs = sigmoid(scorer.logits(encoded))
    cold = cold_start_mask(encoded, [f for f in routing.cold_fields if f in encoded])
    routed = llm_route_mask(probs, cold, routing)
    pools = {"student": [r for r, u in zip(records, routed) if not u], "llm": [r for r, u in zip(records, routed) if u],
             "mixed": records}
    out = {}
    for kind, pool in pools.items():
        if len(pool) < per_request:
            continue
        out[kind] = [[pool[(i * per_request + j) % len(pool)] for j in range(per_request)] for i in range(n)]
    return out


async def run_load(url: str, bodies: list[list[dict]], concurrency: int) -> dict:
    latencies, errors, routes, queue = [], 0, {}, asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while not queue.empty():
            body = queue.get_nowait()
            t0 = time.perf_counter()
            try:
                resp = await client.post("/v1/score", json={"records": body})
            except httpx.HTTPError:
                errors += 1
                continue
            latencies.append((time.perf_counter() - t0) * 1000)
            if resp.status_code != 200:
                errors += 1
                continue
            for result in resp.json()["results"]:
                routes[result["route"]] = routes.get(result["route"], 0) + 1

    t0 = time.perf_counter()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    lat = np.asarray(latencies)
    return {"requests": len(bodies), "errors": errors, "routes": routes, "wall_seconds": wall,
            "route_records_per_s": {route: count / wall for route, count in routes.items()},
            "throughput_rps": len(lat) / wall, "records_per_s": len(lat) * len(bodies[0]) / wall,
            **{f"p{q}_ms": float(np.percentile(lat, q)) for q in (50, 95, 99)}}


def in_process_ms(scorer: Scorer, bodies: list[list[dict]], repeats: int = 200) -> dict:
    """The student on one request's records in this process: forward only, and encode + forward."""
    encoded = [scorer.encode(b) for b in bodies[:repeats]]
    forward, full = [], []
    for body, enc in zip(bodies[:repeats], encoded):
        t0 = time.perf_counter()
        scorer.logits(enc)
        forward.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        scorer.score(body)
        full.append((time.perf_counter() - t0) * 1000)
    return {"forward_ms": statistics.median(forward), "encode_and_forward_ms": statistics.median(full)}


def echo_floor(port: int, bodies: list[list[dict]]) -> dict:
    """Serve's own cost on this machine: a FastAPI ingress that parses the same bodies and answers a response of
    the same shape without scoring (proxy + one replica hop + JSON), sequential requests."""
    from fastapi import FastAPI
    from ray import serve

    api = FastAPI()

    @serve.deployment(ray_actor_options={"num_cpus": 0.25})
    @serve.ingress(api)
    class Echo:
        @api.post("/v1/score", response_model=GraphScoreResponse)
        async def score(self, body: ScoreRequest) -> GraphScoreResponse:
            n = len(body.records)
            return GraphScoreResponse(model="echo", version="0", probabilities=[0.5] * n,
                                      results=[RecordScore(probability=0.5, route="student")] * n)

    serve.run(Echo.bind(), name="echo", route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url)
        asyncio.run(run_load(url, bodies[:20], 1))
        return asyncio.run(run_load(url, bodies, 1))
    finally:
        serve.delete("echo")


def wait_ready(url: str, timeout: float = 60) -> None:
    """Until the ingress on ``url`` answers (HAProxy picks up a new replica a moment after Serve reports it)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.post(f"{url}/v1/score", json={"records": []}, timeout=5).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def scrape(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    keep = ("llmctr_records_total", "llmctr_fallback_total", "llmctr_exit_depth_sum", "llmctr_exit_depth_count")
    out = {}
    for line in text.splitlines():
        if line.startswith(keep):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


INGRESS_KEYS = ("RAY_SERVE_ENABLE_HA_PROXY", "RAY_SERVE_THROUGHPUT_OPTIMIZED",
                "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", default="models/ml1m_dcnv2_elec")
    parser.add_argument("--retriever")
    parser.add_argument("--head")
    parser.add_argument("--data", default="data/ml1m", help="prepared dataset (relative to the artifacts root)")
    parser.add_argument("--requests", type=int, default=600, help="requests per kind")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--sequential", type=int, default=300, help="student-only requests sent one at a time")
    parser.add_argument("--per-request", type=int, default=20)
    parser.add_argument("--band", type=float, nargs=2, default=(0.4, 0.6))
    parser.add_argument("--deadline-ms", type=float, default=500)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--out", default="serve_load")
    parser.add_argument("--ingress", choices=("both", "haproxy", "python-proxy"), default="both",
                        help="HTTP ingress to measure; both = each on a fresh Ray, side by side")
    parser.add_argument("--max-llm-records", type=int, help="routing.max_llm_records (per request)")
    parser.add_argument("--max-llm-inflight", type=inflight_cap,
                        help="routing.max_llm_inflight (per router replica): a number or auto")
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def measure(args: argparse.Namespace) -> dict:
    """Every kind of load against the graph on this process's (fresh, local) Ray, plus the echo floor."""
    from ray import serve

    from llmctr.data import resolve_prepared
    from llmctr.serve.deploy import APP_NAME, deploy

    routing = RoutingConfig(band=tuple(args.band), deadline_ms=args.deadline_ms, cold_fields=["user_id", "movie_id"])
    scorer = Scorer.load(resolve_artifact_path(args.student))
    bodies = request_sets(scorer, Path(resolve_prepared(resolve_artifact_path(args.data))), routing, args.per_request,
                          args.requests)
    caps = admission_caps(args)

    def deploy_graph(caps: dict) -> str:
        return deploy(resolve_artifact_path(args.student), port=args.port,
                      retriever_dir=resolve_artifact_path(args.retriever) if args.retriever else None,
                      head_dir=resolve_artifact_path(args.head) if args.head else None,
                      router_config={"routing": {"band": list(args.band), "deadline_ms": args.deadline_ms,
                                                 "cold_fields": routing.cold_fields, **caps}})

    init_ray()
    url = deploy_graph(caps)
    sequential = bodies["student"][:args.sequential]
    uncapped = None
    try:
        wait_healthy(url, timeout=180)
        asyncio.run(run_load(url, bodies["mixed"][:20], args.concurrency))  # warm-up
        kinds = {kind: asyncio.run(run_load(url, b, args.concurrency)) for kind, b in bodies.items()
                 if kind != "llm" or args.head}
        kinds["student_sequential"] = asyncio.run(run_load(url, sequential, 1))
        graph_metrics = scrape(url)
        if caps and args.head:
            deploy_graph({})  # the same replicas, reconfigured in place without the cap
            time.sleep(2)
            uncapped = {kind: asyncio.run(run_load(url, bodies[kind], args.concurrency))
                        for kind in ("llm", "mixed") if kind in bodies}
        serve.delete(APP_NAME)
        echo = echo_floor(args.port, sequential)
    finally:
        serve.shutdown()
    out = {"ingress": ingress_mode(), "serve_env": {k: os.environ[k] for k in INGRESS_KEYS if k in os.environ},
           "admission": caps or None, "kinds": kinds, "serve_echo_floor": echo,
           "errors": sum(k["errors"] for k in kinds.values()),
           "graph_metrics": graph_metrics, "in_process": in_process_ms(scorer, bodies["student"])}
    if uncapped is not None:
        out["admission_baseline"] = {"admission": None, "kinds": uncapped,
                                     "errors": sum(k["errors"] for k in uncapped.values())}
        out["errors"] += out["admission_baseline"]["errors"]
        out["admission_p50_ratio_uncapped_over_capped"] = {
            kind: uncapped[kind]["p50_ms"] / kinds[kind]["p50_ms"] for kind in uncapped}
    return out


def admission_caps(args: argparse.Namespace) -> dict:
    return {k: v for k, v in (("max_llm_records", args.max_llm_records), ("max_llm_inflight", args.max_llm_inflight))
            if v is not None}


def run_child(argv: list[str], ingress: str) -> dict:
    """``measure`` in a fresh process whose Ray starts with ``ingress``'s environment."""
    env = {k: v for k, v in os.environ.items() if k not in INGRESS_KEYS and k != "LLMCTR_SERVE_FAST_INGRESS"}
    if ingress == "python-proxy":
        env["LLMCTR_SERVE_FAST_INGRESS"] = "0"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        # the same module, from the same working directory (where ``python -m benchmarks.serve_load`` found it)
        cmd = [sys.executable, "-m", "benchmarks.serve_load", *argv, "--ingress", ingress, "--child-out", str(out)]
        subprocess.run(cmd, env=env, check=True)
        return json.loads(out.read_text())


def _strip_ingress(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--ingress":
            skip = True
        elif not a.startswith("--ingress="):
            out.append(a)
    return out


def summary(run: dict) -> dict:
    target = 1.5 * run["in_process"]["forward_ms"] + 5.0
    return {**run, "student_p50_target_ms": target,
            "student_p50_within_target": run["kinds"]["student"]["p50_ms"] <= target,
            "student_sequential_p50_within_target": run["kinds"]["student_sequential"]["p50_ms"] <= target}


def ratios(shipped: dict, baseline: dict) -> dict:
    """baseline / shipped p50 per kind (> 1: the shipped ingress is faster)."""
    both = [*shipped["kinds"].items(), ("serve_echo_floor", shipped["serve_echo_floor"])]
    base = {**baseline["kinds"], "serve_echo_floor": baseline["serve_echo_floor"]}
    return {kind: base[kind]["p50_ms"] / k["p50_ms"] for kind, k in both if kind in base}


def main() -> None:
    args = parse_args()
    setup_logging()
    if args.ingress != "both" and args.child_out:
        Path(args.child_out).write_text(json.dumps(measure(args)))
        return
    if args.ingress == "both":
        argv = _strip_ingress(sys.argv[1:])
        shipped, baseline = run_child(argv, "haproxy"), run_child(argv, "python-proxy")
    else:
        shipped, baseline = run_child(_strip_ingress(sys.argv[1:]), args.ingress), None
    payload = {"student": args.student, "retriever": args.retriever, "head": args.head,
               "per_request": args.per_request, "concurrency": args.concurrency, "band": args.band,
               "deadline_ms": args.deadline_ms, **admission_caps(args), **summary(shipped),
               "notes": "kinds: student = records neither unsure nor cold (the student answers alone), llm = unsure "
                        "or cold records, mixed = test order; each at the given concurrency; student_sequential = "
                        "the student kind, one request at a time. serve_echo_floor: a do-nothing FastAPI ingress "
                        "on the same bodies, sequential (the ingress + one hop + JSON on this machine). Top level: "
                        "the ingress llmctr ships (ingress); baseline: Serve's default Python proxy, measured in "
                        "the same invocation on a fresh Ray; p50_ratio_baseline_over_shipped > 1 = shipped faster."}
    if baseline is not None:
        payload["baseline"] = summary(baseline)
        payload["p50_ratio_baseline_over_shipped"] = ratios(shipped, baseline)
        payload["errors"] = shipped["errors"] + baseline["errors"]
    path = write_result(args.out, payload)
    print(f"wrote {path}")
    for name, run in [("shipped", shipped), ("baseline", baseline)]:
        if run is None:
            continue
        print(f"--- {name}: ingress {run['ingress']}")
        uncapped = [(f"{kind} (no cap)", k) for kind, k in run.get("admission_baseline", {}).get("kinds", {}).items()]
        for kind, k in [*run["kinds"].items(), *uncapped, ("echo", run["serve_echo_floor"])]:
            print(f"{kind:>18}: p50 {k['p50_ms']:.1f} ms  p95 {k['p95_ms']:.1f}  p99 {k['p99_ms']:.1f}  "
                  f"{k['throughput_rps']:.0f} req/s  errors {k['errors']}  routes {k['routes']}")
        inproc = run["in_process"]
        print(f"in process: forward {inproc['forward_ms']:.2f} ms, encode+forward "
              f"{inproc['encode_and_forward_ms']:.2f} ms; student p50 target {1.5 * inproc['forward_ms'] + 5:.1f} ms")


if __name__ == "__main__":
    main()
