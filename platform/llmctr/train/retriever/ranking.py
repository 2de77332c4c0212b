"""Top-k retrieval metrics (recall@k, NDCG@k) over all items, and the per-user item lists they need.

Protocol (as in the LightGCN paper): every item id of the vocabulary is ranked for each evaluation user, the
user's train positives (the graph's edges) are excluded from the ranking, and the targets are the user's
positives of the evaluated split that are not already train positives (a masked item could never be found).
Evaluation users are those with a known id and at least one target; a baseline is scored on the same users.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from llmctr.data.feature_map import FIRST_ID
from llmctr.data.interactions import UserItems, contains


def evaluation_users(targets: UserItems) -> np.ndarray:
    """Known users (id >= FIRST_ID) with at least one target."""
    users = np.flatnonzero(targets.lengths() > 0)
    return users[users >= FIRST_ID]


def item_popularity(edges: UserItems, n_items: int) -> np.ndarray:
    """Train positives per item id: the popularity baseline's scores."""
    return np.bincount(edges.items, minlength=n_items).astype(np.float32)


ScoreFn = Callable[[torch.Tensor], torch.Tensor]  # user ids [U] → scores over all item ids [U, n_items]


@torch.inference_mode()
def ranking_metrics(score_fn: ScoreFn, users: np.ndarray, targets: UserItems, seen: UserItems, ks: list[int],
                    n_items: int, prefix: str = "", device: torch.device | str = "cpu",
                    chunk: int = 1024) -> dict[str, float]:
    """Mean recall@k and NDCG@k over ``users`` (binary relevance; NDCG's ideal ranking puts min(k, targets) hits
    first), ranking every item id >= FIRST_ID with the user's ``seen`` items excluded."""
    k_max = min(max(ks), n_items - FIRST_ID)
    target_keys = targets.keys(n_items)
    discounts = 1.0 / np.log2(np.arange(2, k_max + 2))
    sums = {f"{prefix}{m}@{k}": 0.0 for k in ks for m in ("recall", "ndcg")}
    for start in range(0, len(users), chunk):
        batch = np.asarray(users[start:start + chunk], np.int64)
        scores = score_fn(torch.from_numpy(batch).to(device)).float().clone()
        scores[:, :FIRST_ID] = -torch.inf
        owner, entry = seen.gather(batch)
        scores[torch.from_numpy(owner).to(device), torch.from_numpy(seen.items[entry]).to(device)] = -torch.inf
        top = torch.topk(scores, k_max, dim=1).indices.cpu().numpy()
        hits = contains(target_keys, batch[:, None] * n_items + top).astype(np.float64)
        n_targets = targets.lengths(batch)
        for k in ks:
            ideal = np.cumsum(discounts)[np.minimum(n_targets, min(k, k_max)) - 1]
            sums[f"{prefix}recall@{k}"] += float((hits[:, :k].sum(1) / n_targets).sum())
            sums[f"{prefix}ndcg@{k}"] += float(((hits[:, :k] * discounts[:k]).sum(1) / ideal).sum())
    return {name: total / max(len(users), 1) for name, total in sums.items()}
