"""Ray Serve application: FastAPI ingress with POST /v1/score, GET /healthz and OpenAPI at /docs.

Requests are validated one by one (so a bad body gets its own 4xx), then scored together through
``@serve.batch``. ``user_config`` (max_records, max_batch_size, batch_wait_timeout_s, threads) can be
changed in the Serve YAML without a redeploy.
"""


import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, HTTPException
from ray import serve

from llmctr import storage
from llmctr.data.paths import artifacts_root
from llmctr.serve.schemas import Health, ScoreRequest, ScoreResponse
from llmctr.serve.scorer import RecordError, Scorer

log = logging.getLogger(__name__)
api = FastAPI(title="llmctr scoring", version="1", description="Click-through-rate scoring over raw features.")


@serve.deployment(ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=64)
@serve.ingress(api)
class ScoringService:
    def __init__(self, model_dir: str):
        self.scorer = Scorer.load(model_dir)
        self.max_records = 1000
        log.info("loaded %s %s from %s", self.scorer.name, self.scorer.version, model_dir)

    def reconfigure(self, config: dict[str, Any]) -> None:
        self.max_records = int(config.get("max_records", 1000))
        self.score_batch.set_max_batch_size(int(config.get("max_batch_size", 16)))
        self.score_batch.set_batch_wait_timeout_s(float(config.get("batch_wait_timeout_s", 0.002)))
        torch.set_num_threads(int(config.get("threads", 1)))

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def score_batch(self, requests: list[list[dict[str, Any]]]) -> list[list[float]]:
        probs = self.scorer.score([r for recs in requests for r in recs])
        cuts = np.cumsum([len(r) for r in requests])[:-1]
        return [p.tolist() for p in np.split(probs, cuts)]

    @api.post("/v1/score", response_model=ScoreResponse)
    async def score(self, body: ScoreRequest) -> ScoreResponse:
        if len(body.records) > self.max_records:
            raise HTTPException(413, f"too many records: {len(body.records)} > max_records {self.max_records}")
        try:
            self.scorer.validate(body.records)
        except RecordError as exc:
            raise HTTPException(422, str(exc)) from exc
        probs = await self.score_batch(body.records)
        return ScoreResponse(model=self.scorer.name, version=self.scorer.version, probabilities=probs)

    @api.get("/healthz", response_model=Health)
    async def healthz(self) -> Health:
        return Health(status="ok", model=self.scorer.name, version=self.scorer.version)


def build_app(args: dict[str, Any]) -> serve.Application:
    """Serve builder (``import_path: llmctr.serve.app:build_app``).

    args: ``model_dir`` (a version folder or a model folder with LATEST; relative paths resolve against
    the artifacts root, $LLMCTR_ARTIFACTS or ./artifacts), or ``experiment`` (its latest version).
    """
    model_dir = args.get("model_dir") or str(Path("models") / args.get("experiment", "ml1m_deepfm"))
    path = model_dir if storage.is_uri(model_dir) else Path(model_dir)
    if not storage.is_uri(path) and not path.is_absolute():
        path = path.resolve() if path.exists() else storage.join(artifacts_root(), str(path))
    return scoring_app(path, args.get("user_config"), int(args.get("num_replicas", 1)))


DEFAULT_USER_CONFIG = {"max_records": 1000, "max_batch_size": 16, "batch_wait_timeout_s": 0.002, "threads": 1}


def scoring_app(model_dir: "str | Path", user_config: "dict[str, Any] | None" = None,
                num_replicas: int = 1, max_replicas_per_node: "int | None" = None) -> serve.Application:
    """The app for one model; ``max_replicas_per_node=1`` spreads replicas so one node's loss leaves others."""
    options = {"user_config": {**DEFAULT_USER_CONFIG, **(user_config or {})}, "num_replicas": num_replicas}
    if max_replicas_per_node:
        options["max_replicas_per_node"] = max_replicas_per_node
    return ScoringService.options(**options).bind(str(model_dir))
