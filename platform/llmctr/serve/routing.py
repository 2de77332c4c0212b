"""Which records the scoring graph sends to the LLM path: the distilled student scores every record; a record goes
on to the retriever + early-exit LLM head when the student is unsure of it (its probability falls inside
``band``) or when it carries an id unseen in training (cold start: the id encodes to the OOV id). Shared by the
Serve router and the offline benchmarks, so the routed AUC measured offline is the served one.

Admission: the LLM path is far slower than the student (one CPU head replica scores tens to hundreds of records a
second), so an unbounded band lets it dominate latency under load: every routed record waits out the deadline and
then falls back anyway. ``max_llm_records`` caps the routed records of one request and ``max_llm_inflight`` the
records on the LLM path at once (per router replica): a number, or ``auto``, which keeps the records in flight
within what the LLM path has been finishing per deadline (``Admission``). Past either cap, the records the student
is least unsure of (cold-start ones kept first) answer at once with the student's probability, marked
``fallback`` (reason ``shed``), instead of queueing behind work that cannot finish in time.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, model_validator
from pydantic.dataclasses import dataclass

from llmctr.config import STRICT
from llmctr.data.routing_rule import cold_start_mask, route_mask

__all__ = ["Admission", "RoutingConfig", "admit", "cold_start_mask", "inflight_cap", "llm_route_mask",
           "routed_probabilities"]

Route = Literal["student", "llm", "fallback"]


@dataclass(config=STRICT)
class RoutingConfig:
    #: student probabilities in [low, high] are "unsure": those records take the LLM path
    band: tuple[float, float] = (0.4, 0.6)
    #: also send records whose ``cold_fields`` (e.g. user and item ids) are unseen in training
    cold_start: bool = True
    cold_fields: list[str] = Field(default_factory=list)
    #: the LLM path's budget per request; late or failing → the student's answer, marked "fallback"
    deadline_ms: float = Field(200.0, gt=0)
    #: at most this many records of one request take the LLM path (None: no cap)
    max_llm_records: int | None = Field(None, ge=0)
    #: at most this many records on the LLM path at once, per router replica (None: no cap; "auto": what the LLM
    #: path has been finishing within one deadline, measured by the router)
    max_llm_inflight: Annotated[int, Field(ge=0)] | Literal["auto"] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> RoutingConfig:
        low, high = self.band
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"band must satisfy 0 <= low <= high <= 1, got {self.band}")
        return self


def inflight_cap(value: str) -> int | str:
    """``max_llm_inflight`` from a command-line string: ``auto`` or a count."""
    return value if value == "auto" else int(value)


def llm_route_mask(student_probs: np.ndarray, cold: np.ndarray | None, config: RoutingConfig) -> np.ndarray:
    """True for the records the LLM path should score (``llmctr.data.routing_rule.route_mask``)."""
    return route_mask(student_probs, cold, config.band, config.cold_start)


def admit(mask: np.ndarray, student_probs: np.ndarray, cold: np.ndarray | None, capacity: int | None
          ) -> np.ndarray:
    """The part of ``mask`` the LLM path takes when it has room for ``capacity`` records (None: all of them):
    cold-start records first, then the records whose student probability is closest to 0.5; ties keep the
    request's order. The rest of ``mask`` is shed (answered by the student)."""
    mask = np.asarray(mask, dtype=bool)
    if capacity is None or int(mask.sum()) <= capacity:
        return mask
    idx = np.flatnonzero(mask)
    is_cold = np.zeros(len(idx), dtype=bool) if cold is None else np.asarray(cold, dtype=bool)[idx]
    doubt = np.abs(np.asarray(student_probs, dtype=float)[idx] - 0.5)
    order = np.lexsort((np.arange(len(idx)), doubt, ~is_cold))  # last key sorts first
    admitted = np.zeros_like(mask)
    admitted[idx[order[:max(int(capacity), 0)]]] = True
    return admitted


class Admission:
    """How many more records one router replica may put on the LLM path now, from its caps and the records it has
    in flight. With ``max_llm_inflight: auto`` the cap is ``headroom`` x rate x deadline, where rate (records/s) is
    a moving average over the replica's LLM calls: records / seconds for a call answered in time, records /
    deadline (an upper bound) for a late one. Before the first call there is no cap; with nothing in flight one
    record is always let through, so the estimate keeps up when the LLM path speeds up again."""

    def __init__(self, config: RoutingConfig, smoothing: float = 0.3, headroom: float = 0.8):
        self.config, self.smoothing, self.headroom = config, smoothing, headroom
        self.inflight = 0
        self.rate: float | None = None

    def capacity(self) -> int | None:
        caps = [self.config.max_llm_records]
        limit = self.config.max_llm_inflight
        if limit == "auto":
            if self.rate is not None:
                budget = math.floor(self.headroom * self.rate * self.config.deadline_ms / 1000) - self.inflight
                caps.append(max(budget, 1 if self.inflight == 0 else 0))
        elif limit is not None:
            caps.append(max(limit - self.inflight, 0))
        caps = [c for c in caps if c is not None]
        return min(caps) if caps else None

    def start(self, records: int) -> None:
        self.inflight += records

    def finish(self, records: int, seconds: float, outcome: Literal["llm", "deadline", "error"]) -> None:
        self.inflight -= records
        if outcome == "error" or records <= 0:
            return
        elapsed = self.config.deadline_ms / 1000 if outcome == "deadline" else max(seconds, 1e-6)
        observed = records / elapsed
        self.rate = observed if self.rate is None else (1 - self.smoothing) * self.rate + self.smoothing * observed


def routed_probabilities(student_probs: np.ndarray, llm_probs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The graph's answer per record: the LLM head's where routed, else the student's."""
    return np.where(mask, llm_probs, student_probs)
