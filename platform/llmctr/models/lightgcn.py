"""LightGCN (He et al., SIGIR 2020): collaborative filtering by propagating user and item embeddings over the
user-item graph, with nothing else in the layer (no weights, no non-linearity: the paper shows both hurt CF).

Node ids are the feature-map ids of the user and the item key fields (0 pad, 1 OOV, 2.. vocabulary), so the
exported vectors line up with the feature map row for row. Padding and OOV rows have no edges: they keep their
ego embedding, scaled by 1 / (layers + 1), and the retriever never returns them.

Pure module: the graph is data handed in (``normalized_adjacency``), training lives in ``llmctr.train``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from pydantic import Field
from pydantic.dataclasses import dataclass
from torch import nn

from llmctr.config import STRICT


@dataclass(config=STRICT)
class LightGCNConfig:
    embedding_dim: int = Field(64, gt=0)
    #: propagation layers K; the output is the mean of layers 0..K
    layers: int = Field(3, ge=0)
    #: std of the normal initialisation of the ego embeddings (the paper's 0.1)
    init_std: float = Field(0.1, gt=0)


def normalized_adjacency(user_ids: torch.Tensor, item_ids: torch.Tensor, n_users: int, n_items: int
                         ) -> torch.Tensor:
    """D^-1/2 A D^-1/2 of the bipartite graph, as a coalesced sparse COO matrix over n_users + n_items nodes
    (users first, item i at row n_users + i). A repeated (user, item) edge counts once; isolated nodes get zero
    rows instead of a division by zero."""
    user_ids = torch.as_tensor(user_ids, dtype=torch.int64)
    item_ids = torch.as_tensor(item_ids, dtype=torch.int64)
    if len(user_ids) and (user_ids.min() < 0 or user_ids.max() >= n_users):
        raise ValueError(f"user ids must lie in [0, {n_users}), got [{user_ids.min()}, {user_ids.max()}]")
    if len(item_ids) and (item_ids.min() < 0 or item_ids.max() >= n_items):
        raise ValueError(f"item ids must lie in [0, {n_items}), got [{item_ids.min()}, {item_ids.max()}]")
    pairs = torch.unique(user_ids * n_items + item_ids)
    users, items = pairs // n_items, pairs % n_items + n_users
    rows, cols = torch.cat([users, items]), torch.cat([items, users])
    degree = torch.bincount(rows, minlength=n_users + n_items).float()
    inv_sqrt = torch.where(degree > 0, degree.clamp(min=1).rsqrt(), torch.zeros_like(degree))
    values = inv_sqrt[rows] * inv_sqrt[cols]
    size = (n_users + n_items, n_users + n_items)
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), values, size, check_invariants=True).coalesce()


class _SymmetricSpMM(torch.autograd.Function):
    """A @ x for a symmetric sparse A, whose backward is A @ grad: torch's generic backward transposes and
    re-coalesces A on every step, which more than doubles a step's time on CPU."""

    @staticmethod
    def forward(ctx, adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adjacency = adjacency
        return torch.sparse.mm(adjacency, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, torch.sparse.mm(ctx.adjacency, grad)


class BPRScores(NamedTuple):
    positive: torch.Tensor  # [B] score of (user, positive item)
    negative: torch.Tensor  # [B, N] scores of (user, negative item)
    ego_sq_norm: torch.Tensor  # scalar: 0.5 * summed squared layer-0 norms of the batch's users and items / B


class LightGCN(nn.Module):
    def __init__(self, n_users: int, n_items: int, config: LightGCNConfig, adjacency: torch.Tensor | None = None):
        super().__init__()
        self.n_users, self.n_items, self.layers = n_users, n_items, config.layers
        self.user = nn.Embedding(n_users, config.embedding_dim)
        self.item = nn.Embedding(n_items, config.embedding_dim)
        nn.init.normal_(self.user.weight, std=config.init_std)
        nn.init.normal_(self.item.weight, std=config.init_std)
        # Not a buffer: the graph is data (kept out of the state dict, and DDP cannot broadcast sparse buffers).
        self.adjacency = adjacency

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final user and item vectors: the mean of the ego embeddings and their K propagations."""
        if self.adjacency is None:
            raise RuntimeError("LightGCN has no graph: pass adjacency=normalized_adjacency(...)")
        ego = torch.cat([self.user.weight, self.item.weight])
        if self.adjacency.device != ego.device:
            self.adjacency = self.adjacency.to(ego.device)
        layer, total = ego, ego
        for _ in range(self.layers):
            layer = _SymmetricSpMM.apply(self.adjacency, layer)
            total = total + layer
        final = total / (self.layers + 1)
        return final[: self.n_users], final[self.n_users:]

    def forward(self, users: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor) -> BPRScores:
        """``users`` [B], ``positives`` [B], ``negatives`` [B, N] → the BPR scores of the batch (inner products of
        the propagated vectors) and the L2 term on its ego embeddings."""
        user_vecs, item_vecs = self.propagate()
        u = user_vecs[users]
        positive = (u * item_vecs[positives]).sum(-1)
        negative = torch.einsum("bd,bnd->bn", u, item_vecs[negatives])
        sq = (self.user(users).pow(2).sum() + self.item(positives).pow(2).sum() + self.item(negatives).pow(2).sum())
        return BPRScores(positive, negative, 0.5 * sq / len(users))


def bpr_loss(scores: BPRScores, l2: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Bayesian personalised ranking: -log σ(s⁺ − s⁻) averaged over every (positive, negative) pair, plus ``l2``
    times the batch's ego-embedding norm (LightGCN regularises layer 0 only: the rest carries no weights)."""
    ranking = -F.logsigmoid(scores.positive.unsqueeze(-1) - scores.negative).mean()
    regulariser = l2 * scores.ego_sq_norm
    return ranking + regulariser, {"bpr": ranking.detach(), "l2": regulariser.detach()}
