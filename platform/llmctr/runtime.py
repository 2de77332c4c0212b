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


TRAIN_LOG_LEVEL_ENV = "LLMCTR_TRAIN_LOG_LEVEL"


def setup_logging(verbose: bool = False) -> None:
    """Our loggers at INFO (DEBUG with ``verbose``). Chatty libraries stay at WARNING unless ``verbose``: httpx logs
    every request at INFO, and Ray Train's own console lines (worker group start, "Checkpoint successfully
    created", "Reporting training result ...") would bury our per-epoch lines; Ray's session log files keep
    them all."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.INFO if verbose else logging.WARNING)
    if verbose:
        os.environ.setdefault(TRAIN_LOG_LEVEL_ENV, "INFO")


def train_run_config(name: str, storage_path: str, *, max_failures: int | None = None, callbacks=None):
    """The ``ray.train.RunConfig`` of every llmctr training job. ``max_failures`` (given for resumable loops):
    restart the worker group that many times from the last of the two checkpoints kept. Ray Train's console
    logs at $LLMCTR_TRAIN_LOG_LEVEL (default WARNING; ``-v``: INFO)."""
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig

    resumable = {} if max_failures is None else {
        "checkpoint_config": CheckpointConfig(num_to_keep=2),
        "failure_config": FailureConfig(max_failures=max_failures)}
    level = os.environ.get(TRAIN_LOG_LEVEL_ENV, "WARNING")
    return RunConfig(name=name, storage_path=storage_path, callbacks=callbacks,
                     logging_config=LoggingConfig(log_level=level), **resumable)
