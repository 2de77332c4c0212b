"""The scoring graph on Ray Serve: ``Router`` (FastAPI ingress) → ``DistilledScorer`` for every record, and for
the records the routing rule picks (unsure or cold-start: ``routing.py``) → ``RetrieverDeployment`` (RAG context) →
``LLMHeadDeployment`` (the LLM path), under a per-request deadline: late or failing → the student's answer, marked
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
import torch
from fastapi import FastAPI, HTTPException
from fastapi.responses import Response
from ray import serve
from ray.serve.handle import DeploymentHandle

from llmctr.config import parse_config
from llmctr.models.ctr_model import sigmoid
from llmctr.runtime import ingress_mode
from llmctr.serve.metrics import CONTENT_TYPE, GraphMetrics
from llmctr.serve.routing import Admission, RoutingConfig, admit, cold_start_mask, llm_route_mask
from llmctr.serve.schemas import (
    GraphHealth,
    GraphScoreResponse,
    Neighbour,
    RecordScore,
    RetrieveRequest,
    RetrieveResponse,
    ScoreRequest,
)
from llmctr.serve.scorer import RecordError, Scorer
from llmctr.storage import resolve_artifact_path

log = logging.getLogger(__name__)
graph_api = FastAPI(title="llmctr scoring graph", version="1",
                    description="CTR scoring: a distilled student for every record, an early-exit LLM head with "
                                "retrieved context for the records it is unsure of.")


def _set_threads(config: dict[str, Any]) -> None:
    torch.set_num_threads(int(config.get("threads", 1)))


@serve.deployment(ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=64)
class DistilledScorer:
    """The exported student (never calls the LLM). ``user_config.model_dir`` names the artifact: changing it loads
    the new version and swaps it in between two batches."""

    def __init__(self, model_dir: str):
        self.model_dir = ""
        self._load(model_dir)

    def _load(self, model_dir: str) -> None:
        scorer = Scorer.load(resolve_artifact_path(model_dir))
        self.scorer, self.model_dir = scorer, model_dir  # one assignment: a batch sees the old or the new model
        log.info("student %s %s loaded from %s", scorer.name, scorer.version, model_dir)

    def reconfigure(self, config: dict[str, Any]) -> None:
        if config.get("model_dir") and config["model_dir"] != self.model_dir:
            self._load(config["model_dir"])
        self.score.set_max_batch_size(int(config.get("max_batch_size", 16)))
        self.score.set_batch_wait_timeout_s(float(config.get("batch_wait_timeout_s", 0.0)))
        _set_threads(config)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0)
    async def score(self, requests: list[list[dict]], cold_fields: list[tuple[str, ...]]) -> list[dict]:
        """Per request: probabilities, logits and the cold-start mask — or the validation error, so one bad body
        fails alone."""
        scorer = self.scorer
        out: list[dict] = [{} for _ in requests]
        good = []
        for i, records in enumerate(requests):
            try:
                scorer.validate(records)
                good.append(i)
            except RecordError as exc:
                out[i] = {"error": str(exc)}
        if good:
            records = [r for i in good for r in requests[i]]
            encoded = scorer.encode(records)
            logits = scorer.logits(encoded)
            fields = [f for f in cold_fields[good[0]] if f in encoded]
            cold = cold_start_mask(encoded, fields)
            cuts = np.cumsum([len(requests[i]) for i in good])[:-1]
            for i, lg, cd in zip(good, np.split(logits, cuts), np.split(cold, cuts)):
                out[i] = {"logits": lg, "cold": cd, "model": scorer.name, "version": scorer.version}
        return out

    def info(self) -> dict[str, str]:
        return {"model": self.scorer.name, "version": self.scorer.version}


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=32)
class RetrieverDeployment:
    """LightGCN vectors + FAISS: each routed record's retrieved interactions (the LLM head's RAG context), and
    ``/v1/retrieve``."""

    def __init__(self, retriever_dir: str, index_kind: str = "auto"):
        from llmctr.models.retriever import Retriever

        self.retriever = Retriever.load(resolve_artifact_path(retriever_dir), index_kind=index_kind)

    def reconfigure(self, config: dict[str, Any]) -> None:
        _set_threads(config)

    async def neighbours(self, records: list[dict], k: int) -> list[list[tuple[str, int]]]:
        from llmctr.semantics.rag import retrieve_neighbours

        return retrieve_neighbours(records, self.retriever, k)

    async def retrieve(self, user: Any, item: Any, k: int) -> dict[str, Any]:
        r = self.retriever
        out: dict[str, Any] = {"retriever": r.version}
        if user is not None:
            uid = r.encode_ids(r.user_field, [user])
            out["items_for_user"] = _neighbours(r, r.item_field, *r.items_for_users(uid, k))
            out["similar_users"] = _neighbours(r, r.user_field, *r.similar_users(uid, k))
        if item is not None:
            iid = r.encode_ids(r.item_field, [item])
            out["similar_items"] = _neighbours(r, r.item_field, *r.similar_items(iid, k))
        return out

    def info(self) -> dict[str, str]:
        return {"version": self.retriever.version}


def _neighbours(r, field: str, ids: np.ndarray, scores: np.ndarray) -> list[dict]:
    keep = ids[0] > 1  # padding / OOV rows are never neighbours
    raw = r.raw_values(field, ids[0][keep])
    return [{"id": _plain(v), "score": float(s)} for v, s in zip(raw, scores[0][keep])]


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


@serve.deployment(ray_actor_options={"num_cpus": 1}, max_ongoing_requests=16)
class LLMHeadDeployment:
    """The LoRA-tuned encoder with a CTR head after several layers; stops at the first confident head."""

    def __init__(self, head_dir: str):
        from llmctr.models.llm_head import EarlyExitHead

        self.head = EarlyExitHead.load(resolve_artifact_path(head_dir))

    def reconfigure(self, config: dict[str, Any]) -> None:
        if config.get("thresholds"):
            self.head.thresholds = [float(t) for t in config["thresholds"]]
        _set_threads(config)

    async def score(self, records: list[dict], base_logits: np.ndarray,
                    neighbours: list[list[tuple[str, int]]] | None) -> dict[str, Any]:
        """Scores with early exit; ``neighbours``: the retriever's (raw item id, label) per record (None without a
        retriever: the head then reads that the user has no history)."""
        contexts = self.head.contexts_from(neighbours or [[] for _ in records])
        probs, _, layers_run = self.head.score(records, base_logits, contexts)
        return {"probs": np.asarray(probs, dtype=float), "layers_run": np.asarray(layers_run, dtype=int)}

    def info(self) -> dict[str, Any]:
        return {"version": self.head.version, "neighbours": self.head.neighbours}


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=128)
@serve.ingress(graph_api)
class Router:
    def __init__(self, student: DeploymentHandle, retriever: DeploymentHandle | None = None,
                 head: DeploymentHandle | None = None):
        self.student, self.retriever, self.head = student, retriever, head
        self.routing = RoutingConfig()
        self.admission = Admission(self.routing)
        self.max_records = 1000
        self.metrics = GraphMetrics()
        self._head_neighbours: int | None = None  # how many neighbours the head reads (asked once)

    def reconfigure(self, config: dict[str, Any]) -> None:
        self.routing = parse_config(RoutingConfig, dict(config.get("routing") or {}), "Router user_config.routing")
        self.admission.config = self.routing  # in flight and the measured rate carry over
        self.max_records = int(config.get("max_records", 1000))

    @graph_api.post("/v1/score", response_model=GraphScoreResponse)
    async def score(self, body: ScoreRequest) -> GraphScoreResponse:
        t0 = time.perf_counter()
        records = body.records
        if len(records) > self.max_records:
            raise HTTPException(413, f"too many records: {len(records)} > max_records {self.max_records}")
        student = await self.student.score.remote(records, tuple(self.routing.cold_fields))
        if "error" in student:
            raise HTTPException(422, student["error"])
        t_student = time.perf_counter()
        self.metrics.route_latency.labels("student").observe(t_student - t0)
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
            if self._head_neighbours is None:
                self._head_neighbours = (await self.head.info.remote())["neighbours"]
            neighbours = await self.retriever.neighbours.remote(records, self._head_neighbours)
        return await self.head.score.remote(records, base_logits, neighbours)

    @graph_api.post("/v1/retrieve", response_model=RetrieveResponse)
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
        student = await self.student.info.remote()
        retriever = (await self.retriever.info.remote())["version"] if self.retriever is not None else None
        head = (await self.head.info.remote())["version"] if self.head is not None else None
        return GraphHealth(status="ok", model=student["model"], version=student["version"], retriever=retriever,
                           llm_head=head, ingress=ingress_mode())

    @graph_api.get("/metrics")
    async def metrics(self) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)


def scoring_graph(student_dir: str, retriever_dir: str | None = None, head_dir: str | None = None,
                  options: dict[str, dict[str, Any]] | None = None) -> serve.Application:
    """The graph as a Serve application; ``options``: per deployment name, ``.options(...)`` keyword arguments
    (user_config, num_replicas, autoscaling_config, ray_actor_options...)."""
    options = options or {}

    def bound(deployment, *args):
        return deployment.options(**options.get(deployment.name, {})).bind(*args)

    student = bound(DistilledScorer, student_dir)
    retriever = bound(RetrieverDeployment, retriever_dir) if retriever_dir else None
    head = bound(LLMHeadDeployment, head_dir) if head_dir else None
    return bound(Router, student, retriever, head)


def build_graph(args: dict[str, Any]) -> serve.Application:
    """Serve builder (``import_path: llmctr.serve.graph:build_graph``); args: ``student_dir`` (required),
    ``retriever_dir``, ``head_dir`` (optional): artifact folders (with LATEST) or versions, relative paths against
    the artifacts root. Deployment settings come from the YAML's ``deployments:`` section."""
    if not args.get("student_dir"):
        raise ValueError("the scoring graph needs args.student_dir (the distilled student's artifact)")
    return scoring_graph(args["student_dir"], args.get("retriever_dir"), args.get("head_dir"))
