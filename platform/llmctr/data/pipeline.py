"""Preprocessing on Ray Data: read raw → parse/validate/join → label → split → vocab (train only) →
encode → parquet per split, plus feature_map.json, manifest.json and quarantine.parquet.

The output folder is written under a temporary name and renamed at the end, so a failed run never
leaves a half-written dataset and never touches the previous one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import ray

from llmctr import storage
from llmctr.config import dump_config
from llmctr.data import local_frame, raw
from llmctr.data.feature_map import LABEL, RAW_PREFIX, FeatureMap, build_feature_map, count_values
from llmctr.data.history import add_history, latest_histories, shuffle_partitions
from llmctr.data.history_store import USER_HISTORY
from llmctr.data.local_frame import LocalDataset
from llmctr.data.schema import DatasetConfig, LabelSpec, TableSpec
from llmctr.runtime import next_stage, stage_bar

log = logging.getLogger(__name__)
CURRENT = "CURRENT"  # names the complete version folder of a prepared dataset on a URI
SPLITS = ("train", "valid", "test")
#: the least rows per parquet file of a split (Ray Data's ``min_rows_per_file``): a few large files rather than one
#: per block, for readers that pay per file (FuxiCTR's parquet loader trained 3x slower on ML-1M's train split in
#: 161 block-sized files than on the same rows in one file)
ROWS_PER_FILE = 250_000


@dataclass
class Manifest:
    dataset: str
    source_files: dict[str, list]  # name: [size, content digest]
    rows_read: int
    rows_quarantined: int
    quarantine_reasons: dict[str, int]
    rows_dropped_by_label_rule: int
    rows: dict[str, int]
    positive_rate: dict[str, float]
    seconds: float
    config: dict = field(default_factory=dict)
    #: wall seconds of each stage (PREPARE_STAGES), where the time of a prepare went
    stage_seconds: dict[str, float] = field(default_factory=dict)
    #: what ran the stages: "ray" (Ray Data) or "local" (in process, ``data/local_frame.py``)
    engine: str = "ray"

    def save(self, path: storage.Location) -> None:
        storage.write_text(path, json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: storage.Location) -> Manifest:
        return cls(**json.loads(storage.read_text(path)))


def _parse(table: TableSpec, path: Path, engine: str) -> ray.data.Dataset | LocalDataset:
    names = raw.column_names(table, path)
    source = local_frame.read_table(path, table.format == "parquet") if engine == "local" else raw.read_table(table,
                                                                                                            path)
    return source.map_batches(
        raw.parse_batch, batch_format="pandas",
        fn_kwargs={"table": table, "names": names, "header": raw.header_line(table, path), "source": path.name})


def _select_rows(batch: pd.DataFrame, rejected: bool) -> pd.DataFrame:
    """Rejected rows (reason, raw line, source) or accepted rows (typed columns only)."""
    mask = batch[raw.REASON].notna()
    if rejected:
        return batch.loc[mask, [raw.REASON, raw.RAW, raw.SOURCE]]
    return batch.loc[~mask].drop(columns=[raw.REASON, raw.RAW, raw.SOURCE])


def _replace(tmp: Path, out_dir: Path) -> None:
    """Swap the finished folder in; the previous version is removed only after the new one is in place."""
    old = out_dir.with_name(out_dir.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        out_dir.rename(old)
    tmp.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)


def _join_batch(batch: pd.DataFrame, lookups: list[tuple[str, str, pd.DataFrame]]) -> pd.DataFrame:
    """Broadcast joins with small lookup tables; a key with no match quarantines the row."""
    for key, name, table in lookups:
        before = len(batch)
        batch = batch.merge(table, on=key, how="left", indicator="__hit")
        assert len(batch) == before, f"{name}: duplicate keys in lookup table"
        miss = (batch["__hit"] == "left_only").to_numpy() & batch[raw.REASON].isna().to_numpy()
        reasons = batch[raw.REASON].to_numpy(object).copy()
        reasons[miss] = [f"unknown {key} {v!r} (not in {name})" for v in batch.loc[miss, key]]
        batch[raw.REASON] = reasons
        batch = batch.drop(columns="__hit")
    return batch


def _apply_label(batch: pd.DataFrame, rule: LabelSpec) -> pd.DataFrame:
    y = batch[rule.column].astype(float).to_numpy()
    if rule.positive_min is None and rule.negative_max is None:
        label = y
        keep = np.isin(y, (0.0, 1.0))
    else:
        pos = y >= rule.positive_min if rule.positive_min is not None else np.zeros(len(y), bool)
        neg = y <= rule.negative_max if rule.negative_max is not None else ~pos
        label = pos.astype(float)
        keep = pos | neg
    batch = batch.assign(**{LABEL: label.astype(np.float32)})
    return batch[keep]


def _encode_batch(batch: pd.DataFrame, fmap: FeatureMap, columns: dict[str, str]) -> pa.Table:
    frame = batch.rename(columns=columns)
    out = fmap.encode_frame(frame, keep_raw=True)
    raw_lists = {RAW_PREFIX + f.name for f in fmap.fields if f.kind == "sequence"}
    data = {k: (list(v) if v.ndim == 2 else v) for k, v in out.items() if k not in raw_lists}
    data[LABEL] = frame[LABEL].to_numpy(np.float32)
    table = pa.Table.from_pandas(pd.DataFrame(data), preserve_index=False)
    for name in raw_lists:  # explicit type: a block of empty histories must not become list<null>
        table = table.append_column(name, pa.array(list(out[name]), type=pa.list_(pa.string())))
    return table


def source_files(cfg: DatasetConfig, source_dir: Path) -> dict[str, list]:
    """Raw files used, with size and a digest of their content (how a finished output is known to be current: a
    copy of the same files, or the same files with a new modification time, is still current)."""
    paths = [t.resolve(source_dir) for t in [cfg.source, *cfg.joins]]
    return {p.name: [p.stat().st_size, file_digest(p)] for p in paths}


#: raw files up to 64 MiB are hashed whole; larger ones by their first and last 32 MiB (and their size)
EDGE = 32 << 20


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    storage.hash_file_into(h, path, EDGE)
    return h.hexdigest()[:32]


def _split_sizes(n: int, ratios: tuple[float, float, float]) -> tuple[int, int, int]:
    n_train = int(n * ratios[0])
    n_valid = int(n * ratios[1])
    return n_train, n_valid, n - n_train - n_valid


def prepare_dataset(cfg: DatasetConfig, source_dir: Path, out_dir: storage.Location, engine: str = "auto"
                    ) -> Manifest:
    """Run the whole preprocessing; return the manifest. ``out_dir`` appears only when complete. ``engine``: "ray"
    (Ray Data), "local" (in process) or "auto" (``local_frame.choose_engine``); both give the same output.

    A local ``out_dir`` is written as ``<out_dir>.tmp`` and renamed; a URI one (``s3://...``) as a new version
    folder ``<out_dir>/<version>/`` named by ``<out_dir>/CURRENT`` once complete (see ``llmctr.storage``).
    """
    t0 = time.time()
    engine = local_frame.choose_engine(cfg, source_dir, engine)
    if storage.is_uri(out_dir):
        with storage.publish_version(out_dir, pointer=CURRENT, staged=False) as (folder, _):
            manifest = _write_prepared(cfg, source_dir, folder, t0, engine)
    else:
        out_dir = Path(out_dir)
        tmp = out_dir.with_name(out_dir.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        manifest = _write_prepared(cfg, source_dir, tmp, t0, engine)
        _replace(tmp, out_dir)
    log.info("prepared %s in %.1fs (%s): %s", cfg.name, manifest.seconds, engine, manifest.rows)
    return manifest


PREPARE_STAGES = ["read", "quarantine", "label", "split", "feature map", *(f"write {s}" for s in SPLITS)]


def _write_prepared(cfg: DatasetConfig, source_dir: Path, tmp: storage.Location, t0: float, engine: str
                    ) -> Manifest:
    """Parse, quarantine, label, split, build the feature map and write the encoded splits into ``tmp`` (a bar of
    these stages on a terminal)."""
    seconds: dict[str, float] = {}
    last = t0

    def done(name: str) -> None:
        nonlocal last
        now = time.time()
        seconds[name], last = round(now - last, 2), now
        next_stage(bar, name)

    # Blocks keep their order through every stage, so each split's parquet files (read back in name order) hold the
    # time-ordered rows in the same order on every run: training on a re-prepared dataset sees the same batches.
    ctx = ray.data.DataContext.get_current()
    saved, ctx.execution_options.preserve_order = ctx.execution_options.preserve_order, True
    try:
        with stage_bar(f"prepare {cfg.name}", PREPARE_STAGES) as bar:
            manifest = _stages(cfg, source_dir, tmp, t0, done, engine)
    finally:
        ctx.execution_options.preserve_order = saved
    manifest.stage_seconds, manifest.engine = seconds, engine
    manifest.save(storage.join(tmp, "manifest.json"))
    return manifest


def _stages(cfg: DatasetConfig, source_dir: Path, tmp: storage.Location, t0: float, done, engine: str) -> Manifest:
    main_path = cfg.source.resolve(source_dir)
    files = source_files(cfg, source_dir)
    lookups, bad_parts = [], []
    for join in cfg.joins:
        jpath = join.resolve(source_dir)
        table = _parse(join, jpath, engine).to_pandas()
        bad_parts.append(table[table[raw.REASON].notna()])
        good = table[table[raw.REASON].isna()].drop(columns=[raw.REASON, raw.RAW, raw.SOURCE])
        good = good.drop_duplicates(subset=join.key, keep="first")
        lookups.append((join.key, jpath.name, good))
    log.info("reading %s", main_path)
    parsed = _parse(cfg.source, main_path, engine)
    if lookups:
        parsed = parsed.map_batches(_join_batch, batch_format="pandas", fn_kwargs={"lookups": lookups})
    parsed = parsed.materialize()
    rows_read = parsed.count()
    done("read")

    bad_main = parsed.map_batches(_select_rows, batch_format="pandas", fn_kwargs={"rejected": True}).to_pandas()
    bad_parts.append(bad_main)
    quarantine = pd.concat([b.reindex(columns=[raw.REASON, raw.RAW, raw.SOURCE]) for b in bad_parts], ignore_index=True)
    quarantine.columns = ["reason", "raw", "source"]
    quarantine = quarantine.astype(str)
    pq.write_table(pa.Table.from_pandas(quarantine, preserve_index=False), str(storage.join(tmp, "quarantine.parquet")))
    done("quarantine")

    good = parsed.map_batches(_select_rows, batch_format="pandas", fn_kwargs={"rejected": False})
    labelled = good.map_batches(_apply_label, batch_format="pandas", fn_kwargs={"rule": cfg.label})
    if cfg.sequence_fields:  # behaviour history from the whole time-ordered log, before the split
        labelled = add_history(labelled, cfg, label=LABEL, partitions=shuffle_partitions(rows_read))
    labelled = labelled.materialize()
    n = labelled.count()
    histories = latest_histories(labelled, cfg, label=LABEL, partitions=shuffle_partitions(n))
    if histories:  # where the serving history store starts (data/history_store.py): the first sequence field's
        storage.write_text(storage.join(tmp, USER_HISTORY), json.dumps(next(iter(histories.values()))))
    dropped = rows_read - len(bad_main) - n
    done("label")

    if cfg.split.kind == "temporal":
        ordered = labelled.sort(cfg.split.order_by)
    else:
        ordered = labelled.random_shuffle(seed=cfg.split.seed)
    n_train, n_valid, _ = _split_sizes(n, cfg.split.ratios)
    splits = dict(zip(SPLITS, ordered.materialize().split_at_indices([n_train, n_train + n_valid])))
    done("split")

    inputs = cfg.input_fields
    n_tr = max(splits["train"].count(), 1)
    # per-block counts summed on Ray Data: the driver receives one row per distinct value, never one per block
    counts = (splits["train"].map_batches(count_values, batch_format="pandas", fn_kwargs={"specs": inputs})
              .groupby(["field", "value"], num_partitions=shuffle_partitions(n_tr)).sum("count")
              .rename_columns({"sum(count)": "count"}))
    numeric = [f.column for f in inputs if f.kind == "numeric"]
    sample = (splits["train"].select_columns(numeric).random_sample(min(1.0, 1e6 / n_tr), seed=cfg.split.seed)
              .to_pandas() if numeric else pd.DataFrame())
    fmap = build_feature_map(cfg, counts.to_pandas(), sample)
    fmap.save(storage.join(tmp, "feature_map.json"))
    done("feature map")

    rename = {f.column: f.name for f in cfg.fields}
    rows, pos_rate = {}, {}
    for name, ds in splits.items():
        encoded = ds.map_batches(_encode_batch, batch_format="pandas",
                                 fn_kwargs={"fmap": fmap, "columns": rename}).materialize()
        encoded.write_parquet(str(storage.join(tmp, name)), min_rows_per_file=ROWS_PER_FILE)
        rows[name] = encoded.count()
        pos_rate[name] = float(encoded.sum(LABEL)) / rows[name] if rows[name] else float("nan")
        done(f"write {name}")

    reasons = quarantine["reason"].str.split(":").str[0].value_counts().to_dict()
    manifest = Manifest(dataset=cfg.name, source_files=files, rows_read=rows_read,
                        rows_quarantined=len(quarantine), quarantine_reasons={k: int(v) for k, v in reasons.items()},
                        rows_dropped_by_label_rule=int(dropped), rows=rows, positive_rate=pos_rate,
                        seconds=round(time.time() - t0, 2), config=dump_config(cfg))
    return manifest
