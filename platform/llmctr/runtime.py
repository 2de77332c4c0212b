"""Starting or joining Ray the same way from the CLI, jobs, benchmarks and tests."""

from __future__ import annotations

import logging
import os

import ray


def init_ray(address: str | None = None, num_cpus: int | None = None, dashboard: bool = True) -> None:
    """Join ``address`` (or $RAY_ADDRESS; ``auto`` finds a ``ray start`` cluster on this machine) if given,
    else start a private local Ray; no-op if already connected.

    ``dashboard``: also start the dashboard, which serves Ray's State API. Ray Train's placement-group cleaner
    polls that API (without it, it logs a warning every few seconds), and Ray Tune depends on the cleaner: a trial
    that Tune stops leaves its Ray Train placement group behind until the cleaner frees it.
    """
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
        return
    # A private local cluster: token auth only gets in the way of localhost tools here.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from llmctr.serve.fast_ingress import apply_fast_ingress_env

    apply_fast_ingress_env(local=True)  # HAProxy ingress for any Serve app on this cluster (serve/fast_ingress.py)
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=dashboard, logging_level=logging.WARNING)


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
