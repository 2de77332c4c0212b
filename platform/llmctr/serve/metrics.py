"""Metrics of the scoring graph, each recorded twice by the router:

- through ``ray.serve.metrics``, so Ray's Prometheus export (every node's metrics agent, what Ray's dashboards and
  a Prometheus scraping the cluster read) has them summed over replicas, tagged with the deployment, replica and
  application; Ray prefixes the names with ``ray_`` (``ray_llmctr_records_total``);
- in a registry of its own, served at ``GET /metrics`` for direct scraping; that page is one router replica's (its
  ``llmctr_replica_info`` names which), so scrape every replica or read Ray's export.

The metrics:

- ``llmctr_route_latency_seconds{route}``: per request, the time of each path it took — ``student`` (the student
  scored the request), ``llm`` (retriever + LLM head, when it answered in time), ``fallback`` (the LLM path that
  was late or failed, until it was given up);
- ``llmctr_request_latency_seconds``: whole requests, inside the router;
- ``llmctr_records_total{route}``: records answered per route;
- ``llmctr_exit_depth``: encoder layers the LLM head ran per record it scored;
- ``llmctr_fallback_total{reason}``: LLM-path records answered by the student instead (``deadline`` / ``error``,
  or ``shed``: not sent, the LLM path was at its ``max_llm_records`` / ``max_llm_inflight`` cap);
- ``llmctr_retries_total{deployment}``: calls sent again because their replica was lost (serve/limits.py); in
  Ray's export the label is ``callee`` (Serve reserves ``deployment`` for the replica's own);
- ``llmctr_failed_requests_total{reason}``: requests answered 504 (``timeout``) or 503 (``unavailable``);
- ``llmctr_entity_text_encodes_total`` / ``llmctr_entity_text_cache_hits_total``: records whose candidate was unseen
  in training, scored with their own text's vector, that text encoded for them / found in the student's cache.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, Info, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5,
                   0.75, 1.0, 2.0, 5.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class _Labelled:
    """One metric (or one label value of it), recorded in the replica's own registry and in Ray's metrics (when this
    process is a Ray worker)."""

    __slots__ = ("local", "ray_metric", "tags")

    def __init__(self, local: Any, ray_metric: Any, tags: dict[str, str] | None):
        self.local, self.ray_metric, self.tags = local, ray_metric, tags

    def inc(self, amount: float = 1.0) -> None:
        self.local.inc(amount)
        if self.ray_metric is not None and amount:
            self.ray_metric.inc(amount, tags=self.tags)

    def observe(self, value: float) -> None:
        self.local.observe(value)
        if self.ray_metric is not None:
            self.ray_metric.observe(value, tags=self.tags)


class _Both(_Labelled):
    """A metric with at most one label: ``labels(value)`` gives that value's series in both places."""

    __slots__ = ("label",)

    def __init__(self, local: Any, ray_metric: Any, label: str | None):
        super().__init__(local, ray_metric, None)
        self.label = label

    def labels(self, value: str) -> _Labelled:
        return _Labelled(self.local.labels(value), self.ray_metric, {self.label: value})


def _ray_metrics() -> Any | None:
    """``ray.serve.metrics`` inside a Ray worker (a Serve replica); None elsewhere (unit tests, plain scripts)."""
    try:
        import ray

        if not ray.is_initialized():
            return None
        from ray.serve import metrics
    except ImportError:
        return None
    return metrics


class GraphMetrics:
    def __init__(self, max_depth: int = 32, replica: str | None = None):
        self.registry = CollectorRegistry()
        ray_metrics = _ray_metrics()

        def counter(name: str, doc: str, label: str | None = None, ray_tag: str | None = None) -> _Both:
            """``ray_tag``: the label's name in Ray's export where Serve reserves it (``deployment``)."""
            local = Counter(name, doc, [label] if label else [], registry=self.registry)
            tag = ray_tag or label
            remote = (ray_metrics.Counter(name.removesuffix("_total"), doc, tag_keys=(tag,) if tag else None)
                      if ray_metrics else None)
            return _Both(local, remote, tag)

        def histogram(name: str, doc: str, buckets: tuple, label: str | None = None) -> _Both:
            local = Histogram(name, doc, [label] if label else [], buckets=buckets, registry=self.registry)
            remote = (ray_metrics.Histogram(name, doc, boundaries=list(buckets), tag_keys=(label,) if label else None)
                      if ray_metrics else None)
            return _Both(local, remote, label)

        self.route_latency = histogram("llmctr_route_latency_seconds", "Time of each path a request took",
                                       LATENCY_BUCKETS, "route")
        self.request_latency = histogram("llmctr_request_latency_seconds", "Whole /v1/score requests in the router",
                                         LATENCY_BUCKETS)
        self.records = counter("llmctr_records_total", "Records answered, by route", "route")
        self.exit_depth = histogram("llmctr_exit_depth", "Encoder layers the LLM head ran per record",
                                    tuple(range(1, max_depth + 1)))
        self.fallbacks = counter("llmctr_fallback_total", "LLM-path records answered by the student instead", "reason")
        self.retries = counter("llmctr_retries_total", "Calls sent again after their replica was lost",
                               "deployment", ray_tag="callee")
        self.failures = counter("llmctr_failed_requests_total", "Requests answered 503 or 504", "reason")
        self.text_encodes = counter("llmctr_entity_text_encodes_total", "Unseen candidates' own texts encoded")
        self.text_hits = counter("llmctr_entity_text_cache_hits_total",
                                 "Unseen candidates' own text vectors found in the cache")
        Info("llmctr_replica", "The router replica whose registry this page shows",
             registry=self.registry).info({"replica": replica or _replica_id()})

    def count_texts(self, texts: dict[str, int] | None) -> None:
        """A student answer's cold-start texts (``student.score_requests``: ``encoded`` now, ``cached``)."""
        self.text_encodes.inc((texts or {}).get("encoded", 0))
        self.text_hits.inc((texts or {}).get("cached", 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _replica_id() -> str:
    try:
        from ray import serve

        return serve.get_replica_context().replica_id.unique_id
    except Exception:  # noqa: BLE001 (not in a Serve replica)
        return "local"
