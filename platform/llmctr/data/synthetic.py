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
TAGS = np.array(list("abcdefghij"))
DEVICES = np.array(["mobile", "desktop", "tablet"])


SPAN_SECONDS = 90 * 86400  # the log covers 90 days
CHUNK_ROWS = 1_000_000


def _world(rng: np.random.Generator, n_users: int, n_items: int) -> dict:
    """The planted model: user groups, item categories, their affinity, biases and tag weights."""
    groups, cats = 8, 12
    return {"user_group": rng.integers(0, groups, n_users), "item_cat": rng.integers(0, cats, n_items),
            "affinity": rng.normal(0, 1.6, (groups, cats)), "user_bias": rng.normal(0, 0.5, n_users),
            "item_bias": rng.normal(0, 0.5, n_items), "tag_w": rng.normal(0, 0.6, len(TAGS))}


def _rows(rng: np.random.Generator, world: dict, n_rows: int, start: int = 0, end: int = SPAN_SECONDS) -> pd.DataFrame:
    """``n_rows`` clicks drawn from ``world``, their timestamps sorted within ``[start, end)`` seconds of the log."""
    n_users, n_items = len(world["user_bias"]), len(world["item_bias"])
    u = rng.zipf(1.3, n_rows) % n_users
    i = rng.zipf(1.2, n_rows) % n_items
    dev = rng.integers(0, 3, n_rows)
    price = np.round(rng.lognormal(2.0, 0.8, n_rows), 2)
    hour = rng.integers(0, 24, n_rows)
    tag_sets = [rng.choice(len(TAGS), size=rng.integers(1, 4), replace=False) for _ in range(n_rows)]
    group, cat = world["user_group"][u], world["item_cat"][i]
    logit = (world["affinity"][group, cat] + world["user_bias"][u] + world["item_bias"][i]
             + np.array([0.8, -0.4, 0.0])[dev] - 0.6 * (np.log(price) - 2.0)
             + np.array([world["tag_w"][t].sum() for t in tag_sets]) + 0.3 * np.sin(hour / 24 * 2 * np.pi) - 0.8)
    click = (rng.random(n_rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({
        "user_id": u + 1,
        "item_id": i + 1,
        "user_group": np.char.add("g", group.astype(str)),
        "item_category": np.char.add("c", cat.astype(str)),
        "device": DEVICES[dev],
        "price": price,
        "hour": hour,
        "tags": ["|".join(TAGS[t]) for t in tag_sets],
        "timestamp": 1_700_000_000 + np.sort(rng.integers(start, end, n_rows)),
        "click": click,
    })


def synthetic_frame(n_rows: int = 60_000, n_users: int = 2_000, n_items: int = 500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return _rows(rng, _world(rng, n_users, n_items), n_rows)


def synthetic_chunks(n_rows: int, n_users: int = 2_000, n_items: int = 500, seed: int = 0,
                     chunk_rows: int | None = None):
    """The log in time order, ``chunk_rows`` (default ``CHUNK_ROWS``) at a time, so a log of any size is written
    without holding it: chunk k covers the k-th slice of the 90 days, drawn from the same planted model. A log of
    at most ``chunk_rows`` rows is ``synthetic_frame``'s, row for row."""
    chunk_rows = chunk_rows or CHUNK_ROWS
    rng = np.random.default_rng(seed)
    world = _world(rng, n_users, n_items)
    chunks = max(1, -(-n_rows // chunk_rows))
    for k in range(chunks):
        rows = n_rows // chunks + (k < n_rows % chunks)
        yield _rows(rng if k == 0 else np.random.default_rng([seed, k]), world, rows,
                    SPAN_SECONDS * k // chunks, SPAN_SECONDS * (k + 1) // chunks)


def write_synthetic(folder: str | Path, n_rows: int = 60_000, seed: int = 0, bad_rows: bool = False,
                    n_users: int = 2_000, n_items: int = 500) -> Path:
    """Write ``clicks.csv`` into ``folder`` (in chunks of a million rows: ``synthetic_chunks``); with ``bad_rows``
    append one malformed line of each kind."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "clicks.csv"
    for k, chunk in enumerate(synthetic_chunks(n_rows, n_users, n_items, seed)):
        chunk.to_csv(path, index=False, header=k == 0, mode="w" if k == 0 else "a")
    if bad_rows:
        with open(path, "ab") as fh:
            fh.write(("\n".join(BAD_LINES) + "\n").encode())
            fh.write(BAD_BYTES)
    return path
