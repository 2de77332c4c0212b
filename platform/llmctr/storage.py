"""Storage locations: a local directory or any pyarrow filesystem URI (``s3://``, ``gs://``, ``hdfs://``,
``file://``), so a cluster's jobs can share data and artifacts through object storage.

Local folders are written under a temporary name and renamed. Object stores have no rename, so a URI location
is published in two steps: the immutable folder first (``<dir>/<version>/``), then a one-line pointer file
(``LATEST`` / ``CURRENT``) naming it; one object PUT is atomic, so readers see the old version or the new one,
never half of one. Reading a URI folder downloads it once into a local cache (``$LLMCTR_CACHE``, default
``~/.cache/llmctr``); version folders never change, so the cached copy stays valid.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow.fs as pafs

Location = str | Path


def new_version() -> str:
    """A sortable version name, e.g. ``v20261123-141355-186`` (UTC, milliseconds)."""
    return time.strftime("v%Y%m%d-%H%M%S", time.gmtime()) + f"-{int(time.time() * 1000) % 1000:03d}"


def is_uri(location: Location) -> bool:
    return "://" in str(location)


def as_location(location: str | Path) -> Location:
    """A URI as given; a local path made absolute (Ray workers do not share the driver's working directory)."""
    return location if is_uri(location) else Path(location).resolve()


def join(root: Location, *parts: str) -> Location:
    """``root / parts`` for a local path, ``root/parts`` for a URI (query strings are not supported)."""
    if is_uri(root):
        return "/".join([str(root).rstrip("/"), *(p.strip("/") for p in parts)])
    return Path(root).joinpath(*parts)


def _fs(uri: str) -> tuple[pafs.FileSystem, str]:
    try:
        return pafs.FileSystem.from_uri(uri)
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError with its own wording
        raise ValueError(f"cannot open storage location {uri!r}: {exc}") from exc


def exists(location: Location) -> bool:
    if not is_uri(location):
        return Path(location).exists()
    fs, path = _fs(str(location))
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def read_text(location: Location) -> str:
    if not is_uri(location):
        return Path(location).read_text()
    fs, path = _fs(str(location))
    try:
        with fs.open_input_stream(path) as fh:
            return fh.read().decode()
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"no such file: {location}") from exc


def write_text(location: Location, text: str) -> None:
    """Atomic: local files via a temporary file and rename; on object stores one PUT is atomic."""
    if not is_uri(location):
        path = Path(location)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
        return
    fs, path = _fs(str(location))
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as fh:
        fh.write(text.encode())


def upload_dir(local: Path, uri: str) -> None:
    """Copy a local folder's files to ``uri`` (the folder should be new: a version nobody reads yet)."""
    fs, path = _fs(uri)
    fs.create_dir(path, recursive=True)
    pafs.copy_files(str(local), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)


def cache_root() -> Path:
    return Path(os.environ.get("LLMCTR_CACHE", Path.home() / ".cache" / "llmctr"))


def local_copy(location: Location) -> Path:
    """A local folder with the contents of ``location``: itself when local, else a cached download."""
    if not is_uri(location):
        return Path(location)
    uri = str(location).rstrip("/")
    target = cache_root() / "downloads" / hashlib.sha256(uri.encode()).hexdigest()[:24]
    if (target / ".complete").is_file():
        return target
    fs, path = _fs(uri)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        raise FileNotFoundError(f"no such folder: {uri}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        pafs.copy_files(path, str(tmp), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
        (tmp / ".complete").write_text(uri + "\n")
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def follow_pointer(location: Location, pointer: str) -> Location:
    """``location/<name>`` when ``location`` holds a ``pointer`` file naming a version folder, else ``location``."""
    marker = join(location, pointer)
    if exists(marker):
        return join(location, read_text(marker).strip())
    return location
