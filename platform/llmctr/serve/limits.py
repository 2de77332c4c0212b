"""What one request may cost the graph, and how a lost replica is survived.

- ``max_body_bytes``: a larger body is answered 413 before any of it is parsed (``BodyLimit``, an ASGI middleware
  that trusts neither a missing nor a lying Content-Length: it counts the bytes as they arrive).
- ``max_string_chars``: a longer string in any field of any record is answered 422, naming the record and field.
- ``request_timeout_s``: a request still working after this long is answered 504 with a message.
- ``retries``: a call to a replica that died or became unavailable under it is sent again (to whichever replica
  Serve picks, bounded by the request's timeout); when none answers, 503 with ``Retry-After``, never 500.
  Scoring is idempotent, so a retry cannot double-count anything.

Set in the Router's ``user_config.limits`` (serve_configs/*.yaml), reconfigurable in place.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic.dataclasses import dataclass

from llmctr.config import STRICT

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(config=STRICT)
class LimitsConfig:
    max_body_bytes: int = 2 * 1024 * 1024
    max_string_chars: int = 4096
    request_timeout_s: float = 30.0
    retries: int = 2
    #: seconds before the first retry (doubling after each)
    retry_backoff_s: float = 0.05
    #: the Retry-After a 503 carries
    retry_after_s: int = 1


class Unavailable(Exception):
    """No replica of a deployment answered within the retries."""


def replica_lost_errors() -> tuple[type[BaseException], ...]:
    """The errors by which a Serve handle call says its replica died, was unreachable or shed the call."""
    import ray.exceptions
    from ray.serve import exceptions as serve_errors

    return (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError, serve_errors.BackPressureError,
            serve_errors.ReplicaUnavailableError, serve_errors.DeploymentUnavailableError)


async def with_retries(call: Callable[[], Awaitable[T]], config: LimitsConfig, what: str,
                       on_retry: Callable[[], None] | None = None) -> T:
    """``await call()``, sent again up to ``config.retries`` times when its replica is lost; ``Unavailable`` after."""
    lost = replica_lost_errors()
    delay = config.retry_backoff_s
    for attempt in range(config.retries + 1):
        try:
            return await call()
        except lost as exc:
            if attempt == config.retries:
                raise Unavailable(f"no {what} replica answered ({type(exc).__name__}); retry later") from exc
            log.warning("%s replica lost (%s); sending the call again", what, type(exc).__name__)
            if on_retry is not None:
                on_retry()
            await asyncio.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def long_string(records: list[dict[str, Any]], max_chars: int) -> str | None:
    """A message naming the first record field holding a string (or a list item) longer than ``max_chars``."""
    for i, record in enumerate(records):
        for key, value in record.items():
            if isinstance(value, list):
                if str not in set(map(type, value)):  # a history of ids: no string to measure
                    continue
                values = value
            else:
                values = (value,)
            for v in values:
                if isinstance(v, str) and len(v) > max_chars:
                    return (f"record {i} field {key!r}: a string of {len(v)} characters is longer than "
                            f"max_string_chars {max_chars}")
    return None


class BodyLimit:
    """ASGI middleware: 413 for a request body over ``limit()`` bytes, before the application reads it whole."""

    def __init__(self, app, limit: Callable[[], int]):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit()
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await _too_large(send, int(declared), limit)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge(seen)
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge as exc:
            await _too_large(send, exc.size, limit, at_least=True)


class _TooLarge(BaseException):
    """Raised from ``receive`` past the limit. A BaseException, so that the application's own handlers (FastAPI
    turns any Exception while reading a body into a 400) let it through to ``BodyLimit``."""

    def __init__(self, size: int):
        super().__init__(size)
        self.size = size


async def _too_large(send, size: int, limit: int, at_least: bool = False) -> None:
    body = json.dumps({"detail": f"request body of {'more than ' if at_least else ''}{size} bytes is over "
                                 f"max_body_bytes {limit}"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


@dataclass(config=STRICT)
class AuthConfig:
    """``user_config.auth`` of the Router. The bearer token is ``$LLMCTR_API_TOKEN`` in the replica's environment,
    else ``token`` here; when there is one, every write endpoint (``/v1/events``) needs ``Authorization: Bearer
    <token>``, and with ``scoring`` the scoring and retrieval routes too. Without a token nothing is checked."""

    token: str | None = None
    scoring: bool = False

    def __repr__(self) -> str:  # the token never reaches a log line
        return f"AuthConfig(token={'set' if self.token else None}, scoring={self.scoring})"

    def expected(self) -> str | None:
        import os

        return os.environ.get("LLMCTR_API_TOKEN") or self.token


def authorized(config: AuthConfig, header: str | None, write: bool) -> bool:
    """Whether a request with this Authorization header may use a write (``write``) or a scoring route."""
    import hmac

    token = config.expected()
    if not token or not (write or config.scoring):
        return True
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
