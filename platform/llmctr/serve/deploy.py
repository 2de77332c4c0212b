"""Deploying the scoring graph from Python (CLI, demo, benchmarks, tests); ``serve run serve_configs/*.yaml``
deploys the same application from YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray import serve

from llmctr import storage
from llmctr.serve.graph import scoring_graph

APP_NAME = "llmctr"


def deploy(student_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, *,
           retriever_dir: str | Path | None = None, head_dir: str | Path | None = None,
           router_config: dict[str, Any] | None = None, student_config: dict[str, Any] | None = None,
           head_config: dict[str, Any] | None = None, num_replicas: int = 1,
           max_replicas_per_node: int | None = None) -> str:
    """Start Serve's HTTP proxy (if needed) and run the graph; return its base URL.

    ``router_config`` / ``student_config`` / ``head_config``: the deployments' ``user_config`` (routing band and
    deadline, max_records; batching, threads; thresholds). ``num_replicas`` and ``max_replicas_per_node`` apply to
    the router and the student (``max_replicas_per_node=1`` spreads them so one node's loss leaves the others)."""
    serve.start(http_options={"host": host, "port": port})
    spread = {"num_replicas": num_replicas,
              **({"max_replicas_per_node": max_replicas_per_node} if max_replicas_per_node else {})}
    options = {"Router": {**spread, **({"user_config": router_config} if router_config else {})},
               "DistilledScorer": {**spread, **({"user_config": student_config} if student_config else {})},
               "EarlyExitHead": {"user_config": head_config} if head_config else {}}
    app = scoring_graph(_location(student_dir), _location(retriever_dir), _location(head_dir), options)
    serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
    return f"http://{host}:{port}"


def _location(path: str | Path | None) -> str | None:
    if path is None:
        return None
    return str(path) if storage.is_uri(path) else str(Path(path).resolve())
