"""HTTP request/response bodies (they also document the API in the OpenAPI page at /docs)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ScoreRequest(BaseModel):
    records: list[dict[str, Any]] = Field(
        min_length=1, description="raw feature records: field name → value, as in the raw data",
        examples=[[{"user_id": 1, "gender": "F", "age": 1, "occupation": 10, "movie_id": 1193,
                    "title": "One Flew Over the Cuckoo's Nest (1975)", "genres": "Drama"}]])


class ScoreResponse(BaseModel):
    model: str
    version: str
    probabilities: list[float]


class Health(BaseModel):
    status: str
    model: str
    version: str
