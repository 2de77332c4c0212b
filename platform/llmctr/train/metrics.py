"""Offline metrics: AUC, logloss and gAUC (per-group AUC weighted by group size, groups with both classes)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score


def auc(labels: np.ndarray, probs: np.ndarray) -> float:
    if len(np.unique(labels)) < 2:
        return float("nan")
    return float(roc_auc_score(labels, probs))


def logloss(labels: np.ndarray, probs: np.ndarray) -> float:
    return float(log_loss(labels, np.clip(probs, 1e-7, 1 - 1e-7), labels=[0, 1]))


def gauc(labels: np.ndarray, probs: np.ndarray, groups: np.ndarray) -> float:
    frame = pd.DataFrame({"y": labels, "p": probs, "g": groups})
    total, weight = 0.0, 0
    for _, part in frame.groupby("g", sort=False):
        if part["y"].nunique() == 2:
            total += roc_auc_score(part["y"], part["p"]) * len(part)
            weight += len(part)
    return float(total / weight) if weight else float("nan")


def evaluate_predictions(labels: np.ndarray, probs: np.ndarray, groups: np.ndarray | None = None,
                         prefix: str = "") -> dict[str, float]:
    out = {f"{prefix}auc": auc(labels, probs), f"{prefix}logloss": logloss(labels, probs)}
    if groups is not None:
        out[f"{prefix}gauc"] = gauc(labels, probs, groups)
    return out
