"""The scoring graph on Ray Serve: ``Router`` (FastAPI ingress) → the student for every record (its forward inside
the Router replica, or the ``DistilledScorer`` deployment: ``student.py``), and for the records the routing rule
picks (unsure or cold-start: ``routing.py``) → ``RetrieverDeployment`` (RAG context) → ``LLMHeadDeployment`` (the
LLM path), under a per-request deadline: late or failing → the student's answer, marked
``fallback``. Each deployment is a small class with one job; behaviour knobs live in ``user_config`` so a YAML
change (``serve deploy``) reconfigures replicas in place — including rolling the student to a new version with
no failed request. The retriever and the LLM head are optional: without them every record takes the student.

(No ``from __future__ import annotations`` here: FastAPI must see the route annotations as classes, not strings.)
"""

import asyncio
import logging
import time
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.responses import Response
from ray import serve
from ray.serve.handle import DeploymentHandle

from llmctr import storage
from llmctr.config import parse_config
from llmctr.data.history_store import USER_HISTORY
from llmctr.models.artifact import resolve_artifact
from llmctr.models.ctr_model import sigmoid
from llmctr.runtime import ingress_mode
from llmctr.serve.deployments import (
    DistilledScorer,
    HistoryStoreDeployment,
    LLMHeadDeployment,
    RetrieverDeployment,
)
from llmctr.serve.limits import (
    AuthConfig,
    BodyLimit,
    LimitsConfig,
    Unavailable,
    authorized,
    long_string,
    with_retries,
)
from llmctr.serve.metrics import CONTENT_TYPE, GraphMetrics
from llmctr.serve.routing import Admission, RoutingConfig, admit, llm_route_mask
from llmctr.serve.schemas import (
    EventsRequest,
    EventsResponse,
    GraphHealth,
    GraphScoreResponse,
    Neighbour,
    RecordScore,
    RetrieveRequest,
    RetrieveResponse,
    ScoreRequest,
)
from llmctr.serve.student import InRouterStudent, RemoteStudent, check_placement
from llmctr.storage import resolve_artifact_path

log = logging.getLogger(__name__)
graph_api = FastAPI(title="llmctr scoring graph", version="1",
                    description="CTR scoring: a distilled student for every record, an early-exit LLM head with "
                                "retrieved context for the records it is unsure of.")
#: this replica's limits (one Router per replica process; its reconfigure sets them, the body middleware reads them)
LIMITS, AUTH = LimitsConfig(), AuthConfig()
graph_api.add_middleware(BodyLimit, limit=lambda: LIMITS.max_body_bytes)


def _access(write: bool):
    async def check(authorization: str | None = Header(None, include_in_schema=False)) -> None:
        if not authorized(AUTH, authorization, write):
            raise HTTPException(401, "this route needs 'Authorization: Bearer <token>' (LLMCTR_API_TOKEN)",
                                headers={"WWW-Authenticate": "Bearer"})
    return Depends(check)


WRITER, READER = _access(write=True), _access(write=False)


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=128)
@serve.ingress(graph_api)
class Router:
    def __init__(self, student: DeploymentHandle | str, retriever: DeploymentHandle | None = None,
                 head: DeploymentHandle | None = None, history: DeploymentHandle | None = None):
        """``student``: the DistilledScorer's handle, or the student artifact's folder to run it in this replica."""
        self.student = (InRouterStudent(student) if isinstance(student, str)
                        else RemoteStudent(student, self._call))
        self.retriever, self.head, self.history = retriever, head, history
        self._history_field: str | None = None  # the sequence field the store fills (asked once)
        self.routing = RoutingConfig()
        self.admission = Admission(self.routing)
        self.max_records = 1000
        self.metrics = GraphMetrics()
        self._head_info: dict[str, Any] | None = None  # neighbours the head reads, whether from history (asked once)

    def reconfigure(self, config: dict[str, Any]) -> None:
        self.routing = parse_config(RoutingConfig, dict(config.get("routing") or {}), "Router user_config.routing")
        self.admission.config = self.routing  # in flight and the measured rate carry over
        self.max_records = int(config.get("max_records", 1000))
        self.student.reconfigure(dict(config.get("student") or {}))
        global LIMITS, AUTH
        LIMITS = parse_config(LimitsConfig, dict(config.get("limits") or {}), "Router user_config.limits")
        AUTH = parse_config(AuthConfig, dict(config.get("auth") or {}), "Router user_config.auth")

    @property
    def limits(self) -> LimitsConfig:
        """This replica's limits (the module's, which the body middleware reads too)."""
        return LIMITS

    @graph_api.post("/v1/score", response_model=GraphScoreResponse, dependencies=[READER])
    async def score(self, body: ScoreRequest) -> GraphScoreResponse:
        records = body.records
        if len(records) > self.max_records:
            raise HTTPException(413, f"too many records: {len(records)} > max_records {self.max_records}")
        problem = long_string(records, self.limits.max_string_chars)
        if problem:
            raise HTTPException(422, problem)
        return await self._bounded(self._score(records))

    async def _bounded(self, work):
        """``work`` under the request timeout (504) with lost replicas retried (503 when none answers)."""
        try:
            return await asyncio.wait_for(work, timeout=self.limits.request_timeout_s)
        except TimeoutError:
            self.metrics.failures.labels("timeout").inc()
            raise HTTPException(504, f"the request took longer than request_timeout_s "
                                     f"{self.limits.request_timeout_s:g}") from None
        except Unavailable as exc:
            self.metrics.failures.labels("unavailable").inc()
            raise HTTPException(503, str(exc), headers={"Retry-After": str(self.limits.retry_after_s)}) from None

    def _call(self, what: str, method, *args):
        """A handle call, sent again when its replica is lost."""
        return with_retries(lambda: method.remote(*args), self.limits, what,
                            on_retry=self.metrics.retries.labels(what).inc)

    async def _score(self, records: list[dict]) -> GraphScoreResponse:
        t0 = time.perf_counter()
        records = await self._with_history(records)
        student = await self.student.score(records, self.routing.cold_fields)
        if "error" in student:
            raise HTTPException(422, student["error"])
        t_student = time.perf_counter()
        self.metrics.route_latency.labels("student").observe(t_student - t0)
        self.metrics.count_texts(student.get("texts"))
        logits = student["logits"]
        probs = sigmoid(logits)
        routes = ["student"] * len(records)
        depths: list[int | None] = [None] * len(records)
        mask = llm_route_mask(probs, student["cold"], self.routing) if self.head is not None else None
        if mask is not None and mask.any():
            admitted = admit(mask, probs, student["cold"], self.admission.capacity())
            shed = np.flatnonzero(mask & ~admitted)
            if len(shed):
                self.metrics.fallbacks.labels("shed").inc(len(shed))
                for i in shed:
                    routes[i] = "fallback"
            if admitted.any():
                await self._llm_path(records, logits, admitted, probs, routes, depths)
        for route in set(routes):
            self.metrics.records.labels(route).inc(routes.count(route))
        self.metrics.request_latency.observe(time.perf_counter() - t0)
        return GraphScoreResponse(
            model=student["model"], version=student["version"], probabilities=probs.tolist(),
            results=[RecordScore(probability=p, route=r, exit_depth=d) for p, r, d in zip(probs, routes, depths)])

    async def _llm_path(self, records, logits, mask, probs, routes, depths) -> None:
        """Score the routed records on the LLM path within the deadline; fill ``probs`` / ``routes`` / ``depths``."""
        idx = np.flatnonzero(mask)
        sub = [records[i] for i in idx]
        t0 = time.perf_counter()
        self.admission.start(len(idx))
        outcome = "error"
        try:
            out = await asyncio.wait_for(self._retrieve_and_score(sub, logits[idx]),
                                         timeout=self.routing.deadline_ms / 1000)
            outcome = "llm"
        except Exception as exc:  # noqa: BLE001 (late or failing: the student's answer stands)
            reason = outcome = "deadline" if isinstance(exc, asyncio.TimeoutError) else "error"
            if reason == "error":
                log.warning("LLM path failed, answering %d records with the student: %r", len(idx), exc)
            self.metrics.route_latency.labels("fallback").observe(time.perf_counter() - t0)
            self.metrics.fallbacks.labels(reason).inc(len(idx))
            for i in idx:
                routes[i] = "fallback"
            return
        finally:
            self.admission.finish(len(idx), time.perf_counter() - t0, outcome)
        self.metrics.route_latency.labels("llm").observe(time.perf_counter() - t0)
        probs[idx] = out["probs"]
        for i, depth in zip(idx, out["layers_run"]):
            routes[i], depths[i] = "llm", int(depth)
            self.metrics.exit_depth.observe(int(depth))

    async def _retrieve_and_score(self, records: list[dict], base_logits: np.ndarray) -> dict[str, Any]:
        neighbours = None
        if self.retriever is not None:
            if self._head_info is None:
                self._head_info = await self.head.info.remote()
            if not self._head_info.get("reads_history"):  # a head reading the request's history needs no retrieval
                neighbours = await self.retriever.neighbours.remote(records, self._head_info["neighbours"])
        return await self.head.score.remote(records, base_logits, neighbours)

    async def _with_history(self, records: list[dict]) -> list[dict]:
        """Records without their own history get their user's from the history store (when the graph has one)."""
        if self.history is None:
            return records
        if self._history_field is None:
            self._history_field = (await self.history.info.remote())["field"]
        if all(r.get(self._history_field) is not None for r in records):
            return records
        return await self._call("history", self.history.fill, records)

    @graph_api.post("/v1/events", response_model=EventsResponse, dependencies=[WRITER])
    async def events(self, body: EventsRequest) -> EventsResponse:
        """Append interactions to the history store, oldest first: the next request of that user sees them."""
        if self.history is None:
            raise HTTPException(404, "this graph has no history store (its student has no sequence field)")
        appended = await self._bounded(self._call("history", self.history.append,
                                                  [e.model_dump() for e in body.events]))
        return EventsResponse(appended=appended)

    @graph_api.post("/v1/retrieve", response_model=RetrieveResponse, dependencies=[READER])
    async def retrieve(self, body: RetrieveRequest) -> RetrieveResponse:
        if self.retriever is None:
            raise HTTPException(404, "this graph has no retriever (deploy it with a retriever artifact)")
        if body.user is None and body.item is None:
            raise HTTPException(422, "give a user, an item, or both")
        out = await self.retriever.retrieve.remote(body.user, body.item, body.k)
        return RetrieveResponse(**{k: ([Neighbour(**n) for n in v] if isinstance(v, list) else v)
                                   for k, v in out.items()})

    @graph_api.get("/healthz", response_model=GraphHealth)
    async def healthz(self) -> GraphHealth:
        student = await self.student.describe()
        retriever = (await self.retriever.info.remote())["version"] if self.retriever is not None else None
        head = (await self.head.info.remote()) if self.head is not None else {}
        users = (await self.history.info.remote())["users"] if self.history is not None else None
        return GraphHealth(status="ok", model=student["model"], version=student["version"], retriever=retriever,
                           llm_head=head.get("version"), llm_head_device=head.get("device"), history_users=users,
                           ingress=ingress_mode())

    @graph_api.get("/metrics")
    async def metrics(self) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)


def scoring_graph(student_dir: str, retriever_dir: str | None = None, head_dir: str | None = None,
                  options: dict[str, dict[str, Any]] | None = None,
                  history: dict[str, Any] | bool | None = None, student_placement: str = "router"
                  ) -> serve.Application:
    """The graph as a Serve application; ``options``: per deployment name, ``.options(...)`` keyword arguments
    (user_config, num_replicas, autoscaling_config, ray_actor_options...). ``history``: the history store's
    arguments (``events_log``, ``start_empty``); by default it is deployed when the student artifact has a
    ``user_history.json`` (a model trained on a dataset with a sequence field); ``False``: never.
    ``student_placement``: ``router`` (the student's forward inside the Router replicas; no DistilledScorer) or
    ``deployment`` (the DistilledScorer deployment), see ``student.py``."""
    options = options or {}

    def bound(deployment, *args, default: dict | None = None, **kwargs):
        return deployment.options(**{**(default or {}), **options.get(deployment.name, {})}).bind(*args, **kwargs)

    in_router = check_placement(student_placement) == "router"
    student = student_dir if in_router else bound(DistilledScorer, student_dir)
    retriever = bound(RetrieverDeployment, retriever_dir) if retriever_dir else None
    head = bound(LLMHeadDeployment, head_dir) if head_dir else None
    store = None
    if history is not False and (history or _has_history(student_dir)):
        store = bound(HistoryStoreDeployment, student_dir, **(history if isinstance(history, dict) else {}))
    # in the router, the student's CPU share moves with it (what a separate DistilledScorer replica reserves)
    router_cpus = {"ray_actor_options": {"num_cpus": 0.75}} if in_router else None
    return bound(Router, student, retriever, head, store, default=router_cpus)


def _has_history(student_dir: str) -> bool:
    location = resolve_artifact(resolve_artifact_path(student_dir))
    return storage.exists(storage.join(location, USER_HISTORY))


def build_graph(args: dict[str, Any]) -> serve.Application:
    """Serve builder (``import_path: llmctr.serve.graph:build_graph``); args: ``student_dir`` (required),
    ``retriever_dir``, ``head_dir`` (optional): artifact folders (with LATEST) or versions, relative paths against
    the artifacts root; ``history`` (optional): the history store's arguments, or false; ``student_placement``
    (optional): ``router`` (default) or ``deployment``. Deployment settings come from the YAML's ``deployments:``
    section."""
    if not args.get("student_dir"):
        raise ValueError("the scoring graph needs args.student_dir (the distilled student's artifact)")
    return scoring_graph(args["student_dir"], args.get("retriever_dir"), args.get("head_dir"),
                         history=args.get("history"), student_placement=args.get("student_placement", "router"))
