"""Other raw sources: a parquet table and the download command (a file:// archive stands in for the web)."""

import io
import zipfile

import pandas as pd
import pytest

from llmctr.data import load_dataset_config
from llmctr.data.download import download
from llmctr.data.pipeline import prepare_dataset
from llmctr.data.schema import DatasetConfig
from llmctr.data.synthetic import synthetic_frame


def test_parquet_source_with_bad_values(ray_local, tmp_path):
    frame = synthetic_frame(n_rows=3000, seed=3)
    frame["hour"] = frame["hour"].astype(object)
    frame.loc[5, "hour"] = 99          # out of range
    frame.loc[6, "user_id"] = None     # missing id
    frame.to_parquet(tmp_path / "clicks.parquet")
    cfg = load_dataset_config("synthetic")
    data = {**cfg.__dict__, "source": {**cfg.source.__dict__, "path": "clicks.parquet", "format": "parquet",
                                       "header": False}}
    cfg = DatasetConfig(**data)
    manifest = prepare_dataset(cfg, tmp_path, tmp_path / "out")
    quarantine = pd.read_parquet(tmp_path / "out" / "quarantine.parquet")
    assert manifest.rows_quarantined == 2
    assert sorted(r.split(":")[0].split(" [")[0] for r in quarantine["reason"]) == ["hour out of range",
                                                                                   "missing user_id"]
    assert sum(manifest.rows.values()) == 2998


def test_download_unpacks_archive(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ml-1m/ratings.dat", "1::1193::5::978300760\n")
        zf.writestr("ml-1m/users.dat", "1::F::1::10::48067\n")
    archive = tmp_path / "ml-1m.zip"
    archive.write_bytes(buf.getvalue())
    cfg = load_dataset_config("ml1m")
    cfg.download_url = archive.as_uri()
    folder = download(cfg, tmp_path / "data")
    assert folder == tmp_path / "data" / "ml-1m"
    assert (folder / "ratings.dat").read_text().startswith("1::1193::5")


def test_download_failure_is_clear(tmp_path):
    cfg = load_dataset_config("ml1m")
    cfg.download_url = (tmp_path / "missing.zip").as_uri()
    with pytest.raises(RuntimeError, match="could not download"):
        download(cfg, tmp_path)


def test_criteo_sample_mixed_numeric_categorical(ray_local, tmp_path):
    """A new dataset is one YAML: the Criteo sample (numeric counts with blanks + hashed categoricals)."""
    import torch
    from conftest import REPO

    from llmctr.data import FeatureMap
    from llmctr.models import ModelConfig
    from llmctr.models.artifact import build_model

    source = REPO.parent / "shared" / "data" / "criteo_avazu_samples"
    if not (source / "criteo_sample.txt").exists():
        pytest.skip("shared Criteo sample not present")
    manifest = prepare_dataset(load_dataset_config("criteo_sample"), source, tmp_path / "criteo")
    assert manifest.rows_read == 200 and manifest.rows_quarantined == 0
    assert sum(manifest.rows.values()) == 200 and manifest.rows["train"] == 160
    fmap = FeatureMap.load(tmp_path / "criteo" / "feature_map.json")
    assert len(fmap.input_fields) == 39
    train = pd.read_parquet(tmp_path / "criteo" / "train")
    assert train["I1"].notna().all(), "blank counts become 0 after standardisation"
    assert (train["C4"] == 1).any(), "hashes seen once in train fall below min_count 2 → OOV id"
    assert fmap.field("C4").vocab_size < train["raw__C4"].nunique() + 2
    model = build_model(fmap, ModelConfig(name="dcnv2", embedding_dim=4, params={"hidden_units": [16]}))
    batch = {f.name: torch.from_numpy(train[f.name].to_numpy()) for f in fmap.input_fields}
    out = model(batch)
    assert out.logit.shape == (160,) and torch.isfinite(out.logit).all()


def test_synthetic_log_is_written_in_time_ordered_chunks(tmp_path, monkeypatch):
    """A log larger than one chunk is drawn a chunk at a time (never held whole), stays in time order with the
    exact row count; a log within one chunk is synthetic_frame's, row for row."""
    from llmctr.data import synthetic

    small = pd.concat(synthetic.synthetic_chunks(2_000, seed=5, chunk_rows=5_000), ignore_index=True)
    pd.testing.assert_frame_equal(small, synthetic.synthetic_frame(2_000, seed=5))
    drawn = []
    monkeypatch.setattr(synthetic, "CHUNK_ROWS", 1_000)
    real = synthetic._rows
    monkeypatch.setattr(synthetic, "_rows", lambda *a, **k: drawn.append(a[2]) or real(*a, **k))
    path = synthetic.write_synthetic(tmp_path, n_rows=3_500, seed=5, n_users=300, n_items=50)
    frame = pd.read_csv(path)
    assert drawn == [875, 875, 875, 875] and len(frame) == 3_500
    assert frame["timestamp"].is_monotonic_increasing and frame["user_id"].max() <= 300
    assert 0.2 < frame["click"].mean() < 0.8
