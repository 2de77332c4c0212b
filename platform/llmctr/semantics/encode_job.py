"""The embedding job: unique texts -> vectors on Ray Data, through the content-addressed cache.

Texts are deduplicated and looked up in the cache first; only the missing ones go to Ray Data
``map_batches`` on an actor pool (one model load per actor, CPU or GPU). Each actor writes every
finished block to the cache at once, so an interrupted job resumes where it stopped and a re-run of a
finished one encodes nothing.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from llmctr.config import dump_config, parse_config
from llmctr.runtime import progress_off
from llmctr.semantics.cache import VectorCache, default_cache_root, text_hash
from llmctr.semantics.encoders import EncoderConfig, build_encoder, encoder_key

log = logging.getLogger(__name__)


@dataclass
class EncodeResult:
    vectors: np.ndarray  # float32 [n, d], aligned with the input texts
    key: str
    texts: int = 0  # input texts
    unique: int = 0  # distinct texts
    cache_hits: int = 0  # distinct texts found in the cache
    encoded: int = 0  # distinct texts encoded by this run (counted from what the encoders returned)
    seconds: float = 0.0
    actors: int = 0
    stats: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return {"texts": self.texts, "unique": self.unique, "cache_hits": self.cache_hits, "encoded": self.encoded,
                "seconds": round(self.seconds, 3), "actors": self.actors, "key": self.key,
                "dim": int(self.vectors.shape[1]) if self.vectors.ndim == 2 else 0}


class EmbedActor:
    """Ray Data actor: loads the encoder once, encodes a block, writes it to the cache, returns its hashes."""

    def __init__(self, config: dict, cache_root: str, key: str, threads: int = 0):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.encoder = build_encoder(parse_config(EncoderConfig, config))
        if self.encoder.key != key:
            raise RuntimeError(f"encoder key differs on this worker ({self.encoder.key} != {key}): "
                               "the model or adapter files are not the same as on the driver")
        self.cache = VectorCache(cache_root, key)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        vectors = self.encoder.encode(batch["text"].tolist())
        self.cache.write(batch["hash"].tolist(), vectors)
        return pd.DataFrame({"hash": batch["hash"], "dim": vectors.shape[1]})


def _pool(config: EncoderConfig, num_actors: int | None) -> tuple[int, dict]:
    """Actor count and per-actor resources. GPU: one actor per GPU. CPU: by default one actor per two CPUs,
    each asking for half a CPU less than its torch threads so Ray Data keeps headroom (2-CPU machines)."""
    import ray

    resources = ray.cluster_resources()
    cpus, gpus = float(resources.get("CPU", 1)), int(resources.get("GPU", 0))
    use_gpu = config.device.startswith("cuda") or (config.device == "auto" and gpus > 0)
    if use_gpu:
        if gpus < 1:
            raise ValueError(f"encoder device {config.device!r} asked for, but the Ray cluster has no GPU")
        size = num_actors or gpus
        return size, {"num_gpus": 1, "num_cpus": 1, "threads": 0}
    size = num_actors or max(1, int(cpus // 2))
    threads = max(1, min(8, int(cpus // size)))
    return size, {"num_gpus": 0, "num_cpus": max(0.5, threads - 0.5), "threads": threads}


def _run_ray(missing: list[tuple[str, str]], config: EncoderConfig, cache_root: Path, key: str,
             num_actors: int | None, block_size: int, progress: bool) -> tuple[int, int]:
    import ray
    from tqdm.auto import tqdm

    from llmctr.runtime import init_ray

    init_ray()  # no-op when connected; else $RAY_ADDRESS or a private local Ray
    size, res = _pool(config, num_actors)
    # Similar lengths together: less padding per batch.
    missing = sorted(missing, key=lambda ht: len(ht[1]))
    n_blocks = max(size, math.ceil(len(missing) / block_size))
    chunk = math.ceil(len(missing) / n_blocks)
    frames = [pd.DataFrame(missing[i:i + chunk], columns=["hash", "text"]) for i in range(0, len(missing), chunk)]
    size = min(size, len(frames))
    ds = ray.data.from_pandas(frames).map_batches(
        EmbedActor, fn_constructor_kwargs={"config": dump_config(config), "cache_root": str(cache_root), "key": key,
                                           "threads": res["threads"]},
        batch_size=None, batch_format="pandas", compute=ray.data.ActorPoolStrategy(size=size),
        num_cpus=res["num_cpus"], num_gpus=res["num_gpus"])
    done = 0
    with tqdm(total=len(missing), desc="encoding texts", unit="text", disable=progress_off(progress)) as bar:
        for batch in ds.iter_batches(batch_size=None, batch_format="pandas"):
            done += len(batch)
            bar.update(len(batch))
    return done, size


def _run_local(missing: list[tuple[str, str]], config: EncoderConfig, cache: VectorCache, block_size: int,
               progress: bool) -> int:
    from tqdm.auto import tqdm

    encoder = build_encoder(config)
    done = 0
    with tqdm(total=len(missing), desc="encoding texts", unit="text", disable=progress_off(progress)) as bar:
        for start in range(0, len(missing), block_size):
            block = missing[start:start + block_size]
            cache.write([h for h, _ in block], encoder.encode([t for _, t in block]))
            done += len(block)
            bar.update(len(block))
    return done


def encode_texts(texts: Sequence[str], config: EncoderConfig, *, cache_root: str | Path | None = None,
                 num_actors: int | None = None, block_size: int = 512, use_ray: bool = True,
                 progress: bool = True) -> EncodeResult:
    """Vectors for ``texts`` (float32 [n, d], input order), encoding only texts not yet in the cache.

    ``use_ray=False`` encodes in this process (same cache); otherwise on a Ray Data actor pool
    (``num_actors``, default one per GPU, or one per two CPUs)."""
    start = time.perf_counter()
    texts = [str(t) for t in texts]
    key = encoder_key(config)
    cache = VectorCache(cache_root or default_cache_root(), key)
    by_hash = {text_hash(t): t for t in texts}
    hashes = [text_hash(t) for t in texts]
    cached = cache.load(by_hash)
    missing = [(h, t) for h, t in by_hash.items() if h not in cached]
    result = EncodeResult(vectors=np.zeros((0, 0), np.float32), key=key, texts=len(texts), unique=len(by_hash),
                          cache_hits=len(by_hash) - len(missing))
    if missing:
        log.info("encoding %d of %d distinct texts (%d cached) with encoder %s", len(missing), len(by_hash),
                 result.cache_hits, key)
        cache.describe({"key": key, "config": dump_config(config)})
        if use_ray:
            result.encoded, result.actors = _run_ray(missing, config, cache.root, key, num_actors, block_size,
                                                     progress)
        else:
            result.encoded = _run_local(missing, config, cache, block_size, progress)
        cached = cache.load(by_hash)
    absent = [h for h in by_hash if h not in cached]
    if absent:
        raise RuntimeError(f"{len(absent)} texts have no vector in the cache {cache.dir} after encoding")
    if texts:
        result.vectors = np.stack([cached[h] for h in hashes]).astype(np.float32, copy=False)
    result.seconds = time.perf_counter() - start
    return result
