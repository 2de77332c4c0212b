"""Holding a Ray Train run after a given epoch (``LLMCTR_TRAIN_HOLD_FILE``, read by the workers) and reading which
checkpoints its controller has registered: for tests that kill a worker or a node at a known point of a run."""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path


def checkpoint_folders(storage: Path) -> list[str]:
    """Checkpoint folders only: Ray Train also keeps checkpoint_manager_snapshot.json beside them."""
    return [p for p in glob.glob(str(storage / "*" / "checkpoint_*")) if os.path.isdir(p)]


def registered_epoch(storage: Path) -> int:
    """The epoch of the latest checkpoint Ray Train's controller has registered (0: none yet)."""
    epoch = 0
    for path in glob.glob(str(storage / "*" / "checkpoint_manager_snapshot.json")):
        try:
            latest = json.loads(Path(path).read_text()).get("latest_checkpoint_result") or {}
        except (OSError, ValueError):  # being rewritten
            continue
        epoch = max(epoch, int((latest.get("metrics") or {}).get("epoch") or 0))
    return epoch
