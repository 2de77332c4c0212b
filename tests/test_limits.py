"""serve/limits.py without a cluster: retries on a lost replica, the string limit, the byte limit on a bare app."""

import asyncio

import pytest
import ray.exceptions
from fastapi import FastAPI
from starlette.testclient import TestClient

from llmctr.config import ConfigError, parse_config
from llmctr.serve.limits import (
    AuthConfig,
    BodyLimit,
    LimitsConfig,
    Unavailable,
    authorized,
    long_string,
    with_retries,
)


class Flaky:
    """Fails ``failures`` times with ``error``, then answers."""

    def __init__(self, failures: int, error: BaseException):
        self.failures, self.error, self.calls = failures, error, 0

    async def __call__(self):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "answer"


FAST = LimitsConfig(retries=2, retry_backoff_s=0.0)


@pytest.mark.parametrize("error", [ray.exceptions.ActorDiedError(),
                                   ray.exceptions.ActorUnavailableError("gone", None)])
def test_a_lost_replica_costs_a_retry(error):
    call, retried = Flaky(2, error), []
    assert asyncio.run(with_retries(call, FAST, "student", on_retry=lambda: retried.append(1))) == "answer"
    assert call.calls == 3 and len(retried) == 2


def test_no_replica_left_is_unavailable_not_an_error():
    call = Flaky(10, ray.exceptions.ActorDiedError())
    with pytest.raises(Unavailable, match="no student replica answered"):
        asyncio.run(with_retries(call, FAST, "student"))
    assert call.calls == FAST.retries + 1


def test_other_errors_are_not_retried():
    call = Flaky(1, ValueError("bad record"))
    with pytest.raises(ValueError, match="bad record"):
        asyncio.run(with_retries(call, FAST, "student"))
    assert call.calls == 1


def test_long_strings_are_named():
    records = [{"title": "x" * 10, "tags": ["a", "b"]}, {"title": "ok", "tags": ["a", "y" * 11]}]
    assert long_string(records, 11) is None
    assert long_string([{"history": [1, 2, 3] * 100}], 0) is None  # no string in a history of ids
    assert long_string(records, 10) == ("record 1 field 'tags': a string of 11 characters is longer than "
                                        "max_string_chars 10")
    with pytest.raises(ConfigError):
        parse_config(LimitsConfig, {"max_body_bytes": 10, "max_bytes": 1})


def test_body_limit_answers_413_before_the_app_reads_the_body():
    app, seen = FastAPI(), []

    @app.post("/echo")
    async def echo(body: dict) -> dict:
        seen.append(body)
        return {"keys": len(body)}

    app.add_middleware(BodyLimit, limit=lambda: 100)
    client = TestClient(app)
    assert client.post("/echo", json={"a": 1}).json() == {"keys": 1}
    resp = client.post("/echo", json={"a": "x" * 200})
    assert resp.status_code == 413 and "max_body_bytes 100" in resp.json()["detail"]

    def chunks():  # no Content-Length: the middleware counts what arrives
        yield b'{"a": "'
        yield b"x" * 200
        yield b'"}'

    resp = client.post("/echo", content=chunks(), headers={"content-type": "application/json"})
    assert resp.status_code == 413 and "more than" in resp.json()["detail"]
    assert len(seen) == 1, "the application never saw an oversized body"


def test_bearer_token_guards_writes_and_optionally_scoring(monkeypatch):
    monkeypatch.delenv("LLMCTR_API_TOKEN", raising=False)
    assert authorized(AuthConfig(), None, write=True), "no token configured: nothing is checked"
    config = AuthConfig(token="s3cret")
    assert not authorized(config, None, write=True)
    assert not authorized(config, "Bearer wrong", write=True)
    assert authorized(config, "Bearer s3cret", write=True)
    assert authorized(config, None, write=False), "scoring stays open unless auth.scoring"
    assert not authorized(AuthConfig(token="s3cret", scoring=True), "Basic s3cret", write=False)
    monkeypatch.setenv("LLMCTR_API_TOKEN", "from-env")
    assert authorized(config, "Bearer from-env", write=True) and not authorized(config, "Bearer s3cret", write=True)
    assert "s3cret" not in repr(config) and "s3cret" not in str(config)
