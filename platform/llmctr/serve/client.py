"""HTTP client for /v1/score: sends records in requests of a fixed size over one keep-alive connection
and measures per-request latency."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import httpx
import numpy as np
from tqdm import tqdm

from llmctr.runtime import progress_off


@dataclass
class ScoreRun:
    probabilities: np.ndarray
    latencies_ms: np.ndarray
    version: str
    routes: list[str] = field(default_factory=list)  # per record (the graph's answer; "student" for a plain app)
    exit_depths: list[int | None] = field(default_factory=list)
    request_routes: list[str] = field(default_factory=list)  # per request: "llm" if any record left the student

    def percentile(self, q: float, route: str | None = None) -> float:
        lat = self.latencies_ms
        if route is not None:
            lat = lat[np.asarray(self.request_routes) == route]
        return float(np.percentile(lat, q)) if len(lat) else float("nan")


def score_over_http(url: str, records: list[dict], per_request: int = 50, timeout: float = 30.0,
                    progress: bool = True) -> ScoreRun:
    return score_stream(url, [records], per_request, timeout, progress, total=len(records))


def score_stream(url: str, batches: Iterable[list[dict]], per_request: int = 50, timeout: float = 30.0,
                 progress: bool = True, total: int | None = None) -> ScoreRun:
    """Score ``batches`` of records (any iterable: a large split is read a batch at a time, never held whole),
    ``per_request`` records per request, one request at a time; ``total`` records for the progress bar."""
    probs, lat, version, routes, depths, request_routes = [], [], "", [], [], []
    bar = tqdm(total=total, desc="scoring over HTTP", unit="rec", disable=progress_off(progress))
    with httpx.Client(base_url=url.rstrip("/"), timeout=timeout) as client, bar:
        for records in batches:
            for start in range(0, len(records), per_request):
                chunk = records[start:start + per_request]
                t0 = time.perf_counter()
                resp = client.post("/v1/score", json={"records": chunk})
                lat.append((time.perf_counter() - t0) * 1000)
                if resp.status_code != 200:
                    raise RuntimeError(f"HTTP {resp.status_code}: {resp.text}")
                body = resp.json()
                probs.extend(body["probabilities"])
                version = body["version"]
                results = body.get("results") or [{"route": "student", "exit_depth": None}] * len(chunk)
                routes.extend(r["route"] for r in results)
                depths.extend(r["exit_depth"] for r in results)
                request_routes.append("student" if all(r["route"] == "student" for r in results) else "llm")
                bar.update(len(chunk))
    return ScoreRun(np.asarray(probs), np.asarray(lat), version, routes, depths, request_routes)


def wait_healthy(url: str, timeout: float = 60.0) -> dict:
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            resp = httpx.get(url.rstrip("/") + "/healthz", timeout=2.0)
            if resp.status_code == 200:
                return resp.json()
            last = resp.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.5)
    raise TimeoutError(f"{url} not healthy after {timeout}s (last: {last})")
