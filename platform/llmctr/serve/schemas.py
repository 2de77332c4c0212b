"""HTTP request/response bodies (they also document the API in the OpenAPI page at /docs)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ScoreRequest(BaseModel):
    records: list[dict[str, Any]] = Field(
        min_length=1, description="raw feature records: field name → value, as in the raw data",
        examples=[[{"user_id": 1, "gender": "F", "age": 1, "occupation": 10, "movie_id": 1193,
                    "title": "One Flew Over the Cuckoo's Nest (1975)", "genres": "Drama"}]])


class RecordScore(BaseModel):
    probability: float
    route: Literal["student", "llm", "fallback"] = Field(
        description="student: the distilled student answered; llm: the retriever + early-exit LLM head did; "
                    "fallback: the record was sent to the LLM path, which was late or failed, so the student answered")
    exit_depth: int | None = Field(None, description="encoder layers the LLM head ran (None off the LLM path)")


class GraphScoreResponse(BaseModel):
    model: str
    version: str
    probabilities: list[float]
    results: list[RecordScore]


class RetrieveRequest(BaseModel):
    user: str | int | None = Field(None, description="raw user id (as in the raw data)")
    item: str | int | None = Field(None, description="raw item id")
    k: int = Field(10, ge=1, le=1000)


class Neighbour(BaseModel):
    id: str | int | float | None
    score: float


class RetrieveResponse(BaseModel):
    retriever: str
    items_for_user: list[Neighbour] = Field(default_factory=list)
    similar_users: list[Neighbour] = Field(default_factory=list)
    similar_items: list[Neighbour] = Field(default_factory=list)


class GraphHealth(BaseModel):
    status: str
    model: str
    version: str
    retriever: str | None = None
    llm_head: str | None = None
    #: how HTTP reaches the Router: "haproxy" (llmctr.runtime: the fast ingress) or "python-proxy" (Serve's default)
    ingress: str | None = None
