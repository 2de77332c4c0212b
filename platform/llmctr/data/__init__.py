"""Data stage: raw logs → validated, split, encoded parquet + feature map (Ray Data)."""

from __future__ import annotations

import logging
from pathlib import Path

from llmctr import storage
from llmctr.config import is_path
from llmctr.data.feature_map import FeatureMap
from llmctr.data.local_frame import choose_engine
from llmctr.data.paths import default_data_home, find_dataset_dir
from llmctr.data.pipeline import CURRENT, Manifest, prepare_dataset
from llmctr.data.schema import DatasetConfig, load_dataset_config
from llmctr.runtime import init_ray
from llmctr.storage import artifacts_root

log = logging.getLogger(__name__)

__all__ = ["DatasetConfig", "FeatureMap", "Manifest", "load_dataset_config", "prepare", "locate_source",
           "prepared_dir", "resolve_prepared"]


def locate_source(cfg: DatasetConfig, data_dir: str | Path | None = None) -> Path:
    """The folder holding the dataset's raw files; generates synthetic data when the YAML says so."""
    found = find_dataset_dir(cfg, data_dir)
    if found is not None:
        return found
    if cfg.generator == "synthetic":
        from llmctr.data.synthetic import write_synthetic

        folder = default_data_home(data_dir) / (cfg.subdir or cfg.name)
        log.info("no %s data found; generating a synthetic dataset in %s", cfg.name, folder)
        write_synthetic(folder)
        return folder
    hint = f" (try: llmctr data download {cfg.name})" if cfg.download_url else ""
    raise FileNotFoundError(
        f"dataset {cfg.name!r}: none of {cfg.source.candidates()} found under "
        f"{cfg.subdir or '.'}/ in --data-dir, $LLMCTR_DATA_DIR, ./data or ../shared/data{hint}")


def prepared_dir(dataset: str | Path, artifacts: str | Path | None = None) -> storage.Location:
    """Where ``llmctr data prepare`` writes a dataset by default: ``ARTIFACTS/data/<name>``, where a dataset given
    by the path of its YAML is named by the YAML's ``name``."""
    name = load_dataset_config(dataset).name if is_path(dataset) else str(dataset)
    return storage.join(artifacts_root(artifacts), "data", name)


def resolve_prepared(location: storage.Location) -> storage.Location:
    """The folder holding a prepared dataset's files (on a URI: the version its CURRENT file names)."""
    return storage.follow_pointer(location, CURRENT)


def prepare(dataset: str | Path, data_dir: str | Path | None = None, artifacts: str | Path | None = None,
            out_dir: str | Path | None = None, force: bool = False, engine: str = "auto",
            address: str | None = None) -> tuple[storage.Location, Manifest]:
    """Load the dataset YAML, find (or generate) the raw data, and preprocess it on Ray Data (joining ``address``
    or starting a local Ray when not connected) or, for a small log, in process without Ray
    (``engine``: ``local_frame.choose_engine``).

    A finished output made from the same config and the same raw files is reused (``force`` redoes it).
    """
    cfg = load_dataset_config(dataset)
    source = locate_source(cfg, data_dir)
    out = (out_dir if storage.is_uri(out_dir) else Path(out_dir)) if out_dir else prepared_dir(cfg.name, artifacts)
    if not force:
        done = up_to_date(cfg, source, out)
        if done is not None:
            log.info("%s is up to date (same config and raw files); skipping preprocessing", out)
            return out, done
    engine = choose_engine(cfg, source, engine, address)
    if engine == "ray":
        init_ray(address)
    return out, prepare_dataset(cfg, source, out, engine=engine)


def up_to_date(cfg: DatasetConfig, source: Path, out: storage.Location) -> Manifest | None:
    """The existing manifest if ``out`` was prepared from this config and these raw files, else None."""
    from llmctr.config import dump_config
    from llmctr.data.pipeline import source_files

    try:
        manifest = Manifest.load(storage.join(resolve_prepared(out), "manifest.json"))
    except (OSError, ValueError, TypeError):
        return None
    same = manifest.config == dump_config(cfg) and manifest.source_files == source_files(cfg, source)
    return manifest if same else None
