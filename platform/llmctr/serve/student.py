"""Where the scoring graph's student runs, behind one interface the ``Router`` calls (``score``, ``info``):

- ``router`` (``InRouterStudent``, the default): the forward runs inside the Router replica: no second hop carrying
  the records to another actor and back. For CPU deployments, where the forward of a request's records costs about
  a millisecond and the hop several.
- ``deployment`` (``RemoteStudent``): the ``DistilledScorer`` deployment (``deployments.py``), called through its
  handle with lost replicas retried: for a GPU student, or a student scaled (and batched across requests)
  independently of the routers.

Both load a new student version in place when their ``user_config.model_dir`` changes (the Router's
``student`` section, or the DistilledScorer's own), between two requests: no failed request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np
import torch
from ray import serve

from llmctr.serve.routing import cold_start_mask
from llmctr.serve.scorer import TEXT_STATUS, RecordError, Scorer
from llmctr.storage import resolve_artifact_path

log = logging.getLogger(__name__)
PLACEMENTS = ("router", "deployment")


def check_placement(placement: str) -> str:
    if placement not in PLACEMENTS:
        raise ValueError(f"student_placement must be one of {list(PLACEMENTS)}, not {placement!r}")
    return placement


def score_requests(scorer: Scorer, requests: Sequence[list[dict]], cold_fields: Sequence[Sequence[str]]
                   ) -> list[dict]:
    """Per request: logits, the cold-start mask, the model's name and version, its cold-start texts (``encoded`` now,
    ``cached``) — or the validation error, so one bad body fails alone. The records of all good requests go through
    one forward."""
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
        cold = cold_start_mask(encoded, [f for f in cold_fields[good[0]] if f in encoded])
        texts = encoded.get(TEXT_STATUS, np.zeros(len(records), dtype=np.int8))
        cuts = np.cumsum([len(requests[i]) for i in good])[:-1]
        for i, lg, cd, tx in zip(good, np.split(logits, cuts), np.split(cold, cuts), np.split(texts, cuts)):
            out[i] = {"logits": lg, "cold": cd, "model": scorer.name, "version": scorer.version,
                      "texts": {"encoded": int((tx == 1).sum()), "cached": int((tx == 2).sum())}}
    return out


def set_threads(config: dict[str, Any]) -> None:
    """torch's threads in this replica process (``user_config.threads``, default 1)."""
    torch.set_num_threads(int(config.get("threads", 1)))


def set_batching(batched: Any, config: dict[str, Any]) -> None:
    """A ``@serve.batch`` method's settings from ``user_config`` (``max_batch_size``, ``batch_wait_timeout_s``)."""
    batched.set_max_batch_size(int(config.get("max_batch_size", 16)))
    batched.set_batch_wait_timeout_s(float(config.get("batch_wait_timeout_s", 0.0)))


class LoadedStudent:
    """A student artifact loaded in this process, swapped for a new version when ``model_dir`` changes."""

    def __init__(self, model_dir: str):
        self.model_dir = ""
        self.load(model_dir)

    def load(self, model_dir: str) -> None:
        scorer = Scorer.load(resolve_artifact_path(model_dir))
        self.scorer, self.model_dir = scorer, model_dir  # one assignment: a request sees the old or the new model
        log.info("student %s %s loaded from %s", scorer.name, scorer.version, model_dir)

    def reconfigure(self, config: dict[str, Any]) -> None:
        """``model_dir`` (a new version: loaded in place), ``threads`` (torch's, in this process)."""
        if config.get("model_dir") and config["model_dir"] != self.model_dir:
            self.load(config["model_dir"])
        set_threads(config)

    def info(self) -> dict[str, str]:
        return {"model": self.scorer.name, "version": self.scorer.version}


class InRouterStudent(LoadedStudent):
    """``router`` placement: the forward in the calling replica, in a worker thread (the replica's event loop stays
    free for other requests and health checks, and the request timeout can answer 504 while a forward runs).
    Requests arriving while a forward runs are batched into the next one (``@serve.batch``, as the DistilledScorer
    does; ``max_batch_size`` / ``batch_wait_timeout_s`` in ``user_config.student``); a lone request waits for
    nothing."""

    def __init__(self, model_dir: str):
        super().__init__(model_dir)
        torch.set_num_threads(1)  # a Router replica reserves under one CPU; user_config.student.threads changes it

    def reconfigure(self, config: dict[str, Any]) -> None:
        super().reconfigure(config)
        set_batching(self._batch, config)

    async def score(self, records: list[dict], cold_fields: Sequence[str]) -> dict:
        return await self._batch(records, tuple(cold_fields))

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0)
    async def _batch(self, requests: list[list[dict]], cold_fields: list[tuple[str, ...]]) -> list[dict]:
        return await asyncio.to_thread(score_requests, self.scorer, requests, cold_fields)

    async def describe(self) -> dict[str, str]:
        return self.info()


class RemoteStudent:
    """``deployment`` placement: the DistilledScorer deployment through its handle; ``call(what, method, *args)``
    sends a call again when its replica is lost (the Router's retry policy)."""

    def __init__(self, handle: Any, call: Callable[..., Awaitable[Any]]):
        self.handle, self.call = handle, call

    def reconfigure(self, config: dict[str, Any]) -> None:
        if config:
            raise ValueError("Router user_config.student configures a student running in the Router "
                             "(student_placement: router); this graph's student is the DistilledScorer deployment: "
                             "set DistilledScorer.user_config instead")

    async def score(self, records: list[dict], cold_fields: Sequence[str]) -> dict:
        return await self.call("student", self.handle.score, records, tuple(cold_fields))

    async def describe(self) -> dict[str, str]:
        return await self.handle.info.remote()
