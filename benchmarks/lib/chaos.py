"""Steady HTTP load on the scoring graph while something happens to it (a replica killed), for the fault test and
benchmarks/serve_chaos.py: every request's start, latency and status is kept."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import numpy as np

APP = "llmctr"


def replica_pids(deployment: str, app: str = APP) -> list[int]:
    """The live replica processes of one deployment of the app (Ray's state API, asked at this driver's cluster:
    with another Ray running on the machine, auto-detection refuses to pick one)."""
    import ray
    from ray.util.state import list_actors

    actors = list_actors(address=ray.get_runtime_context().gcs_address, filters=[("state", "=", "ALIVE")],
                         limit=10_000)
    return sorted(a.pid for a in actors if a.class_name == f"ServeReplica:{app}:{deployment}")


def kill_one(deployment: str) -> int:
    """SIGKILL one replica process of ``deployment``; its pid."""
    pid = replica_pids(deployment)[0]
    os.kill(pid, signal.SIGKILL)
    return pid


@dataclass
class Traffic:
    """One record per request: (start s since the load began, latency s, HTTP status or the client error's name)."""

    started: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    status: list[int | str] = field(default_factory=list)
    events: dict[str, float] = field(default_factory=dict)

    def counts(self) -> Counter:
        return Counter(self.status)

    def failed(self) -> dict[str, int]:
        return {str(k): v for k, v in self.counts().items() if k != 200}

    def p99_ms(self, start: float, stop: float) -> float | None:
        lat = [lat for t, lat in zip(self.started, self.latency) if start <= t <= stop]
        return float(np.percentile(lat, 99) * 1000) if lat else None


def steady_load(url: str, records: list[dict], seconds: float, clients: int = 4, per_request: int = 5,
                events: list[tuple[float, str, Callable[[], object]]] = ()) -> Traffic:
    """``clients`` threads posting ``per_request`` records to ``/v1/score`` for ``seconds``; each event
    ``(at, name, fn)`` runs ``at`` seconds in (its time kept in ``events``)."""
    out, lock = Traffic(), threading.Lock()
    t0 = time.perf_counter()
    stop = t0 + seconds

    def client(k: int) -> None:
        with httpx.Client(timeout=60) as http:
            i = k * per_request
            while time.perf_counter() < stop:
                body = {"records": [records[(i + j) % len(records)] for j in range(per_request)]}
                start = time.perf_counter()
                try:
                    resp = http.post(f"{url}/v1/score", json=body)
                    status: int | str = resp.status_code
                    if status == 503 and not resp.headers.get("retry-after"):
                        status = "503-without-retry-after"
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                with lock:
                    out.started.append(start - t0)
                    out.latency.append(time.perf_counter() - start)
                    out.status.append(status)
                i += per_request * clients

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    for at, name, fn in sorted(events, key=lambda e: e[0]):
        time.sleep(max(0.0, t0 + at - time.perf_counter()))
        out.events[name] = time.perf_counter() - t0
        fn()
    for t in threads:
        t.join()
    return out


def wait_replicas(deployment: str, count: int, not_pid: int | None = None, timeout: float = 120) -> float:
    """Seconds until ``deployment`` has ``count`` live replicas again (none of them ``not_pid``)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        pids = replica_pids(deployment)
        if len(pids) >= count and not_pid not in pids:
            return time.perf_counter() - t0
        time.sleep(0.25)
    raise TimeoutError(f"{deployment} did not get back to {count} replicas in {timeout:.0f} s")
