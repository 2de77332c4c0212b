"""Where data and artifacts live. Data stays outside the repository (licences forbid committing it)."""

from __future__ import annotations

import os
from pathlib import Path

from llmctr.config import REPO_ROOT
from llmctr.data.schema import DatasetConfig
from llmctr.storage import as_location, is_uri


def data_roots(data_dir: str | Path | None = None) -> list[Path]:
    """Candidate data roots, in order: --data-dir, $LLMCTR_DATA_DIR, ./data, ../shared/data."""
    if data_dir is not None:
        return [Path(data_dir)]
    roots = []
    if os.environ.get("LLMCTR_DATA_DIR"):
        roots.append(Path(os.environ["LLMCTR_DATA_DIR"]))
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


def artifacts_root(path: str | Path | None = None) -> str | Path:
    """Artifacts root: explicit path, $LLMCTR_ARTIFACTS, else ./artifacts. A URI (``s3://bucket/prefix``) is
    returned as it is (see ``llmctr.storage``), a local path resolved."""
    chosen = path if path is not None else os.environ.get("LLMCTR_ARTIFACTS", "artifacts")
    return as_location(chosen)


def default_data_home(data_dir: str | Path | None = None) -> Path:
    """Where generated or downloaded datasets are written."""
    if data_dir is not None:
        return Path(data_dir)
    return Path(os.environ.get("LLMCTR_DATA_DIR", Path.cwd() / "data"))


def resolve_artifact_path(path: str | Path, artifacts: str | Path | None = None) -> str:
    """An artifact's location as given when it is a URI, absolute or exists from here; else relative to the
    artifacts root (so configs can say ``models/ml1m_dcnv2_elec`` on a laptop and a cluster alike)."""
    if is_uri(path) or Path(path).is_absolute() or Path(path).exists():
        return str(as_location(path))
    root = artifacts_root(artifacts)
    return f"{str(root).rstrip('/')}/{path}" if is_uri(root) else str(Path(root) / path)
