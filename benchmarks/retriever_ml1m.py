"""The LightGCN retriever on ML-1M, with its baselines measured in the same run:

- test recall@10/50/100 and NDCG@10 of LightGCN vs item popularity on the same users (every item ranked, the
  user's train positives excluded), and the training seconds of the Ray Train job;
- index build and query latency for 1,000 queries, top-10: faiss flat (exact) vs IVF vs HNSW vs a torch matmul,
  each with its recall against flat; on the LightGCN item table (queries: user vectors, inner product, as
  served) and on a random table of ``--scale-rows`` vectors (where approximate search starts to pay; random
  vectors are the hardest case for IVF / HNSW recall);
- the Retriever's calls as the scoring graph makes them (items_for_users with seen items excluded,
  similar_items, history_neighbours), 1,000 requests in one batch.

Writes benchmarks/results/retriever_ml1m.json (``--quick``: retriever_ml1m_quick.json: 1,000 sampled users,
3 epochs, a 20k-row scale table). Usage: python -m benchmarks.retriever_ml1m [--quick]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.lib import protocol as proto
from llmctr.data import prepare
from llmctr.models.retriever import Retriever
from llmctr.models.vector_index import VectorIndex
from llmctr.runtime import init_ray, setup_logging
from llmctr.train.retriever import fit_retriever, load_retriever_config

log = logging.getLogger("bench")
KINDS = [("faiss_flat", "flat", "faiss"), ("faiss_ivf", "ivf", "faiss"), ("faiss_hnsw", "hnsw", "faiss"),
         ("torch_matmul", "flat", "torch")]


def sample_users(data_dir: Path, user_field: str, n_users: int, out: Path, seed: int = 0) -> Path:
    """A prepared-dataset folder holding only ``n_users`` random train users' rows of every split."""
    train = pd.read_parquet(data_dir / "train")
    users = np.random.default_rng(seed).choice(np.unique(train[user_field]), n_users, replace=False)
    for split in ("train", "valid", "test"):
        frame = train if split == "train" else pd.read_parquet(data_dir / split)
        (out / split).mkdir(parents=True)
        frame[frame[user_field].isin(users)].to_parquet(out / split / "part-0.parquet", index=False)
    shutil.copy(data_dir / "feature_map.json", out / "feature_map.json")
    return out


def time_index(vectors, queries, k: int, normalize: bool) -> dict:
    """Build + batch-query + single-query latency of every index kind; recall@k against the exact (flat) ids."""
    rows, reference = {}, None
    for name, kind, backend in KINDS:
        t0 = time.perf_counter()
        index = VectorIndex(vectors, kind=kind, backend=backend, normalize=normalize)
        build = time.perf_counter() - t0
        index.search(queries[:10], k)  # warm-up
        t0 = time.perf_counter()
        ids, _ = index.search(queries, k)
        batch = time.perf_counter() - t0
        singles = []
        for q in queries[:200]:
            t0 = time.perf_counter()
            index.search(q[None], k)
            singles.append((time.perf_counter() - t0) * 1000)
        reference = ids if reference is None else reference  # the first kind is exact flat
        recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ids, reference)]))
        rows[name] = {"build_s": build, "batch_query_ms": batch * 1000, "per_query_in_batch_ms": batch * 1000 / len(
            queries), "single_query_p50_ms": float(np.percentile(singles, 50)), "recall_vs_exact": recall,
            "device": str(index.device)}
        log.info("%-13s build %.3fs, %d queries %.1f ms, single p50 %.3f ms, recall %.4f", name, build, len(queries),
                 batch * 1000, rows[name]["single_query_p50_ms"], recall)
    return rows


def time_calls(retriever: Retriever, test: pd.DataFrame, n: int, k: int) -> dict:
    rows = test.sample(n, replace=len(test) < n, random_state=0)
    users = rows[retriever.user_field].to_numpy()
    items = rows[retriever.item_field].to_numpy()
    out = {}
    for name, call in (("items_for_users", lambda: retriever.items_for_users(users, k)),
                       ("similar_items", lambda: retriever.similar_items(items, k)),
                       ("history_neighbours", lambda: retriever.history_neighbours(users, items, k))):
        t0 = time.perf_counter()
        call()
        out[f"{name}_ms_per_{n}"] = (time.perf_counter() - t0) * 1000
    out["requests_with_cold_user"] = int((~retriever.known_users(users)).sum())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1,000 sampled users, 3 epochs, 20k-row scale table")
    parser.add_argument("--config", default="ml1m_lightgcn")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--scale-rows", type=int)
    parser.add_argument("--artifacts", default="artifacts")
    args, prov = proto.parse_with_provenance(parser)
    setup_logging()
    init_ray()
    config = load_retriever_config(args.config)
    config.train.epochs = args.epochs or (3 if args.quick else config.train.epochs)
    data_dir, manifest = prepare(config.dataset, artifacts=args.artifacts)
    with tempfile.TemporaryDirectory() as tmp:
        train_dir = sample_users(Path(data_dir), "user_id", 1000, Path(tmp) / "sample") if args.quick else data_dir
        result = fit_retriever(config, train_dir, artifacts=Path(tmp) / "artifacts" if args.quick else args.artifacts)
        retriever = Retriever.load(result.artifact)
        test = pd.read_parquet(Path(train_dir) / "test", columns=[retriever.user_field, retriever.item_field])
    m = result.metrics
    rng = np.random.default_rng(0)
    queries = retriever.user_vectors[rng.choice(retriever.user_index.ids, args.queries)]  # known users
    items = retriever.item_vectors[retriever.item_index.ids]
    scale_rows = args.scale_rows or (20_000 if args.quick else 200_000)
    scale = rng.normal(size=(scale_rows, items.shape[1])).astype(np.float32)
    payload = {
        "dataset": config.dataset, "config": config.name, "quick": args.quick, "rows": manifest.rows,
        "sampled_users": 1000 if args.quick else None, "epochs_run": m["epochs_run"], "best_epoch": m["best_epoch"],
        "test_users": m["test_users"], "train_edges": m["train_edges"],
        "lightgcn": {key: m[f"test_{key}"] for key in ("recall@10", "recall@50", "recall@100", "ndcg@10")},
        "popularity": {key: m[f"test_popularity_{key}"] for key in ("recall@10", "recall@50", "recall@100",
                                                                     "ndcg@10")},
        "train_wall_seconds": m["train_wall_seconds"],
        "train_epoch_seconds": [h["epoch_seconds"] for h in result.history],
        "index_item_table": {"rows": len(items), "dim": int(items.shape[1]), "metric": "inner product",
                             **time_index(items, queries, args.k, False)},
        "index_random_table": {"rows": scale_rows, "dim": int(items.shape[1]), "metric": "cosine",
                               **time_index(scale, rng.normal(size=(args.queries, items.shape[1])).astype(np.float32),
                                            args.k, True)},
        "retriever_calls": time_calls(retriever, test, args.queries, args.k),
        "notes": "popularity = train positives per item, ranked for the same test users with the same exclusions. "
                 "Index recall is against faiss flat (exact). Single-query latency: p50 over 200 one-query calls.",
    }
    path = proto.write("retriever_ml1m_quick" if args.quick else "retriever_ml1m", payload, prov)
    print(path.read_text())


if __name__ == "__main__":
    main()
