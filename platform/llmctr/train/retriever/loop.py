"""The per-worker LightGCN training loop run by Ray Train: BPR with uniform negative sampling, validation
recall@k every epoch, a checkpoint every epoch (resumable after a worker dies), and test recall / NDCG of the
best epoch against a popularity baseline on the same users.

Every worker holds the whole graph (LightGCN propagates over all of it) and trains on its own slice of the
positive edges; DDP averages the gradients. All ranks evaluate the full validation split, so they take identical
early-stopping decisions.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import ray.train
import ray.train.torch
import torch

from llmctr.config import parse_config
from llmctr.data.feature_map import FIRST_ID, LABEL
from llmctr.data.interactions import Interactions, UserItems, contains
from llmctr.data.pipeline import SPLITS
from llmctr.models.artifact import cpu_state, unwrap
from llmctr.models.lightgcn import LightGCN, bpr_loss, normalized_adjacency
from llmctr.train import feed
from llmctr.train.checkpoint import best_epoch_metrics, new_loop_state, record_epoch
from llmctr.train.job import report, restore, start_worker
from llmctr.train.retriever.config import RetrieverConfig
from llmctr.train.retriever.ranking import ScoreFn, evaluation_users, item_popularity, ranking_metrics

log = logging.getLogger(__name__)


class NegativeSampler:
    """Uniform negatives over the item vocabulary, redrawn (a few rounds, which is cheap) where they hit one of
    the user's train positives."""

    def __init__(self, seen: UserItems, n_items: int, rounds: int = 3):
        self.keys, self.n_items, self.rounds = seen.keys(n_items), n_items, rounds

    def sample(self, users: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
        negatives = rng.integers(FIRST_ID, self.n_items, size=(len(users), count))
        for _ in range(self.rounds):
            clash = contains(self.keys, users[:, None] * self.n_items + negatives)
            if not clash.any():
                break
            negatives[clash] = rng.integers(FIRST_ID, self.n_items, int(clash.sum()))
        return negatives


def bpr_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, users: np.ndarray, items: np.ndarray,
              sampler: NegativeSampler, batch_size: int, negatives: int, l2: float, rng: np.random.Generator,
              device: torch.device | str = "cpu") -> dict[str, float]:
    """One pass over the given positive edges in the given order; mean loss terms and pairs per second."""
    model.train()
    totals, count, t0 = {"train_loss": 0.0, "train_bpr": 0.0, "train_l2": 0.0}, 0, time.perf_counter()
    for start in range(0, len(users), batch_size):
        u, i = users[start:start + batch_size], items[start:start + batch_size]
        j = sampler.sample(u, negatives, rng)
        batch = [feed.as_tensor(a).to(device) for a in (u, i, j)]
        loss, terms = bpr_loss(model(*batch), l2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for name, value in (("train_loss", loss), ("train_bpr", terms["bpr"]), ("train_l2", terms["l2"])):
            totals[name] += value.item() * len(u)
        count += len(u)
    seconds = time.perf_counter() - t0
    return {**{k: v / max(count, 1) for k, v in totals.items()}, "pairs_per_s": count * negatives / seconds,
            "epoch_seconds": seconds}


def epoch_shard(n_edges: int, epoch: int, seed: int, rank: int, world: int) -> np.ndarray:
    """This rank's edge indices for an epoch: one shuffle shared by all ranks, cut into equal strided slices (DDP
    needs the same number of steps on every rank)."""
    order = np.random.default_rng([seed, epoch]).permutation(n_edges)
    return order[rank:n_edges - n_edges % world:world]


def dot_scores(model: torch.nn.Module) -> ScoreFn:
    """The model's ranking scores (inner products of the propagated vectors, as trained) for ``ranking_metrics``."""
    with torch.inference_mode():
        user_vecs, item_vecs = unwrap(model).propagate()
    return lambda users: user_vecs[users] @ item_vecs.T


def load_interactions(location: str, user_field: str, item_field: str) -> Interactions:
    data = feed.read_split(location, [user_field, item_field])
    return Interactions(data[user_field].numpy().astype(np.int64), data[item_field].numpy().astype(np.int64),
                        data[LABEL].numpy())


def retriever_loop_per_worker(config: dict[str, Any]) -> None:
    cfg = parse_config(RetrieverConfig, config["retriever"], "retriever")
    tc = cfg.train
    rank, world, device = start_worker(tc.seed, config["threads"])
    n_users, n_items = config["n_users"], config["n_items"]
    splits = {s: load_interactions(config["splits"][s], cfg.user_field, cfg.item_field) for s in SPLITS}
    edge_users, edge_items = splits["train"].edges(cfg.edges)
    seen = UserItems.from_pairs(edge_users, edge_items, n_users)
    targets = {s: splits[s].positives(n_users).without(seen, n_items) for s in ("valid", "test")}
    users = {s: evaluation_users(t) for s, t in targets.items()}
    popularity = torch.from_numpy(item_popularity(seen, n_items)).to(device)

    def evaluate(score_fn, split: str, prefix: str) -> dict[str, float]:
        return ranking_metrics(score_fn, users[split], targets[split], seen, cfg.recall_ks, n_items, prefix, device)

    def popular(u: torch.Tensor) -> torch.Tensor:
        return popularity.expand(len(u), -1)

    model = LightGCN(n_users, n_items, cfg.model, normalized_adjacency(edge_users, edge_items, n_users, n_items))
    optimizer = torch.optim.Adam(model.parameters(), lr=tc.lr)
    state = new_loop_state(valid_popularity=evaluate(popular, "valid", "valid_popularity_"))
    best, state = restore(model, optimizer, state, rank)
    model = ray.train.torch.prepare_model(model) if world > 1 else model.to(device)
    select = f"valid_recall@{cfg.select_k}"
    sampler = NegativeSampler(seen, n_items)

    while state["epoch"] < tc.epochs and state["bad_epochs"] < tc.early_stopping_patience:
        epoch = state["epoch"]
        shard = epoch_shard(len(edge_users), epoch, tc.seed, rank, world)
        rng = np.random.default_rng([tc.seed, epoch, rank, 1])
        metrics = bpr_epoch(model, optimizer, edge_users[shard], edge_items[shard], sampler, tc.batch_size,
                            tc.negatives, tc.l2, rng, device)
        metrics["pairs_per_s"] *= world
        metrics.update(evaluate(dot_scores(model), "valid", "valid_"), epoch=epoch + 1)
        best = record_epoch(state, metrics, metrics[select], model, best)
        if rank == 0:
            log.info("epoch %d/%d: loss %.4f, %s %.4f, %.0f pairs/s", epoch + 1, tc.epochs, metrics["train_loss"],
                     select, metrics[select], metrics["pairs_per_s"])
        report(rank, metrics, cpu_state(model), best, optimizer, state)

    unwrap(model).load_state_dict(best)
    final = {**evaluate(dot_scores(model), "test", "test_"),
             **evaluate(popular, "test", "test_popularity_"), **state["valid_popularity"]}
    final.update(best_epoch_metrics(state))
    final.update(best_epoch=state["best_epoch"], epochs_run=state["epoch"], valid_users=len(users["valid"]),
                 test_users=len(users["test"]), train_edges=len(edge_users), final=True)
    report(rank, final, cpu_state(model), best, optimizer, state)
