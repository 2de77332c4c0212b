"""``llmctr data download ml1m``: fetch the public archive when the machine has internet."""

from __future__ import annotations

import io
import logging
import urllib.request
import zipfile
from pathlib import Path

from llmctr.data.schema import DatasetConfig

log = logging.getLogger(__name__)


def download(cfg: DatasetConfig, data_home: Path, timeout: float = 60.0) -> Path:
    if not cfg.download_url:
        raise ValueError(f"dataset {cfg.name!r} has no download_url in its YAML")
    target = data_home / (cfg.subdir or cfg.name)
    log.info("downloading %s", cfg.download_url)
    try:
        with urllib.request.urlopen(cfg.download_url, timeout=timeout) as resp:
            payload = resp.read()
    except OSError as exc:
        raise RuntimeError(f"could not download {cfg.download_url}: {exc} (no internet here? "
                           f"place the files in {target} by hand)") from exc
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(payload)) as zf:
        for member in zf.infolist():
            name = Path(member.filename).name
            if name and not member.is_dir():
                (target / name).write_bytes(zf.read(member))
    return target
