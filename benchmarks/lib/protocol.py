"""The benchmark protocol every accuracy comparison follows (history, LLM signal, zoo vs FuxiCTR):

- seeds are declared before anything runs and are the same for every arm (``Protocol.seeds``, 5 by default);
- each run trains within an epoch budget and keeps its best epoch on validation AUC (early stopping);
- any choice (init, learning rate, weights, thresholds) is made on validation AUC only (``choose_on_validation``);
- two arms are compared by their paired per-seed differences, mean with its standard error
  (``paired_difference``), and a bar is met only when the whole ±2 SE interval clears it (``verdict``);
- a result records where it came from (``provenance``): command line, a clean git commit (a dirty tree is refused
  unless ``--allow-dirty``, and then the file says so), package versions, machine and date.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.lib.common import RESULTS

DEFAULT_SEEDS = (2026, 1, 2, 3, 4)
PACKAGES = ("torch", "ray", "transformers", "peft", "numpy", "pandas", "pyarrow", "faiss-cpu", "fuxictr")


@dataclass(frozen=True)
class Protocol:
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    #: most epochs a run may take; it keeps the epoch with the best validation AUC
    max_epochs: int = 8
    #: epochs without a better validation AUC before a run stops
    patience: int = 2
    selection: str = "validation AUC"

    def __post_init__(self) -> None:
        if len(set(self.seeds)) != len(self.seeds) or not self.seeds:
            raise ValueError(f"seeds must be distinct and declared up front, got {self.seeds}")

    def describe(self) -> dict[str, Any]:
        return asdict(self)


def add_protocol_args(parser: argparse.ArgumentParser, protocol: Protocol = Protocol()) -> None:
    parser.add_argument("--seeds", type=int, nargs="+", default=list(protocol.seeds),
                        help=f"declared before running, the same for every arm (default {list(protocol.seeds)})")
    parser.add_argument("--max-epochs", type=int, default=protocol.max_epochs)
    parser.add_argument("--patience", type=int, default=protocol.patience)
    parser.add_argument("--allow-dirty", action="store_true",
                        help="run from a tree with uncommitted changes (the result says so)")


def protocol_from_args(args: argparse.Namespace) -> Protocol:
    return Protocol(seeds=tuple(args.seeds), max_epochs=args.max_epochs, patience=args.patience)


@dataclass
class Difference:
    diff: float
    se: float
    n: int
    per_seed: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"diff": self.diff, "se": self.se, "n": self.n, "per_seed": self.per_seed}


def paired_difference(treatment: Sequence[float], baseline: Sequence[float]) -> Difference:
    """Mean of ``treatment[i] - baseline[i]`` (the same seed i on both sides) and its standard error
    (sample standard deviation / sqrt(n); NaN for one pair)."""
    a, b = np.asarray(treatment, float), np.asarray(baseline, float)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"paired arms need the same seeds: {len(a)} vs {len(b)} values")
    d = a - b
    se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else float("nan")
    return Difference(float(d.mean()), se, len(d), [float(x) for x in d])


def verdict(diff: float, se: float, bar: float = 0.0) -> str:
    """``met`` when diff - 2 SE > bar, ``missed`` when diff + 2 SE < bar, else ``inconclusive`` (also with an
    unknown SE)."""
    if math.isnan(se):
        return "inconclusive"
    if diff - 2 * se > bar:
        return "met"
    if diff + 2 * se < bar:
        return "missed"
    return "inconclusive"


def choose_on_validation(candidates: Mapping[str, Mapping[str, float]], key: str = "valid_auc") -> str:
    """The candidate with the best validation score; its test numbers never take part in the choice."""
    if not candidates:
        raise ValueError("nothing to choose from")
    return max(candidates, key=lambda name: candidates[name][key])


def git_state(cwd: Path | None = None) -> tuple[str, bool]:
    """(HEAD commit, whether tracked files differ from it)."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=cwd).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, check=True, cwd=cwd).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown", True
    return head, bool(dirty)


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def provenance(allow_dirty: bool = False, argv: Sequence[str] | None = None, cwd: Path | None = None
               ) -> dict[str, Any]:
    """Where a result comes from; raises on a dirty tree unless ``allow_dirty`` (then ``dirty: true``)."""
    commit, dirty = git_state(cwd)
    if dirty and not allow_dirty:
        raise SystemExit("refusing to benchmark a tree with uncommitted changes (commit first, or --allow-dirty)")
    args = list(sys.argv[1:] if argv is None else argv)
    return {"command": shlex.join(["python", "-m", _module_name(), *args]), "argv": args,
            "git_commit": commit, "dirty": dirty, "packages": package_versions(),
            "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                        "system": platform.platform(), "python": platform.python_version()},
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def parse_with_provenance(parser: argparse.ArgumentParser) -> tuple[argparse.Namespace, dict[str, Any]]:
    """A benchmark's arguments (``--allow-dirty`` added where the parser lacks it) and its provenance, which refuses
    a dirty tree unless ``--allow-dirty``."""
    if not any("--allow-dirty" in action.option_strings for action in parser._actions):
        parser.add_argument("--allow-dirty", action="store_true",
                            help="run from a tree with uncommitted changes (the result says so)")
    args = parser.parse_args()
    return args, provenance(args.allow_dirty)


def _module_name() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return spec.name if spec is not None and spec.name else Path(sys.argv[0]).name


def write(name: str, payload: Mapping[str, Any], prov: Mapping[str, Any], protocol: Protocol | None = None,
          folder: Path = RESULTS) -> Path:
    """``results/<name>.json`` with the payload, its provenance and the protocol it ran under."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    body = {**payload, "provenance": dict(prov), **({"protocol": protocol.describe()} if protocol else {})}
    path.write_text(json.dumps(body, indent=1, default=float) + "\n")
    return path
