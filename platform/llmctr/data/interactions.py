"""Users' interactions as arrays: one split's (user, item, label) rows and each user's items as CSR, with
membership tests by binary search. The retriever's training graph and evaluation targets, and at serving time the
per-user history its artifact carries, are built from these."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llmctr.data.feature_map import FIRST_ID


@dataclass
class UserItems:
    """Each user's items (and optionally labels) as CSR, rows indexed by the feature-map user id."""

    indptr: np.ndarray  # int64 [n_users + 1]
    items: np.ndarray  # int64 [nnz], each user's items in their original (time) order
    labels: np.ndarray | None = None  # float32 [nnz]

    @classmethod
    def from_pairs(cls, users: np.ndarray, items: np.ndarray, n_users: int,
                   labels: np.ndarray | None = None) -> UserItems:
        users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
        order = np.argsort(users, kind="stable")
        indptr = np.zeros(n_users + 1, np.int64)
        np.cumsum(np.bincount(users, minlength=n_users)[:n_users], out=indptr[1:])
        return cls(indptr, items[order], None if labels is None else np.asarray(labels, np.float32)[order])

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    def lengths(self, users: np.ndarray | None = None) -> np.ndarray:
        counts = np.diff(self.indptr)
        return counts if users is None else counts[users]

    def gather(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position of the user in ``users``, entry index into items/labels) for every entry of those users."""
        users = np.asarray(users, np.int64)
        lengths = self.lengths(users)
        owner = np.repeat(np.arange(len(users)), lengths)
        starts = np.repeat(self.indptr[users] - np.cumsum(lengths) + lengths, lengths)
        return owner, starts + np.arange(lengths.sum())

    def owners(self) -> np.ndarray:
        """The user id of every entry."""
        return np.repeat(np.arange(self.n_users), self.lengths())

    def rows(self) -> Interactions:
        labels = self.labels if self.labels is not None else np.ones(len(self.items), np.float32)
        return Interactions(self.owners(), self.items, labels)

    def keys(self, n_items: int) -> np.ndarray:
        """Sorted user * n_items + item: membership tests by binary search."""
        return np.unique(self.owners() * n_items + self.items)

    def without(self, other: UserItems, n_items: int) -> UserItems:
        """These user-item pairs minus those in ``other`` (e.g. test positives minus train positives)."""
        users = self.owners()
        keep = ~contains(other.keys(n_items), users * n_items + self.items)
        labels = None if self.labels is None else self.labels[keep]
        return UserItems.from_pairs(users[keep], self.items[keep], self.n_users, labels)


@dataclass
class Interactions:
    """One split's (user id, item id, label) rows, in file (time) order."""

    users: np.ndarray
    items: np.ndarray
    labels: np.ndarray

    def edges(self, rule: str) -> tuple[np.ndarray, np.ndarray]:
        """The graph's (user, item) edges: the positive rows, or every row; pairs with an OOV side are left out."""
        keep = (self.users >= FIRST_ID) & (self.items >= FIRST_ID)
        if rule == "positive":
            keep &= self.labels == 1
        return self.users[keep], self.items[keep]

    def positives(self, n_users: int) -> UserItems:
        users, items = self.edges("positive")
        return UserItems.from_pairs(users, items, n_users)


def contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Element-wise ``keys in sorted_keys`` for a sorted, unique key array."""
    if len(sorted_keys) == 0:
        return np.zeros(np.shape(keys), bool)
    pos = np.searchsorted(sorted_keys, keys).clip(max=len(sorted_keys) - 1)
    return sorted_keys[pos] == keys
