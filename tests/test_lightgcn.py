"""LightGCN maths by hand (adjacency, propagation, BPR), the ranking metrics by hand, and a planted-community graph
on which the trained model must beat popularity clearly. All in process (no Ray)."""

import math

import numpy as np
import pytest
import torch

from llmctr.data.interactions import UserItems
from llmctr.models.lightgcn import BPRScores, LightGCN, LightGCNConfig, bpr_loss, normalized_adjacency
from llmctr.train.retriever.loop import NegativeSampler, bpr_epoch, epoch_shard
from llmctr.train.retriever.ranking import evaluation_users, item_popularity, ranking_metrics

# 2 users x 3 items: u0-i0, u0-i1, u1-i1, u1-i2 (u0-i0 given twice: it must count once).
USERS, ITEMS = torch.tensor([0, 0, 1, 1, 0]), torch.tensor([0, 1, 1, 2, 0])
R2, H = 1 / math.sqrt(2), 0.5  # degrees: u0 2, u1 2, i0 1, i1 2, i2 1


def test_normalized_adjacency_by_hand():
    a = normalized_adjacency(USERS, ITEMS, n_users=2, n_items=3).to_dense()
    expected = torch.tensor([  # nodes: u0 u1 i0 i1 i2
        [0, 0, R2, H, 0],
        [0, 0, 0, H, R2],
        [R2, 0, 0, 0, 0],
        [H, H, 0, 0, 0],
        [0, R2, 0, 0, 0]])
    torch.testing.assert_close(a, expected)


def test_isolated_nodes_get_zero_rows_not_nan():
    a = normalized_adjacency(torch.tensor([1]), torch.tensor([2]), n_users=3, n_items=4).to_dense()
    assert torch.isfinite(a).all() and a.sum() == 2.0  # one edge, both degrees 1, stored both ways


def test_adjacency_rejects_ids_outside_the_table():
    with pytest.raises(ValueError, match="item ids must lie in"):
        normalized_adjacency(torch.tensor([0]), torch.tensor([3]), n_users=2, n_items=3)


def test_one_propagation_step_by_hand():
    model = LightGCN(2, 3, LightGCNConfig(embedding_dim=1, layers=1), normalized_adjacency(USERS, ITEMS, 2, 3))
    with torch.no_grad():
        model.user.weight.copy_(torch.tensor([[1.0], [2.0]]))
        model.item.weight.copy_(torch.tensor([[10.0], [20.0], [40.0]]))
    users, items = model.propagate()
    # layer 1: u0 = R2*10 + H*20, u1 = H*20 + R2*40, i0 = R2*1, i1 = H*1 + H*2, i2 = R2*2; output = mean(layer 0, 1)
    torch.testing.assert_close(users.detach(), torch.tensor([[(1 + R2 * 10 + 10) / 2], [(2 + 10 + R2 * 40) / 2]]))
    torch.testing.assert_close(items.detach(), torch.tensor([[(10 + R2) / 2], [(20 + 1.5) / 2], [(40 + 2 * R2) / 2]]))


def test_symmetric_spmm_gradient_matches_dense_autograd():
    adjacency = normalized_adjacency(USERS, ITEMS, 2, 3)
    model = LightGCN(2, 3, LightGCNConfig(embedding_dim=4, layers=3), adjacency)
    users, items = model.propagate()
    (users.pow(2).sum() + items[1].sum()).backward()
    ego = torch.cat([model.user.weight, model.item.weight]).detach().requires_grad_()
    dense, layer, total = adjacency.to_dense(), ego, ego
    for _ in range(3):
        layer = dense @ layer
        total = total + layer
    final = total / 4
    (final[:2].pow(2).sum() + final[3].sum()).backward()
    torch.testing.assert_close(torch.cat([model.user.weight.grad, model.item.weight.grad]), ego.grad)


def test_bpr_loss_by_hand():
    scores = BPRScores(positive=torch.tensor([2.0, 0.0]), negative=torch.tensor([[0.0, 1.0], [0.0, 0.0]]),
                       ego_sq_norm=torch.tensor(3.0))
    loss, terms = bpr_loss(scores, l2=0.1)
    pairs = [2.0 - 0.0, 2.0 - 1.0, 0.0, 0.0]  # s+ - s- for every (positive, negative) pair
    expected = sum(math.log(1 + math.exp(-d)) for d in pairs) / 4
    assert terms["bpr"].item() == pytest.approx(expected)
    assert terms["l2"].item() == pytest.approx(0.3)
    assert loss.item() == pytest.approx(expected + 0.3)


def test_forward_scores_and_ego_norm_by_hand():
    model = LightGCN(2, 3, LightGCNConfig(embedding_dim=1, layers=0), normalized_adjacency(USERS, ITEMS, 2, 3))
    with torch.no_grad():
        model.user.weight.copy_(torch.tensor([[1.0], [2.0]]))
        model.item.weight.copy_(torch.tensor([[3.0], [4.0], [5.0]]))
    out = model(torch.tensor([1]), torch.tensor([0]), torch.tensor([[1, 2]]))  # no layers: plain dot products
    torch.testing.assert_close(out.positive, torch.tensor([6.0]))
    torch.testing.assert_close(out.negative, torch.tensor([[8.0, 10.0]]))
    assert out.ego_sq_norm.item() == pytest.approx(0.5 * (4 + 9 + 16 + 25))


def test_ranking_metrics_by_hand():
    """One user (id 2), items 2..6 scored 5,4,3,2,1; item 3 is a train positive (masked); targets items 4 and 6."""
    n_items = 7
    seen = UserItems.from_pairs(np.array([2]), np.array([3]), n_users=3)
    targets = UserItems.from_pairs(np.array([2, 2]), np.array([4, 6]), n_users=3)
    scores = torch.tensor([[9.0, 9.0, 5.0, 4.0, 3.0, 2.0, 1.0]])  # pad / OOV rows score high: they must be ignored
    m = ranking_metrics(lambda u: scores.expand(len(u), -1), np.array([2]), targets, seen, [1, 2, 4], n_items)
    # ranking after masking: 2, 4, 5, 6 → hits at ranks 2 and 4
    assert m["recall@1"] == 0.0 and m["recall@2"] == 0.5 and m["recall@4"] == 1.0
    ideal = 1 + 1 / math.log2(3)
    assert m["ndcg@2"] == pytest.approx((1 / math.log2(3)) / ideal)
    assert m["ndcg@4"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / ideal)


def test_targets_exclude_train_positives_and_users_need_a_known_id():
    train = UserItems.from_pairs(np.array([2, 3]), np.array([5, 5]), n_users=5)
    test = UserItems.from_pairs(np.array([1, 2, 2, 3]), np.array([4, 5, 6, 5]), n_users=5).without(train, 8)
    assert test.lengths().tolist() == [0, 1, 1, 0, 0]  # user 2 keeps item 6, user 3 keeps nothing
    assert evaluation_users(test).tolist() == [2]  # the OOV user 1 is not evaluated


def test_negative_sampler_avoids_train_positives():
    n_items = 12
    liked = np.arange(2, 10)  # user 2 likes items 2..9: only 10 and 11 are valid negatives
    seen = UserItems.from_pairs(np.full(len(liked), 2), liked, n_users=3)
    negatives = NegativeSampler(seen, n_items, rounds=60).sample(np.full(500, 2), 3, np.random.default_rng(0))
    assert set(np.unique(negatives)) <= {10, 11}


def test_epoch_shards_partition_the_edges_equally():
    shards = [epoch_shard(103, epoch=4, seed=7, rank=r, world=3) for r in range(3)]
    assert {len(s) for s in shards} == {34}
    assert len(np.unique(np.concatenate(shards))) == 102


def planted_communities(seed=0, groups=4, users_per=50, items_per=30, per_user=14):
    """Users like items of their own community (90%), a few popular items elsewhere (10%); 20% held out."""
    rng = np.random.default_rng(seed)
    weights = 1 / np.arange(1, items_per + 1)  # zipf-like popularity within a community
    users, items = [], []
    for g in range(groups):
        for u in range(users_per):
            own = rng.choice(items_per, per_user, replace=False, p=weights / weights.sum()) + g * items_per
            other = rng.choice(np.delete(np.arange(groups * items_per), np.arange(g * items_per, (g + 1) * items_per)),
                               2, replace=False)
            picked = np.concatenate([own[: per_user - 2], other])
            users += [2 + g * users_per + u] * len(picked)
            items += (picked + 2).tolist()
    users, items = np.array(users), np.array(items)
    test = rng.random(len(users)) < 0.2
    return (users[~test], items[~test]), (users[test], items[test]), 2 + groups * users_per, 2 + groups * items_per


def test_learns_planted_communities_and_beats_popularity():
    torch.manual_seed(0)
    (tu, ti), (vu, vi), n_users, n_items = planted_communities()
    seen = UserItems.from_pairs(tu, ti, n_users)
    targets = UserItems.from_pairs(vu, vi, n_users).without(seen, n_items)
    users = evaluation_users(targets)
    model = LightGCN(n_users, n_items, LightGCNConfig(embedding_dim=16, layers=2),
                     normalized_adjacency(tu, ti, n_users, n_items))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    sampler, losses = NegativeSampler(seen, n_items), []
    for epoch in range(30):
        order = epoch_shard(len(tu), epoch, 0, 0, 1)
        losses.append(bpr_epoch(model, optimizer, tu[order], ti[order], sampler, 256, 2, 1e-4,
                                np.random.default_rng(epoch))["train_bpr"])
    with torch.no_grad():
        user_vecs, item_vecs = model.propagate()
    learnt = ranking_metrics(lambda u: user_vecs[u] @ item_vecs.T, users, targets, seen, [10], n_items)
    popularity = torch.from_numpy(item_popularity(seen, n_items))
    baseline = ranking_metrics(lambda u: popularity.expand(len(u), -1), users, targets, seen, [10], n_items)
    assert losses[-1] < 0.5 * losses[0]
    # popularity finds the community's items for a quarter of the users at best; the graph finds them for everyone
    assert learnt["recall@10"] > 0.5 and learnt["recall@10"] > 2 * baseline["recall@10"], (learnt, baseline)
    assert learnt["ndcg@10"] > 2 * baseline["ndcg@10"]
