"""Data rules on real (sliced) ML-1M and on synthetic data with planted bad rows."""

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from llmctr.config import ConfigError, configs_dir
from llmctr.data import FeatureMap, load_dataset_config
from llmctr.data.feature_map import OOV_ID
from llmctr.data.pipeline import PREPARE_STAGES, ROWS_PER_FILE, Manifest, prepare_dataset
from llmctr.data.schema import DatasetConfig
from llmctr.data.synthetic import BAD_LINES


def _ratings(folder):
    frame = pd.read_csv(folder / "ratings.dat", sep="::", engine="python", header=None,
                        names=["user_id", "movie_id", "rating", "timestamp"])
    return frame


@pytest.fixture(scope="module")
def ml1m_prepared(ray_local, ml1m_slice, tmp_path_factory):
    out = tmp_path_factory.mktemp("ml1m_out") / "ml1m"
    manifest = prepare_dataset(load_dataset_config("ml1m"), ml1m_slice, out, engine="ray")
    return out, manifest


def test_ml1m_label_rule_and_counts(ml1m_prepared, ml1m_slice):
    out, manifest = ml1m_prepared
    ratings = _ratings(ml1m_slice)
    kept = ratings[ratings.rating != 3]
    assert manifest.rows_read == len(ratings)
    assert manifest.rows_dropped_by_label_rule == int((ratings.rating == 3).sum())
    assert sum(manifest.rows.values()) == len(kept)
    n = len(kept)
    assert manifest.rows["train"] == int(n * 0.8) and manifest.rows["valid"] == int(n * 0.1)
    labels = pd.concat([pd.read_parquet(out / s) for s in ("train", "valid", "test")])
    assert labels["label"].mean() == pytest.approx((kept.rating >= 4).mean())


def test_ml1m_temporal_split_order(ml1m_prepared, ml1m_slice):
    out, _ = ml1m_prepared
    ratings = _ratings(ml1m_slice)
    ts = ratings.set_index(["user_id", "movie_id"])["timestamp"]

    def times(split):
        frame = pd.read_parquet(out / split)
        keys = list(zip(frame["raw__user_id"].astype(int), frame["raw__movie_id"].astype(int)))
        return ts.loc[keys].to_numpy()

    train, valid, test = times("train"), times("valid"), times("test")
    assert train.max() <= valid.min() and valid.max() <= test.min()


@pytest.mark.slow  # about 60 s: Ray Data with blocks forced small
def test_splits_are_written_in_few_large_files(ray_local, synthetic_source, tmp_path, monkeypatch):
    """Not one file per Ray block: with blocks forced small, a split below ``ROWS_PER_FILE`` rows is still one file."""
    monkeypatch.setattr(ray_local.data.DataContext.get_current(), "target_max_block_size", 32 * 1024)
    out = tmp_path / "synthetic"
    manifest = prepare_dataset(load_dataset_config("synthetic"), synthetic_source, out, engine="ray")
    assert 0 < manifest.rows["train"] < ROWS_PER_FILE
    files = {s: len(list((out / s).glob("*.parquet"))) for s in ("train", "valid", "test")}
    assert files == {"train": 1, "valid": 1, "test": 1}
    assert len(pd.read_parquet(out / "train")) == manifest.rows["train"]


def _same_prepared(a, b) -> None:
    """Two prepared folders hold the same rows in the same order, quarantine, feature map, histories and counts."""
    for name in ("train", "valid", "test", "quarantine.parquet"):
        assert pq.read_table(a / name).to_pylist() == pq.read_table(b / name).to_pylist(), name
    for name in ("feature_map.json", "user_history.json"):
        assert (a / name).is_file() == (b / name).is_file(), name
        if (a / name).is_file():
            assert json.loads((a / name).read_text()) == json.loads((b / name).read_text()), name
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
    for key in ("seconds", "stage_seconds", "engine"):
        ma.pop(key), mb.pop(key)
    assert ma == mb


@pytest.mark.parametrize("dataset", ["ml1m", "synthetic"])
def test_the_in_process_engine_writes_what_ray_data_writes(dataset, ml1m_prepared, ml1m_slice, prepared_synthetic,
                                                           synthetic_source, tmp_path):
    """ML-1M's slice (two joined tables, a history field) and the synthetic log (planted bad rows, a history field),
    prepared on Ray Data by the fixtures and here in process: identical output."""
    ray_out, source = (ml1m_prepared[0], ml1m_slice) if dataset == "ml1m" else (prepared_synthetic, synthetic_source)
    manifest = prepare_dataset(load_dataset_config(dataset), source, tmp_path / dataset, engine="local")
    assert manifest.engine == "local" and Manifest.load(ray_out / "manifest.json").engine == "ray"
    assert manifest.rows_quarantined > 0 or dataset == "ml1m"
    _same_prepared(ray_out, tmp_path / dataset)


def test_auto_engine_prepares_small_logs_in_process(ml1m_slice, monkeypatch):
    from llmctr.data import local_frame

    cfg = load_dataset_config("ml1m")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert local_frame.choose_engine(cfg, ml1m_slice) == "local"
    assert local_frame.choose_engine(cfg, ml1m_slice, address="auto") == "ray"
    monkeypatch.setattr(local_frame, "LOCAL_MAX_BYTES", 10)
    assert local_frame.choose_engine(cfg, ml1m_slice) == "ray"
    assert local_frame.choose_engine(cfg, ml1m_slice, "local") == "local"
    with pytest.raises(ValueError, match="engine must be one of"):
        local_frame.choose_engine(cfg, ml1m_slice, "spark")


def test_vocab_built_on_train_only(ml1m_prepared):
    out, _ = ml1m_prepared
    fmap = FeatureMap.load(out / "feature_map.json")
    train = pd.read_parquet(out / "train")
    test = pd.read_parquet(out / "test")
    assert set(fmap.field("movie_id").vocab) == set(train["raw__movie_id"])
    unseen = ~test["raw__movie_id"].isin(set(train["raw__movie_id"]))
    assert unseen.any(), "the slice should contain test movies never seen in train"
    assert (test.loc[unseen, "movie_id"] == OOV_ID).all()
    assert (test.loc[~unseen, "movie_id"] != OOV_ID).all()
    meta = json.loads((out / "feature_map.json").read_text())
    assert meta["field_order"] == ["user_id", "gender", "age", "occupation", "movie_id", "title", "genres", "history"]
    assert meta["vocab_sizes"]["gender"] == 4  # pad + OOV + {M, F}


@pytest.mark.slow  # the whole shared copy; the default suite prepares a slice of it (test_ml1m_label_rule_and_counts)
@pytest.mark.skipif(not (__import__("conftest").SHARED_ML1M / "ratings_users1-2999.dat").exists(),
                    reason="shared ML-1M copy not present")
def test_ml1m_full_copy_protocol_counts(ray_local, tmp_path):
    """The LLaCTR protocol on the shared copy gives exactly 360,434 samples: 288,347 / 36,043 / 36,044."""
    from conftest import SHARED_ML1M

    manifest = prepare_dataset(load_dataset_config("ml1m"), SHARED_ML1M, tmp_path / "ml1m")
    assert manifest.rows == {"train": 288_347, "valid": 36_043, "test": 36_044}
    assert manifest.rows_quarantined == 0


def test_quarantine_counts_planted_bad_rows(prepared_synthetic):
    manifest = Manifest.load(prepared_synthetic / "manifest.json")
    quarantine = pd.read_parquet(prepared_synthetic / "quarantine.parquet")
    assert manifest.rows_quarantined == len(BAD_LINES) + 1 == len(quarantine)
    reasons = " | ".join(quarantine["reason"])
    for expected in ("wrong column count", "non-integer user_id", "non-integer timestamp",
                     "click out of range", "undecodable bytes"):
        assert expected in reasons
    assert set(quarantine["source"]) == {"clicks.csv"}
    assert sum(manifest.rows.values()) == manifest.rows_read - manifest.rows_quarantined
    assert list(manifest.stage_seconds) == PREPARE_STAGES, "where the time went, stage by stage"
    assert sum(manifest.stage_seconds.values()) == pytest.approx(manifest.seconds, abs=0.5)


def test_generic_csv_numeric_and_multi_valued(prepared_synthetic):
    fmap = FeatureMap.load(prepared_synthetic / "feature_map.json")
    train = pd.read_parquet(prepared_synthetic / "train")
    price = fmap.field("price")
    assert price.kind == "numeric" and not price.boundaries
    assert abs(train["price"].mean()) < 0.1 and train["price"].std() == pytest.approx(1.0, abs=0.1)
    hour = fmap.field("hour")
    assert 1 <= len(hour.boundaries) <= 5 and train["hour"].min() >= 2
    tags = np.stack(train["tags"].to_numpy())
    assert tags.shape[1] == 3 and (tags[:, 0] >= 2).all()
    assert ((tags == 0).sum(1) > 0).any(), "rows with fewer tags are padded with 0"


def test_failed_prepare_keeps_previous_output(prepared_synthetic, tmp_path):
    cfg = load_dataset_config("synthetic")
    before = (prepared_synthetic / "manifest.json").read_text()
    with pytest.raises(FileNotFoundError):
        prepare_dataset(cfg, tmp_path, prepared_synthetic)
    assert (prepared_synthetic / "manifest.json").read_text() == before


def test_config_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsource: [unclosed\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_dataset_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_dataset_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="unknown dataset"):
        load_dataset_config("no_such_dataset")
    typo = tmp_path / "typo.yaml"
    typo.write_text(configs_dir().joinpath("datasets/synthetic.yaml")
                    .read_text().replace("label: {column: click}", "label: {colum: click}"))
    with pytest.raises(ConfigError, match="colum"):
        load_dataset_config(typo)


def test_fields_must_use_declared_columns():
    with pytest.raises(Exception, match="no table declares"):
        DatasetConfig(name="x", source={"path": "a.csv", "columns": [{"name": "a"}, {"name": "y", "type": "int"}]},
                      label={"column": "y"}, split={"kind": "random"},
                      fields=[{"name": "b", "kind": "categorical", "description": "b"}])


def test_prepare_skips_when_up_to_date(ray_local, synthetic_source, prepared_synthetic, tmp_path):
    """A copy of the session's prepared folder (made from the same config and raw files) is reused as it is; --force
    prepares it again, to the same rows in the same order (training on it sees the same batches)."""
    import shutil

    from llmctr.data import prepare

    out = tmp_path / "syn"
    shutil.copytree(prepared_synthetic, out)
    first = Manifest.load(out / "manifest.json")
    stamp = (out / "manifest.json").stat().st_mtime_ns
    _, again = prepare("synthetic", data_dir=synthetic_source.parent, out_dir=out)
    assert again == first and (out / "manifest.json").stat().st_mtime_ns == stamp
    _, forced = prepare("synthetic", data_dir=synthetic_source.parent, out_dir=out, force=True)
    assert (out / "manifest.json").stat().st_mtime_ns != stamp and forced.rows == first.rows
    for split in ("train", "valid", "test"):
        pd.testing.assert_frame_equal(pd.read_parquet(out / split), pd.read_parquet(prepared_synthetic / split))


def test_raw_files_are_known_by_content_not_by_modification_time(tmp_path):
    import os

    from llmctr.data import load_dataset_config
    from llmctr.data.pipeline import source_files
    from llmctr.data.synthetic import write_synthetic

    write_synthetic(tmp_path / "a", n_rows=300, seed=1)
    cfg = load_dataset_config("synthetic")
    first = source_files(cfg, tmp_path / "a")
    for path in (tmp_path / "a").iterdir():  # a copy of the same files elsewhere, a day later
        os.utime(path, (path.stat().st_atime + 86400, path.stat().st_mtime + 86400))
    (tmp_path / "a").rename(tmp_path / "b")
    assert source_files(cfg, tmp_path / "b") == first
    raw = next(p for p in (tmp_path / "b").iterdir() if p.name in first)
    data = bytearray(raw.read_bytes())
    data[-2] = ord("7") if data[-2] != ord("7") else ord("8")  # same size, other content
    raw.write_bytes(bytes(data))
    assert source_files(cfg, tmp_path / "b") != first
