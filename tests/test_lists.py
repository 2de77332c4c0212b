"""Batches that pack each user's rows into lists (train.list_size), so CLID's listwise term sees real lists."""

from __future__ import annotations

import pytest
import torch

from llmctr.data.feature_map import LABEL
from llmctr.train import feed
from llmctr.train.ctr.config import TrainConfig
from llmctr.train.ctr.loop import feed_lists


def split(n: int = 3000, users: int = 400, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"user_id": torch.randint(2, users, (n,), generator=g), "x": torch.arange(n),
            LABEL: torch.randint(0, 2, (n,), generator=g).float()}


def mean_list_size(batches) -> float:
    sizes = torch.cat([feed.list_sizes(b["user_id"]) for b in batches]).float()
    return float(sizes.mean())


def test_packed_order_is_a_permutation_of_whole_lists():
    data = split()
    order = feed.packed_order(data["user_id"], 5, torch.Generator().manual_seed(1))
    assert sorted(order.tolist()) == list(range(len(order)))
    users = data["user_id"][order]
    # runs of one user are at most 5 long unless two lists of the same user happen to be neighbours; every user's
    # rows come in ceil(count / 5) lists
    changes = torch.ones(len(users), dtype=torch.bool)
    changes[1:] = users[1:] != users[:-1]
    runs = torch.diff(torch.cat([torch.nonzero(changes).squeeze(1), torch.tensor([len(users)])]))
    counts = torch.bincount(data["user_id"])
    expected_lists = int(((counts + 4) // 5).sum())
    assert int(changes.sum()) <= expected_lists and runs.max() <= 10
    again = feed.packed_order(data["user_id"], 5, torch.Generator().manual_seed(1))
    assert torch.equal(order, again)  # seeded


def test_packed_batches_hold_longer_lists_than_shuffled_ones():
    data = split()
    shuffled = list(feed.memory_batches(data, 256, True, 3, "cpu"))
    packed = list(feed.memory_batches(data, 256, True, 3, "cpu", lists=("user_id", 8)))
    assert sorted(torch.cat([b["x"] for b in packed]).tolist()) == list(range(3000))
    assert mean_list_size(shuffled) < 1.5 < 4 < mean_list_size(packed)
    assert max(int(feed.list_sizes(b["user_id"]).max()) for b in packed) <= 16


def test_list_size_needs_the_memory_feed_and_a_group_column():
    fmap = type("F", (), {"group_by": "user_id", "input_columns": ["user_id", "x"]})()
    assert feed_lists(TrainConfig(list_size=4), fmap) == ("user_id", 4)
    assert feed_lists(TrainConfig(), fmap) is None
    with pytest.raises(ValueError, match="memory"):
        feed_lists(TrainConfig(list_size=4), fmap, use_memory=False)
    fmap.group_by = None
    with pytest.raises(ValueError, match="group_by"):
        feed_lists(TrainConfig(list_size=4), fmap)
