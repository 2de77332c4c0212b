"""The scoring graph's worker deployments, each a small class with one job, called by the ``Router``
(``graph.py``): ``DistilledScorer`` (the student, every record), ``RetrieverDeployment`` (RAG context),
``LLMHeadDeployment`` (the early-exit LLM head) and ``HistoryStoreDeployment`` (users' recent behaviour for records
that do not carry their own). Behaviour knobs live in ``user_config`` (``reconfigure``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ray import serve

from llmctr import storage
from llmctr.data.history_store import USER_HISTORY, HistoryStore
from llmctr.models.artifact import resolve_artifact
from llmctr.serve.student import LoadedStudent, score_requests, set_batching, set_threads
from llmctr.storage import resolve_artifact_path

log = logging.getLogger(__name__)


@serve.deployment(ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=64)
class DistilledScorer:
    """The exported student (never calls the LLM) as its own deployment (``student_placement: deployment``:
    ``student.py``), batching concurrent requests into one forward. ``user_config.model_dir`` names the artifact:
    changing it loads the new version and swaps it in between two batches."""

    def __init__(self, model_dir: str):
        self.student = LoadedStudent(model_dir)

    def reconfigure(self, config: dict[str, Any]) -> None:
        self.student.reconfigure(config)
        set_batching(self.score, config)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0)
    async def score(self, requests: list[list[dict]], cold_fields: list[tuple[str, ...]]) -> list[dict]:
        """Per request: logits and the cold-start mask, or the validation error (``student.score_requests``)."""
        return score_requests(self.student.scorer, requests, cold_fields)

    def info(self) -> dict[str, str]:
        return self.student.info()


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=32)
class RetrieverDeployment:
    """LightGCN vectors + FAISS: each routed record's retrieved interactions (the LLM head's RAG context), and
    ``/v1/retrieve``."""

    def __init__(self, retriever_dir: str, index_kind: str = "auto"):
        from llmctr.models.retriever import Retriever

        self.retriever = Retriever.load(resolve_artifact_path(retriever_dir), index_kind=index_kind)

    def reconfigure(self, config: dict[str, Any]) -> None:
        set_threads(config)

    async def neighbours(self, records: list[dict], k: int) -> list[list[tuple[str, int]]]:
        from llmctr.semantics.rag import retrieve_neighbours

        return retrieve_neighbours(records, self.retriever, k)

    async def retrieve(self, user: Any, item: Any, k: int) -> dict[str, Any]:
        r = self.retriever
        out: dict[str, Any] = {"retriever": r.version}
        if user is not None:
            uid = r.encode_ids(r.user_field, [user])
            out["items_for_user"] = _neighbours(r, r.item_field, *r.items_for_users(uid, k))
            out["similar_users"] = _neighbours(r, r.user_field, *r.similar_users(uid, k))
        if item is not None:
            iid = r.encode_ids(r.item_field, [item])
            out["similar_items"] = _neighbours(r, r.item_field, *r.similar_items(iid, k))
        return out

    def info(self) -> dict[str, str]:
        return {"version": self.retriever.version}


def _neighbours(r, field: str, ids: np.ndarray, scores: np.ndarray) -> list[dict]:
    keep = ids[0] > 1  # padding / OOV rows are never neighbours
    raw = r.raw_values(field, ids[0][keep])
    return [{"id": _plain(v), "score": float(s)} for v, s in zip(raw, scores[0][keep])]


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def replica_device(gpu_ids: list, cuda_available: bool) -> str:
    """``cuda`` when Ray gave this replica a GPU (``ray_actor_options.num_gpus``) and torch can use it, else ``cpu``
    (with a warning when a GPU was given but torch has no CUDA: a CPU build of torch on a GPU node)."""
    if gpu_ids and not cuda_available:
        log.warning("this replica was given GPU(s) %s but torch cannot use CUDA (torch %s): running on the CPU",
                    gpu_ids, torch.__version__)
    return "cuda" if gpu_ids and cuda_available else "cpu"


@serve.deployment(ray_actor_options={"num_cpus": 1}, max_ongoing_requests=16)
class LLMHeadDeployment:
    """The LoRA-tuned encoder with a CTR head after several layers; stops at the first confident head. On the GPU
    the replica is given (``ray_actor_options.num_gpus``; Ray sets ``CUDA_VISIBLE_DEVICES`` to it), else the CPU."""

    def __init__(self, head_dir: str):
        import ray

        from llmctr.models.llm_head import EarlyExitHead

        self.device = replica_device(ray.get_gpu_ids(), torch.cuda.is_available())
        self.head = EarlyExitHead.load(resolve_artifact_path(head_dir), device=self.device)

    def reconfigure(self, config: dict[str, Any]) -> None:
        if config.get("thresholds"):
            self.head.thresholds = [float(t) for t in config["thresholds"]]
        set_threads(config)

    async def score(self, records: list[dict], base_logits: np.ndarray,
                    neighbours: list[list[tuple[str, int]]] | None) -> dict[str, Any]:
        """Scores with early exit; ``neighbours``: the retriever's (raw item id, label) per record (None without a
        retriever: the head then reads that the user has no history; not read by a head that reads the request's
        own history)."""
        contexts = self.head.contexts_for(records, neighbours)
        probs, _, layers_run = self.head.score(records, base_logits, contexts)
        return {"probs": np.asarray(probs, dtype=float), "layers_run": np.asarray(layers_run, dtype=int)}

    def info(self) -> dict[str, Any]:
        return {"version": self.head.version, "neighbours": self.head.neighbours, "device": self.device,
                "reads_history": self.head.reads_history}


# No CPU reserved: a dict lookup per request, and the local graph's other deployments already reserve the 2 CPUs of
# a 2-core machine (with 0.1 here, `llmctr demo` on ML-1M could not schedule its Router).
@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=128)
class HistoryStoreDeployment:
    """Each user's last interactions (``llmctr.data.history_store``): starts from the student artifact's
    ``user_history.json`` and replays its event log, so ``POST /v1/events`` survives a replica restart.
    ``events_log``: the log's path (default: ``events.jsonl`` in the student's model folder, beside its versions;
    for a model on an object store, in the local cache); ``start_empty``: ignore the artifact's histories, only
    the events count."""

    def __init__(self, model_dir: str, events_log: str | None = None, start_empty: bool = False):
        location = resolve_artifact(resolve_artifact_path(model_dir))
        folder = storage.local_copy(location)
        if events_log:
            log_path = Path(events_log)
        elif storage.is_uri(location):
            log_path = storage.cache_root() / "events" / f"{Path(folder).name}.jsonl"
        else:
            log_path = Path(location).parent / "events.jsonl"
        if start_empty:
            spec = HistoryStore.load(folder).spec
            self.store = HistoryStore(spec, log_path=log_path)
        else:
            self.store = HistoryStore.load(folder, log_path=log_path)
        log.info("history store: %d users from %s, %d events replayed from %s", self.store.n_users,
                 folder / USER_HISTORY, self.store.replayed, log_path)

    def fill(self, records: list[dict]) -> list[dict]:
        return self.store.fill(records)

    def append(self, events: list[dict]) -> int:
        return self.store.append(events)

    def info(self) -> dict[str, Any]:
        return {"field": self.store.field, "users": self.store.n_users, "max_len": self.store.max_len,
                "user_field": self.store.user_field, "item_field": self.store.item_field}
