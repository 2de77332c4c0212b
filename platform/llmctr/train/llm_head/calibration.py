"""Exit thresholds for the early-exit LLM head, chosen on validation: the least mean depth whose AUC stays
within ``target_auc_loss`` of the full-depth head's. Adaptive thresholds ship only where they beat the fixed depths
at the same mean depth (every row answered by one head; AUC interpolated between two such depths); otherwise the
cheapest fixed depth within the AUC floor ships.

Every head's probability on the validation rows is computed once (full depth); an exit policy is then
simulated in numpy with the model's own exit rule (``llmctr.models.early_exit.leaves``), so searching
thousands of per-head threshold combinations costs no encoder work. Candidates per head are quantiles of
that head's confidence plus 1.0 (never exit there); the last head always answers.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from llmctr.models.early_exit import exit_confidence, leaves
from llmctr.train.metrics import auc

#: The most threshold combinations searched exhaustively (the per-head grid shrinks to stay under it).
MAX_COMBINATIONS = 4096


def simulate_exit(head_probs: np.ndarray, thresholds: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """(answered probability, answering head) per row of ``head_probs`` [n, heads] under ``thresholds``."""
    n, heads = head_probs.shape
    exit_head = np.full(n, heads - 1)
    open_rows = np.ones(n, dtype=bool)
    for k in range(heads - 1):
        out = open_rows & leaves(exit_confidence(head_probs[:, k]), thresholds[k])
        exit_head[out] = k
        open_rows &= ~out
    return head_probs[np.arange(n), exit_head], exit_head


@dataclass
class ExitPoint:
    thresholds: list[float]
    auc: float
    mean_layers: float

    def depth_cut(self, full_layers: int) -> float:
        return 1.0 - self.mean_layers / full_layers


def evaluate_policy(head_probs: np.ndarray, labels: np.ndarray, exit_layers: list[int], thresholds: list[float]
                    ) -> ExitPoint:
    probs, heads = simulate_exit(head_probs, thresholds)
    return ExitPoint([float(t) for t in thresholds], auc(labels, probs),
                     float(np.asarray(exit_layers)[heads].mean()))


def _candidates(head_probs: np.ndarray, per_head: int) -> list[np.ndarray]:
    grids = []
    for k in range(head_probs.shape[1] - 1):
        conf = exit_confidence(head_probs[:, k])
        grid = np.quantile(conf, np.linspace(0.0, 1.0, per_head))
        grids.append(np.unique(np.round(np.append(grid, 1.0), 6)))
    return grids


def fixed_depth_thresholds(heads: int, k: int) -> list[float]:
    """Thresholds that make every row answer at head ``k``: never exit before it, always at it."""
    return [1.0] * k + ([0.0] if k < heads - 1 else []) + [1.0] * (heads - 1 - k)


def fixed_depth_points(head_probs: np.ndarray, labels: np.ndarray, exit_layers: list[int]) -> list[ExitPoint]:
    """AUC and depth when every row answers at head k, for each head."""
    heads = len(exit_layers)
    return [evaluate_policy(head_probs, labels, exit_layers, fixed_depth_thresholds(heads, k)) for k in range(heads)]


def fixed_auc_at(fixed: list[ExitPoint], mean_layers: float) -> float:
    """The fixed depths' AUC at ``mean_layers``, linear between the two nearest depths (sending a share of the rows
    to each of them reaches any mean depth in between)."""
    return float(np.interp(mean_layers, [p.mean_layers for p in fixed], [p.auc for p in fixed]))


@dataclass
class Calibration:
    chosen: ExitPoint  # what ships: ``adaptive`` where it beats the fixed depths, else the cheapest fixed depth
    full_depth: ExitPoint
    target_auc_loss: float
    searched: list[ExitPoint]
    shared_sweep: list[ExitPoint]  # one threshold for every head, 0 .. 1: the curve a person reads
    adaptive: ExitPoint  # the least mean depth within the AUC floor among the searched thresholds
    fixed: list[ExitPoint]  # every row answered by head k, per head
    adaptive_beats_fixed: bool

    def summary(self) -> dict:
        full_layers = int(self.full_depth.mean_layers)
        return {"thresholds": self.chosen.thresholds, "valid_auc_early_exit": self.chosen.auc,
                "shipped": "adaptive" if self.adaptive_beats_fixed else "fixed depth",
                "adaptive_beats_fixed": self.adaptive_beats_fixed, "valid_adaptive": asdict(self.adaptive),
                "valid_fixed_auc_at_adaptive_depth": fixed_auc_at(self.fixed, self.adaptive.mean_layers),
                "valid_fixed_depths": [asdict(p) for p in self.fixed],
                "valid_auc_full_depth": self.full_depth.auc, "valid_auc_loss": self.full_depth.auc - self.chosen.auc,
                "valid_mean_layers": self.chosen.mean_layers, "full_layers": full_layers,
                "valid_depth_cut": self.chosen.depth_cut(full_layers), "target_auc_loss": self.target_auc_loss,
                "combinations_searched": len(self.searched),
                "shared_sweep": [asdict(p) for p in self.shared_sweep]}


def calibrate_thresholds(head_probs: np.ndarray, labels: np.ndarray, exit_layers: list[int],
                         target_auc_loss: float, per_head: int = 16, adaptive_margin: float = 0.0) -> Calibration:
    """Per-head thresholds minimising mean depth subject to AUC >= full-depth AUC - ``target_auc_loss``
    (ties: the higher AUC). Full depth (every threshold 1.0) always qualifies. They ship when their AUC beats the
    fixed depths' at the same mean depth; else the cheapest fixed depth within the floor ships."""
    head_probs, labels = np.asarray(head_probs, dtype=np.float64), np.asarray(labels)
    heads = head_probs.shape[1]
    if heads != len(exit_layers):
        raise ValueError(f"{heads} heads' probabilities for {len(exit_layers)} exit layers")
    while per_head > 2 and (per_head + 1) ** (heads - 1) > MAX_COMBINATIONS:
        per_head -= 1
    full = evaluate_policy(head_probs, labels, exit_layers, [1.0] * heads)
    searched = [evaluate_policy(head_probs, labels, exit_layers, [*combo, 1.0])
                for combo in itertools.product(*_candidates(head_probs, per_head))]
    floor = full.auc - target_auc_loss
    feasible = [p for p in searched if p.auc >= floor] or [full]
    adaptive = min(feasible, key=lambda p: (p.mean_layers, -p.auc))
    fixed = fixed_depth_points(head_probs, labels, exit_layers)
    beats = adaptive.auc - fixed_auc_at(fixed, adaptive.mean_layers) > adaptive_margin
    chosen = adaptive if beats else min((p for p in fixed if p.auc >= floor), key=lambda p: p.mean_layers,
                                        default=full)
    sweep = [evaluate_policy(head_probs, labels, exit_layers, [float(t)] * (heads - 1) + [1.0])
             for t in np.linspace(0.0, 1.0, 21)]
    return Calibration(chosen, full, target_auc_loss, searched, sweep, adaptive, fixed, beats)


def plot_calibration(calibration: Calibration, path: Path, title: str = "") -> Path:
    """Left: AUC and mean depth against one threshold shared by every head. Right: every searched per-head
    combination (mean depth vs AUC), the AUC floor and the chosen thresholds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    full, chosen = calibration.full_depth, calibration.chosen
    fig, (ax1, ax3) = plt.subplots(1, 2, figsize=(10, 3.8))
    ts = np.linspace(0.0, 1.0, len(calibration.shared_sweep))
    ax1.plot(ts, [p.auc for p in calibration.shared_sweep], "o-", color="tab:green", label="AUC")
    ax1.axhline(full.auc - calibration.target_auc_loss, color="tab:red", ls="--", lw=1, label="AUC floor")
    ax1.set_xlabel("exit threshold on confidence |2p-1| (all heads)")
    ax1.set_ylabel("valid AUC")
    ax2 = ax1.twinx()
    ax2.plot(ts, [p.mean_layers for p in calibration.shared_sweep], "s-", color="tab:blue", label="mean layers")
    ax2.set_ylabel("mean layers run")
    ax1.legend(loc="upper left", fontsize=8)
    ax2.legend(loc="lower right", fontsize=8)
    ax3.scatter([p.mean_layers for p in calibration.searched], [p.auc for p in calibration.searched], s=6,
                color="0.6", label="per-head thresholds searched")
    ax3.axhline(full.auc - calibration.target_auc_loss, color="tab:red", ls="--", lw=1, label="AUC floor")
    ax3.plot([p.mean_layers for p in calibration.fixed], [p.auc for p in calibration.fixed], "s-",
             color="tab:blue", label="fixed depths")
    ax3.scatter([chosen.mean_layers], [chosen.auc], marker="*", color="tab:orange", s=140,
                label=f"chosen {[round(t, 3) for t in chosen.thresholds[:-1]]}")
    ax3.set_xlabel("mean layers run")
    ax3.set_ylabel("valid AUC")
    lo = min(p.auc for p in calibration.searched)
    ax3.set_ylim(max(lo, full.auc - 20 * max(calibration.target_auc_loss, 1e-3)), None)
    ax3.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
