"""The search as a picture: validation metric per epoch for every trial (ASHA's early stops show as short
lines), and the best value of each trial against each searched setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def plot_search(rows: list[dict[str, Any]], metric: str, params: list[str], path: Path, title: str = "") -> Path:
    fig, axes = plt.subplots(1, 1 + len(params), figsize=(4 * (1 + len(params)), 3.5), squeeze=False)
    curves = axes[0][0]
    for row in rows:
        curves.plot(range(1, len(row["curve"]) + 1), row["curve"], "o-", alpha=0.8,
                    label=", ".join(f"{k.rsplit('.', 1)[-1]}={_fmt(v)}" for k, v in row["settings"].items()))
    curves.set_xlabel("epoch")
    curves.set_ylabel(metric)
    curves.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(rows) <= 8:
        curves.legend(fontsize=7)
    for ax, name in zip(axes[0][1:], params):
        values = [row["settings"][name] for row in rows]
        ax.scatter(values if all(isinstance(v, (int, float)) for v in values) else [str(v) for v in values],
                   [row[f"best_{metric}"] for row in rows], c=["tab:green" if r["completed"] else "tab:gray"
                                                               for r in rows])
        ax.set_xlabel(name)
        ax.set_ylabel(f"best {metric}")
        if all(isinstance(v, (int, float)) and v > 0 for v in values) and max(values) / min(values) > 20:
            ax.set_xscale("log")
    fig.suptitle(f"{title} (grey: stopped early)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
