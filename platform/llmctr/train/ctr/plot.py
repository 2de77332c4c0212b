"""Training curves as PNG: a person would rather look at these than read a table."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def plot_history(history: list[dict], path: Path, title: str = "") -> Path:
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(epochs, [h["train_loss"] for h in history], "o-", label="train loss")
    ax1.plot(epochs, [h["valid_logloss"] for h in history], "s-", label="valid logloss")
    ax1.set_xlabel("epoch")
    ax1.legend()
    ax2.plot(epochs, [h["valid_auc"] for h in history], "o-", color="tab:green", label="valid AUC")
    if "valid_teacher_auc" in history[0]:
        ax2.plot(epochs, [h["valid_teacher_auc"] for h in history], "^-", color="tab:purple",
                 label="valid AUC (teacher)")
    if "valid_gauc" in history[0]:
        ax2.plot(epochs, [h["valid_gauc"] for h in history], "s--", color="tab:olive", label="valid gAUC")
    ax2.set_xlabel("epoch")
    ax2.legend()
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
