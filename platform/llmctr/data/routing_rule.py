"""The rule that sends a record to the LLM path, shared by the Serve router (``llmctr.serve.routing``), the LLM head's
calibration (``train.calibrate_on: routed``) and the offline benchmarks, so all three see the same records: the
student is unsure of it (its probability falls inside ``band``) or it carries an id unseen in training (cold start:
the id encodes to the OOV id). It lives beside the OOV encoding it reads: importing it costs no torch (the command
line imports the router's settings)."""

from __future__ import annotations

import numpy as np

from llmctr.data.feature_map import OOV_ID


def cold_start_mask(encoded: dict[str, np.ndarray], fields: list[str]) -> np.ndarray:
    """Rows where any of ``fields`` encodes to the OOV id (a value the training split never had)."""
    n = len(next(iter(encoded.values())))
    mask = np.zeros(n, dtype=bool)
    for name in fields:
        ids = np.asarray(encoded[name])
        mask |= (ids == OOV_ID) if ids.ndim == 1 else (ids == OOV_ID).any(axis=1)
    return mask


def route_mask(student_probs: np.ndarray, cold: np.ndarray | None, band: tuple[float, float],
               cold_start: bool = True) -> np.ndarray:
    """True for the records the LLM path should score: student probability in ``band`` (inclusive), or cold."""
    low, high = band
    probs = np.asarray(student_probs)
    mask = (probs >= low) & (probs <= high)
    if cold_start and cold is not None:
        mask |= np.asarray(cold, dtype=bool)
    return mask
