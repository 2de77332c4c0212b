"""What every benchmark script shares: where results are written (``benchmarks/lib/protocol.py`` writes them, with
their provenance)."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"
