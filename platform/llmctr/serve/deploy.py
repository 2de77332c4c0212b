"""Deploying the scoring application from Python (CLI, demo, tests); ``serve run serve_configs/*.yaml``
deploys the same application from YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray import serve

from llmctr import storage
from llmctr.serve.app import scoring_app

APP_NAME = "llmctr"


def deploy(model_dir: str | Path, host: str = "127.0.0.1", port: int = 8000,
           user_config: dict[str, Any] | None = None, num_replicas: int = 1,
           max_replicas_per_node: int | None = None) -> str:
    """Start Serve's HTTP proxy (if needed) and run the app; return its base URL."""
    serve.start(http_options={"host": host, "port": port})
    location = model_dir if storage.is_uri(model_dir) else Path(model_dir).resolve()
    app = scoring_app(location, user_config, num_replicas, max_replicas_per_node)
    serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
    return f"http://{host}:{port}"
