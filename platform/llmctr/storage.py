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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

Location = str | Path

#: the pointer file naming the newest complete version folder of an artifact
LATEST = "LATEST"


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


def _fs_path(location: Location) -> tuple[pafs.FileSystem, str]:
    """A URI's filesystem and path, or the local filesystem and the absolute path."""
    if is_uri(location):
        return _fs(str(location))
    return pafs.LocalFileSystem(), str(Path(location).resolve())


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


def read_parquet(location: Location, columns: list[str] | None = None) -> pa.Table:
    """A folder of parquet files (a prepared split) as one Arrow table, its files in name order: the order Ray
    Data's ``read_parquet`` gives them, so a training loop sees the same rows in the same order either way."""
    fs, files = parquet_files(location)
    return pa.concat_tables([pq.read_table(f, columns=columns, filesystem=fs) for f in files])


def write_parquet(location: Location, table: pa.Table, rows_per_file: int | None = None) -> None:
    """``table`` as a folder of parquet files of ``rows_per_file`` rows (the last one shorter; one file when None),
    named so that ``parquet_files`` lists them in row order; an empty table is one empty file (its schema kept)."""
    fs, path = _fs_path(location)
    fs.create_dir(path, recursive=True)
    step = max(rows_per_file or table.num_rows, 1)
    for i, start in enumerate(range(0, max(table.num_rows, 1), step)):
        pq.write_table(table.slice(start, step), f"{path}/part-{i:05d}.parquet", filesystem=fs)


def parquet_files(location: Location) -> tuple[pafs.FileSystem, list[str]]:
    """The filesystem and parquet files of a folder (or one file), in name order (``read_parquet``'s)."""
    fs, path = _fs_path(location)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"no such parquet data: {location}")
    files = [path] if info.type == pafs.FileType.File else sorted(
        f.path for f in fs.get_file_info(pafs.FileSelector(path, recursive=True))
        if f.type == pafs.FileType.File and f.path.endswith(".parquet"))
    if not files:
        raise FileNotFoundError(f"no parquet files in {location}")
    return fs, files


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


def resolve_version(location: Location, expect: str, pointer: str = LATEST, what: str = "artifact") -> Location:
    """A version folder (it holds ``expect``), or a folder whose ``pointer`` file names one (local or URI)."""
    if exists(join(location, expect)):
        return location if is_uri(location) else Path(location)
    if exists(join(location, pointer)):
        return follow_pointer(location, pointer)
    raise FileNotFoundError(f"no {what} at {location} (expected {expect} or a {pointer} file)")


@contextmanager
def publish_version(parent: Location, pointer: str = LATEST, staged: bool = True) -> Iterator[tuple[Location, str]]:
    """Write a new version folder ``<parent>/<version>/`` and only then point ``<parent>/<pointer>`` at it.

    Yields ``(folder, version)`` to write into. Locally the folder is a temporary sibling renamed into place when
    the block ends; on a URI it is a local temporary folder uploaded afterwards (``staged``), or the URI folder
    itself for writers that speak URIs (``staged=False``, e.g. Ray Data: nobody reads a version before the pointer
    names it). An exception in the block publishes nothing and leaves the previous version current."""
    version = new_version()
    final = join(parent, version)
    if is_uri(parent):
        if staged:
            with tempfile.TemporaryDirectory() as tmp:
                yield Path(tmp), version
                upload_dir(Path(tmp), str(final))
        else:
            yield final, version
    else:
        tmp = Path(final).with_name(version + ".tmp")
        tmp.mkdir(parents=True)
        try:
            yield tmp, version
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        tmp.rename(final)
    write_text(join(parent, pointer), version + "\n")


def artifacts_root(path: str | Path | None = None) -> Location:
    """Artifacts root: explicit path, $LLMCTR_ARTIFACTS, else ./artifacts. A URI (``s3://bucket/prefix``) is
    returned as it is, a local path resolved."""
    chosen = path if path is not None else os.environ.get("LLMCTR_ARTIFACTS", "artifacts")
    return as_location(chosen)


def hash_file_into(h, path: Path, edge: int) -> None:
    """Feed ``path``'s content to the hasher ``h``: the whole file up to ``2 * edge`` bytes, else its first and last
    ``edge`` bytes (a large file's identity without reading it all; its size is the caller's to add)."""
    size = Path(path).stat().st_size
    with open(path, "rb") as fh:
        if size <= 2 * edge:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        else:
            h.update(fh.read(edge))
            fh.seek(size - edge)
            h.update(fh.read(edge))


def resolve_artifact_path(path: str | Path, artifacts: str | Path | None = None) -> str:
    """An artifact's location as given when it is a URI, absolute or exists from here; else relative to the
    artifacts root (so configs can say ``models/ml1m_dcnv2_elec`` on a laptop and a cluster alike)."""
    if is_uri(path) or Path(path).is_absolute() or Path(path).exists():
        return str(as_location(path))
    root = artifacts_root(artifacts)
    return f"{str(root).rstrip('/')}/{path}" if is_uri(root) else str(Path(root) / path)
