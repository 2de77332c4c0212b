"""HTTP client for /v1/score: sends records in requests of a fixed size over one keep-alive connection
and measures per-request latency."""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx
import numpy as np
from tqdm import tqdm


@dataclass
class ScoreRun:
    probabilities: np.ndarray
    latencies_ms: np.ndarray
    version: str

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q))


def score_over_http(url: str, records: list[dict], per_request: int = 50, timeout: float = 30.0,
                    progress: bool = True) -> ScoreRun:
    probs, lat, version = [], [], ""
    chunks = [records[i:i + per_request] for i in range(0, len(records), per_request)]
    with httpx.Client(base_url=url.rstrip("/"), timeout=timeout) as client:
        for chunk in tqdm(chunks, desc="scoring over HTTP", unit="req", disable=not progress):
            t0 = time.perf_counter()
            resp = client.post("/v1/score", json={"records": chunk})
            lat.append((time.perf_counter() - t0) * 1000)
            if resp.status_code != 200:
                raise RuntimeError(f"HTTP {resp.status_code}: {resp.text}")
            body = resp.json()
            probs.extend(body["probabilities"])
            version = body["version"]
    return ScoreRun(np.asarray(probs), np.asarray(lat), version)


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
