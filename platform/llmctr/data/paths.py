"""Where raw data lives. Data stays outside the repository (licences forbid committing it); artifacts live under
``llmctr.storage.artifacts_root``."""

from __future__ import annotations

import os
from pathlib import Path

from llmctr.config import REPO_ROOT
from llmctr.data.schema import DatasetConfig


def data_roots(data_dir: str | Path | None = None) -> list[Path]:
    """Candidate data roots, in order: --data-dir, $LLMCTR_DATA_DIR, ./data, ../shared/data; absolute, since Ray's
    workers read the files from working directories of their own (``--data-dir .`` is the caller's)."""
    if data_dir is not None:
        return [Path(data_dir).absolute()]
    roots = []
    if os.environ.get("LLMCTR_DATA_DIR"):
        roots.append(Path(os.environ["LLMCTR_DATA_DIR"]).absolute())
    roots += [Path.cwd() / "data", REPO_ROOT / "data", REPO_ROOT.parent / "shared" / "data"]
    return roots


def find_dataset_dir(cfg: DatasetConfig, data_dir: str | Path | None = None) -> Path | None:
    """The first root holding this dataset's main table, or None."""
    for root in data_roots(data_dir):
        folder = root / cfg.subdir if cfg.subdir else root
        try:
            cfg.source.resolve(folder)
            return folder
        except FileNotFoundError:
            continue
    return None


def default_data_home(data_dir: str | Path | None = None) -> Path:
    """Where generated or downloaded datasets are written."""
    if data_dir is not None:
        return Path(data_dir).absolute()
    return Path(os.environ.get("LLMCTR_DATA_DIR", Path.cwd() / "data")).absolute()
