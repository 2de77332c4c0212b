"""A synthetic click log with planted signal, so a model that learns shows AUC well above 0.5.

Clicks follow a logistic model: user-group x item-category affinity, a device effect, a price effect,
a tag effect and per-user / per-item biases. Used by ``make demo`` when no real data is at hand and by
the tests. Optionally plants malformed lines to exercise the quarantine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

BAD_LINES = [
    "1,2,3",                                                     # wrong column count
    "u_x,7,g1,c1,mobile,9.5,12,a|b,1700000000,1",                # non-integer id
    "5,7,g1,c1,mobile,9.5,12,a|b,not-a-time,0",                  # bad timestamp
    "5,7,g1,c1,mobile,9.5,12,a|b,1700000000,7",                  # label out of range
]
BAD_BYTES = b"5,7,g1,c\xff\xfe1,mobile,9.5,12,a|b,1700000000,1\n"  # undecodable utf-8


def synthetic_frame(n_rows: int = 60_000, n_users: int = 2_000, n_items: int = 500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    groups, cats = 8, 12
    user_group = rng.integers(0, groups, n_users)
    item_cat = rng.integers(0, cats, n_items)
    affinity = rng.normal(0, 1.6, (groups, cats))
    user_bias = rng.normal(0, 0.5, n_users)
    item_bias = rng.normal(0, 0.5, n_items)
    tags = np.array(list("abcdefghij"))
    tag_w = rng.normal(0, 0.6, len(tags))
    devices = np.array(["mobile", "desktop", "tablet"])

    u = rng.zipf(1.3, n_rows) % n_users
    i = rng.zipf(1.2, n_rows) % n_items
    dev = rng.integers(0, 3, n_rows)
    price = np.round(rng.lognormal(2.0, 0.8, n_rows), 2)
    hour = rng.integers(0, 24, n_rows)
    tag_sets = [rng.choice(len(tags), size=rng.integers(1, 4), replace=False) for _ in range(n_rows)]
    logit = (affinity[user_group[u], item_cat[i]] + user_bias[u] + item_bias[i]
             + np.array([0.8, -0.4, 0.0])[dev] - 0.6 * (np.log(price) - 2.0)
             + np.array([tag_w[t].sum() for t in tag_sets]) + 0.3 * np.sin(hour / 24 * 2 * np.pi) - 0.8)
    click = (rng.random(n_rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({
        "user_id": u + 1,
        "item_id": i + 1,
        "user_group": [f"g{g}" for g in user_group[u]],
        "item_category": [f"c{c}" for c in item_cat[i]],
        "device": devices[dev],
        "price": price,
        "hour": hour,
        "tags": ["|".join(tags[t]) for t in tag_sets],
        "timestamp": 1_700_000_000 + np.sort(rng.integers(0, 90 * 86400, n_rows)),
        "click": click,
    })


def write_synthetic(folder: str | Path, n_rows: int = 60_000, seed: int = 0, bad_rows: bool = False) -> Path:
    """Write ``clicks.csv`` into ``folder``; with ``bad_rows`` append one malformed line of each kind."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "clicks.csv"
    synthetic_frame(n_rows=n_rows, seed=seed).to_csv(path, index=False)
    if bad_rows:
        with open(path, "ab") as fh:
            fh.write(("\n".join(BAD_LINES) + "\n").encode())
            fh.write(BAD_BYTES)
    return path
