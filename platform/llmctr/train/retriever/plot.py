"""The retriever's training curve."""

from __future__ import annotations

from pathlib import Path

from llmctr.train.retriever.config import RetrieverConfig


def plot_ranking_history(epochs: list[dict], metrics: dict, path: Path, config: RetrieverConfig) -> None:
    """BPR loss and validation recall@k per epoch, with the popularity baseline's validation recall as dashed
    lines: whether (and from which epoch) the graph beats "recommend the popular items" is visible at a glance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    x = [h["epoch"] for h in epochs]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(x, [h["train_loss"] for h in epochs], "o-", label="train loss (BPR + L2)")
    ax1.set_xlabel("epoch")
    ax1.legend()
    for k, colour in zip(config.recall_ks, plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        ax2.plot(x, [h[f"valid_recall@{k}"] for h in epochs], "o-", color=colour, label=f"recall@{k}")
        if f"valid_popularity_recall@{k}" in metrics:
            ax2.axhline(metrics[f"valid_popularity_recall@{k}"], color=colour, ls="--", lw=1)
    ax2.set_xlabel("epoch")
    ax2.set_title("validation (dashed: popularity)", fontsize=9)
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f"{config.name} (LightGCN)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
