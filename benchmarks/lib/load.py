"""What the serving benchmarks share: request bodies per route kind from a prepared test split, a bounded load of
concurrent HTTP clients, the student's in-process cost (whole, and step by step as the Router takes it), and
Serve's echo floor (a do-nothing ingress on the same bodies).

(No ``from __future__ import annotations`` here: the echo floor's FastAPI route must see its annotations as classes.)
"""

import asyncio
import json
import statistics
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from llmctr.data.records import raw_records
from llmctr.models.ctr_model import sigmoid
from llmctr.serve.limits import long_string
from llmctr.serve.routing import RoutingConfig, cold_start_mask, llm_route_mask
from llmctr.serve.schemas import GraphScoreResponse, RecordScore, ScoreRequest
from llmctr.serve.scorer import Scorer


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


def breakdown_ms(scorer: Scorer, bodies: list[list[dict]], repeats: int = 200) -> dict:
    """Where one student request's milliseconds go inside a Router, step by step, in this process (median per
    step): the body parsed by pydantic, the string-length check, the records' validation, encoding, the forward,
    and the answer's objects built and serialised (``respond``; the echo floor builds a cheaper answer)."""
    steps: dict[str, list[float]] = {k: [] for k in ("parse", "limits", "validate", "encode", "forward", "respond")}

    def timed(step: str, fn, *args):
        t0 = time.perf_counter()
        out = fn(*args)
        steps[step].append((time.perf_counter() - t0) * 1000)
        return out

    for body in bodies[:repeats]:
        raw = json.dumps({"records": body})
        records = timed("parse", ScoreRequest.model_validate_json, raw).records
        timed("limits", long_string, records, 4096)
        timed("validate", scorer.validate, records)
        encoded = timed("encode", scorer.encode, records)
        probs = sigmoid(timed("forward", scorer.logits, encoded))
        timed("respond", lambda p: GraphScoreResponse(
            model="m", version="v", probabilities=p.tolist(),
            results=[RecordScore(probability=x, route="student") for x in p]).model_dump_json(), probs)
    out = {step: statistics.median(v) for step, v in steps.items()}
    return {**out, "total": sum(out.values())}


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
    keep = ("llmctr_records_total", "llmctr_fallback_total", "llmctr_exit_depth_sum", "llmctr_exit_depth_count",
            "llmctr_request_latency_seconds_sum", "llmctr_request_latency_seconds_count",
            'llmctr_route_latency_seconds_sum{route="student"}', 'llmctr_route_latency_seconds_count{route="student"}')
    out = {}
    for line in text.splitlines():
        if line.startswith(keep):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def in_router_ms(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Mean milliseconds inside the Router between two scrapes of its /metrics: whole requests (``request``: from
    the validated body to the answer object) and the student's part of them (``student``: records to logits)."""
    def mean(name: str, labels: str = "") -> float:
        count = after[f"{name}_count{labels}"] - before.get(f"{name}_count{labels}", 0.0)
        return 1000 * (after[f"{name}_sum{labels}"] - before.get(f"{name}_sum{labels}", 0.0)) / max(count, 1.0)

    return {"request": mean("llmctr_request_latency_seconds"),
            "student": mean("llmctr_route_latency_seconds", '{route="student"}')}
