"""Deploying the scoring graph from Python (CLI, demo, benchmarks, tests) the way ``serve deploy`` does: a Serve
config (what ``serve_configs/*.yaml`` hold) applied declaratively through the dashboard, so that deploying again
with only ``user_config`` changed (routing band, deadline, a new student's ``model_dir``, thresholds) reconfigures
the live replicas in place: no restart, no failed request."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from ray import serve

from llmctr import storage
from llmctr.serve.student import check_placement

log = logging.getLogger(__name__)
APP_NAME = "llmctr"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def graph_config(student_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, *,
                 retriever_dir: str | Path | None = None, head_dir: str | Path | None = None,
                 router_config: dict[str, Any] | None = None, student_config: dict[str, Any] | None = None,
                 head_config: dict[str, Any] | None = None, num_replicas: int = 1,
                 max_replicas_per_node: int | None = None, history: dict[str, Any] | bool | None = None,
                 student_placement: str = "router") -> dict[str, Any]:
    """The graph's Serve config. ``router_config`` / ``student_config`` / ``head_config``: the deployments'
    ``user_config`` (routing band and deadline, max_records; model_dir, threads, and for a student deployment its
    batching; thresholds). ``student_placement``: ``router`` (the student runs inside the Router replicas, its
    ``student_config`` under the Router's ``user_config.student``) or ``deployment`` (the DistilledScorer).
    ``num_replicas`` and ``max_replicas_per_node`` apply to the router and the student (``max_replicas_per_node=1``
    spreads them so one node's loss leaves the others). ``history``: the history store's arguments
    (``events_log``, ``start_empty``) or False (default: deployed when the student has a ``user_history.json``)."""
    spread = {"num_replicas": num_replicas,
              **({"max_replicas_per_node": max_replicas_per_node} if max_replicas_per_node else {})}
    in_router = check_placement(student_placement) == "router"
    if in_router and student_config:
        router_config = {**(router_config or {}), "student": student_config}
    deployments = [{"name": "Router", **spread, **({"user_config": router_config} if router_config else {})}]
    if not in_router:
        deployments.append({"name": "DistilledScorer", **spread,
                            **({"user_config": student_config} if student_config else {})})
    if head_dir is not None and head_config:
        deployments.append({"name": "LLMHeadDeployment", "user_config": head_config})
    args = {"student_dir": str(storage.as_location(student_dir)), "student_placement": student_placement}
    args.update({k: str(storage.as_location(v)) for k, v in (("retriever_dir", retriever_dir), ("head_dir", head_dir))
                 if v})
    if history is not None:
        args["history"] = history
    return {"http_options": {"host": host, "port": port},
            "applications": [{"name": APP_NAME, "route_prefix": "/", "import_path": "llmctr.serve.graph:build_graph",
                              "args": args, "deployments": deployments}]}


def default_cold_fields(student_dir: str | Path) -> list[str]:
    """The cold-start fields a graph routes by when none are given: the student's dataset's entity keys (e.g. user
    and movie ids) that are input fields of its feature map, as ``serve_configs/local.yaml`` names them; empty (with
    a log line) when the dataset YAML is not found by the feature map's dataset name."""
    from llmctr.data import FeatureMap, load_dataset_config
    from llmctr.models.artifact import FEATURE_MAP, resolve_artifact
    from llmctr.storage import resolve_artifact_path

    fmap = FeatureMap.load(storage.join(resolve_artifact(resolve_artifact_path(student_dir)), FEATURE_MAP))
    try:
        dataset = load_dataset_config(fmap.dataset)
    except (FileNotFoundError, ValueError) as exc:
        log.info("no cold-start fields by default: dataset %r of the student not found (%s)", fmap.dataset, exc)
        return []
    names = {f.name for f in fmap.input_fields}
    return [e.key for e in dataset.entities.values() if e.key in names]


def deploy(student_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, **options: Any) -> str:
    """Deploy (or update) the graph; return its base URL. Options: those of :func:`graph_config`."""
    if host not in LOOPBACK:
        log.warning("serving on %s: the scoring API is reachable from other machines", host)
    apply_config(graph_config(student_dir, host, port, **options))
    return f"http://{host}:{port}"


def apply_config(config: dict[str, Any], timeout_s: float = 600.0) -> None:
    """``serve deploy`` from Python: submit ``config`` to the connected cluster's dashboard and wait until the
    application runs it. Without a dashboard the graph is run imperatively (``serve.run``): it serves the same,
    but a later deploy restarts the replicas instead of reconfiguring them."""
    serve.start(http_options=config.get("http_options", {}))
    dashboard = _dashboard_url()
    if dashboard is None:
        log.warning("no Ray dashboard: deploying with serve.run (later changes restart replicas)")
        from llmctr.serve.graph import scoring_graph

        app = config["applications"][0]
        options = {d["name"]: {k: v for k, v in d.items() if k != "name"} for d in app.get("deployments", [])}
        args = app["args"]
        graph = scoring_graph(args["student_dir"], args.get("retriever_dir"), args.get("head_dir"), options,
                              history=args.get("history"), student_placement=args.get("student_placement", "router"))
        serve.run(graph, name=app["name"], route_prefix=app["route_prefix"], blocking=False)
        return
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

    before = _deployed_at()
    ServeSubmissionClient(dashboard).deploy_applications(config)
    _wait_running(config["applications"][0]["name"], before, timeout_s)


def _dashboard_url() -> str | None:
    import ray

    url = ray._private.worker.global_worker.node.address_info.get("webui_url") if ray.is_initialized() else None
    return f"http://{url}" if url else None


def _deployed_at() -> float:
    app = serve.status().applications.get(APP_NAME)
    return app.last_deployed_time_s if app else 0.0


def _wait_running(name: str, before: float, timeout_s: float) -> None:
    """Until the controller has taken the new config (a later deploy time) and every deployment is healthy."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        app = serve.status().applications.get(name)
        if app is not None and app.last_deployed_time_s > before:
            if app.status == "RUNNING":
                return
            if app.status in ("DEPLOY_FAILED", "UNHEALTHY"):
                failed = "; ".join(f"{dep}: {d.message}" for dep, d in app.deployments.items() if d.message)
                raise RuntimeError(f"Serve application {name!r} is {app.status}: {app.message} {failed}")
        time.sleep(0.25)
    raise TimeoutError(f"Serve application {name!r} did not run its new config within {timeout_s:.0f} s")
