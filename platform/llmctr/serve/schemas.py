"""HTTP request/response bodies (they also document the API in the OpenAPI page at /docs)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ScoreRequest(BaseModel):
    records: list[dict[str, Any]] = Field(
        min_length=1,
        description="raw feature records: field name → value, as in the raw data. A model with a behaviour history "
                    "(a sequence field, e.g. `history`) takes it as a list of raw item ids, most recent first, with "
                    "`history_label` (1 liked, 0 not) beside it; a record without it gets its user's history from "
                    "the graph's history store (empty for an unknown user).",
        examples=[[{"user_id": 1, "gender": "F", "age": 1, "occupation": 10, "movie_id": 1193,
                    "title": "One Flew Over the Cuckoo's Nest (1975)", "genres": "Drama",
                    "history": [661, 914, 3408], "history_label": [1, 0, 1]},
                   {"user_id": 1, "gender": "F", "age": 1, "occupation": 10, "movie_id": 1197,
                    "title": "Princess Bride, The (1987)", "genres": "Action|Adventure|Comedy|Romance"}]])


class Event(BaseModel):
    user: str | int = Field(description="raw user id (the sequence field's group_by field, e.g. user_id)")
    item: str | int = Field(description="raw item id (the sequence field's item field, e.g. movie_id)")
    label: Literal[0, 1] = Field(description="1: liked / clicked, 0: not")


class EventsRequest(BaseModel):
    events: list[Event] = Field(min_length=1, max_length=10_000,
                                description="interactions in time order, oldest first")


class EventsResponse(BaseModel):
    appended: int


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
    #: where the LLM head runs: "cuda" (its replica was given a GPU) or "cpu"
    llm_head_device: str | None = None
    #: users the history store holds (None: the graph has no history store)
    history_users: int | None = None
    #: how HTTP reaches the Router: "haproxy" (llmctr.runtime: the fast ingress) or "python-proxy" (Serve's default)
    ingress: str | None = None
