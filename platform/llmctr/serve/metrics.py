"""Prometheus metrics of the scoring graph, served by the router at ``GET /metrics`` (one registry per router
replica: scrape every replica, or sum over them).

- ``llmctr_route_latency_seconds{route}``: per request, the time of each path it took — ``student`` (the student
  scored the request), ``llm`` (retriever + LLM head, when it answered in time), ``fallback`` (the LLM path that
  was late or failed, until it was given up);
- ``llmctr_request_latency_seconds``: whole requests, inside the router;
- ``llmctr_records_total{route}``: records answered per route;
- ``llmctr_exit_depth``: encoder layers the LLM head ran per record it scored;
- ``llmctr_fallback_total{reason}``: LLM-path records answered by the student instead (``deadline`` / ``error``,
  or ``shed``: not sent, the LLM path was at its ``max_llm_records`` / ``max_llm_inflight`` cap);
- ``llmctr_retries_total{deployment}``: calls sent again because their replica was lost (serve/limits.py);
- ``llmctr_failed_requests_total{reason}``: requests answered 504 (``timeout``) or 503 (``unavailable``).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5,
                   0.75, 1.0, 2.0, 5.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class GraphMetrics:
    def __init__(self, max_depth: int = 32):
        self.registry = CollectorRegistry()
        self.route_latency = Histogram("llmctr_route_latency_seconds", "Time of each path a request took",
                                       ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.request_latency = Histogram("llmctr_request_latency_seconds", "Whole /v1/score requests in the router",
                                         buckets=LATENCY_BUCKETS, registry=self.registry)
        self.records = Counter("llmctr_records_total", "Records answered, by route", ["route"],
                               registry=self.registry)
        self.exit_depth = Histogram("llmctr_exit_depth", "Encoder layers the LLM head ran per record",
                                    buckets=tuple(range(1, max_depth + 1)), registry=self.registry)
        self.fallbacks = Counter("llmctr_fallback_total", "LLM-path records answered by the student instead",
                                 ["reason"], registry=self.registry)
        self.retries = Counter("llmctr_retries_total", "Calls sent again after their replica was lost",
                               ["deployment"], registry=self.registry)
        self.failures = Counter("llmctr_failed_requests_total", "Requests answered 503 or 504", ["reason"],
                                registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
