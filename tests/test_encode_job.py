"""The Ray Data embedding job, its vector cache, and the semantic tables aligned with the feature map."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from llmctr.data import FeatureMap, load_dataset_config
from llmctr.semantics.cache import VectorCache, text_hash
from llmctr.semantics.encode_job import encode_texts
from llmctr.semantics.encoders import EncoderConfig, HFEncoder
from llmctr.semantics.tables import SemanticTables, build_semantic_tables
from llmctr.semantics.text import feature_text, sample_text

TEXTS = [f"The product's category is c{i}." for i in range(150)] + ["The shopper's segment is g1."] * 20


@pytest.fixture(scope="module")
def llama_cfg(tiny_llama):
    return EncoderConfig(model=tiny_llama, batch_size=32)


def test_ray_job_matches_plain_loop_and_second_run_encodes_nothing(ray_local, llama_cfg, tmp_path):
    first = encode_texts(TEXTS, llama_cfg, cache_root=tmp_path, num_actors=2, block_size=40, progress=False)
    assert first.unique == 151 and first.encoded == 151 and first.cache_hits == 0 and first.actors == 2
    plain = HFEncoder(llama_cfg).encode(TEXTS)
    assert first.vectors.shape == plain.shape and first.vectors.dtype == np.float32
    np.testing.assert_allclose(first.vectors, plain, atol=1e-5)
    assert len(VectorCache(tmp_path, first.key).shards()) == 4  # one shard per finished block

    again = encode_texts(TEXTS, llama_cfg, cache_root=tmp_path, progress=False)
    assert again.encoded == 0 and again.cache_hits == 151 and again.actors == 0
    np.testing.assert_array_equal(again.vectors, first.vectors)


def test_resume_after_partial_cache(ray_local, llama_cfg, tmp_path):
    """An interrupted job leaves whole shards (and maybe a torn temp file): a re-run encodes only the rest."""
    part = encode_texts(TEXTS[:60], llama_cfg, cache_root=tmp_path, use_ray=False, progress=False)
    cache = VectorCache(tmp_path, part.key)
    (cache.dir / ".shard-torn.parquet.tmp").write_bytes(b"half a shard")
    full = encode_texts(TEXTS, llama_cfg, cache_root=tmp_path, num_actors=1, progress=False)
    assert full.cache_hits == 60 and full.encoded == 91
    np.testing.assert_allclose(full.vectors, HFEncoder(llama_cfg).encode(TEXTS), atol=1e-5)


def test_cache_is_keyed_by_encoder(llama_cfg, tmp_path):
    encode_texts(TEXTS[:5], llama_cfg, cache_root=tmp_path, use_ray=False, progress=False)
    other = EncoderConfig(model=llama_cfg.model, layer=1)
    result = encode_texts(TEXTS[:5], other, cache_root=tmp_path, use_ray=False, progress=False)
    assert result.encoded == 5 and result.cache_hits == 0
    hashes = [text_hash(t) for t in TEXTS[:5]]
    assert set(VectorCache(tmp_path, result.key).load(hashes)) == set(hashes)


@pytest.fixture(scope="module")
def tables_dir(ray_local, prepared_synthetic, llama_cfg, tmp_path_factory):
    root = tmp_path_factory.mktemp("sem")
    out = build_semantic_tables(prepared_synthetic, load_dataset_config("synthetic"), llama_cfg, root / "tables",
                                num_actors=1, cache_root=root / "cache", progress=False)
    return out, root


def test_tables_aligned_with_feature_map_ids(tables_dir, prepared_synthetic, llama_cfg):
    out, _ = tables_dir
    tables = SemanticTables.load(out)
    fmap = FeatureMap.load(prepared_synthetic / "feature_map.json")
    cfg = load_dataset_config("synthetic")
    specs = {f.name: f for f in cfg.fields}
    assert tables.fields == [f.name for f in fmap.static_fields]  # the row's own fields, not its history
    assert tables.field.shape == (len(fmap.static_fields), 64)
    # categorical and multi-valued fields get a table; numeric ones (plain or bucketed) only a field vector
    assert set(tables.features) == {"user_id", "item_id", "user_group", "item_category", "device", "tags"}
    encoder = HFEncoder(llama_cfg)
    for name, table in tables.features.items():
        fm = fmap.field(name)
        assert table.shape == (fm.vocab_size, 64) and table.dtype == torch.float32
        assert torch.count_nonzero(table[0]) == 0
        probe = [1, 2, fm.vocab_size - 1]
        expected = encoder.encode([feature_text(specs[name], "")] + [feature_text(specs[name], fm.vocab[i - 2])
                                                                     for i in probe[1:]])
        np.testing.assert_allclose(table[probe].numpy(), expected, atol=1e-5)
    # entities: one row per id of the key field, from that key's raw attribute values in the splits
    raw = pd.read_parquet(prepared_synthetic / "train", columns=["raw__user_id", "raw__user_group"])
    users = fmap.field("user_id")
    assert tables.entities["user"].shape == (users.vocab_size, 64)
    key = users.vocab[5]
    group = raw.loc[raw["raw__user_id"] == key, "raw__user_group"].iloc[0]
    text = sample_text({"user_group": group}, [specs["user_group"]])
    np.testing.assert_allclose(tables.entities["user"][users.index[key]].numpy(), encoder.encode([text])[0],
                               atol=1e-5)
    assert tables.entities["item"].shape[0] == fmap.field("item_id").vocab_size
    assert tables.meta["dim"] == 64 and tables.meta["encoder_key"] == encoder.key


def test_tables_skip_when_up_to_date_and_force_hits_cache(tables_dir, prepared_synthetic, llama_cfg):
    out, root = tables_dir
    cfg = load_dataset_config("synthetic")
    before = (out / "semantics.json").stat().st_mtime_ns
    assert build_semantic_tables(prepared_synthetic, cfg, llama_cfg, out, cache_root=root / "cache",
                                 progress=False) == out
    assert (out / "semantics.json").stat().st_mtime_ns == before
    build_semantic_tables(prepared_synthetic, cfg, llama_cfg, out, force=True, cache_root=root / "cache",
                          progress=False)
    meta = json.loads((out / "semantics.json").read_text())
    assert meta["job"]["encoded"] == 0 and meta["cache_hits"] == meta["job"]["unique"] > 0


def test_tables_need_a_prepared_dataset(llama_cfg, tmp_path):
    with pytest.raises(FileNotFoundError, match="llmctr data prepare"):
        build_semantic_tables(tmp_path, load_dataset_config("synthetic"), llama_cfg, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="llmctr encode"):
        SemanticTables.load(tmp_path)


def test_encode_cli(ray_local, prepared_synthetic, tiny_llama, tmp_path, capsys, monkeypatch):
    from llmctr.cli import main

    monkeypatch.setenv("LLMCTR_ARTIFACTS", str(tmp_path))
    assert main(["encode", "synthetic", "--data", str(prepared_synthetic), "--model", tiny_llama,
                 "--num-actors", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dim"] == 64 and report["tables"].startswith(str(tmp_path / "semantics" / "synthetic"))
    assert SemanticTables.load(report["tables"]).meta["job"]["encoded"] > 0
    assert VectorCache(tmp_path / "cache" / "embeddings", report["encoder_key"]).shards()  # under --artifacts


def test_crash_mid_job_keeps_finished_blocks_and_rerun_encodes_only_the_rest(llama_cfg, tmp_path, monkeypatch):
    calls = []
    real_encode, real_write = HFEncoder.encode, VectorCache.write

    def counting_encode(self, texts):
        calls.append(len(texts))
        return real_encode(self, texts)

    def crashing_write(self, hashes, vectors):
        if len(self.shards()) == 2:
            raise KeyboardInterrupt("interrupted")
        return real_write(self, hashes, vectors)

    monkeypatch.setattr(HFEncoder, "encode", counting_encode)
    monkeypatch.setattr(VectorCache, "write", crashing_write)
    with pytest.raises(KeyboardInterrupt):
        encode_texts(TEXTS, llama_cfg, cache_root=tmp_path, use_ray=False, block_size=50, progress=False)
    monkeypatch.setattr(VectorCache, "write", real_write)
    calls.clear()
    resumed = encode_texts(TEXTS, llama_cfg, cache_root=tmp_path, use_ray=False, block_size=50, progress=False)
    assert resumed.cache_hits == 100 and resumed.encoded == 51 and sum(calls) == 51
    calls.clear()
    again = encode_texts(TEXTS, llama_cfg, cache_root=tmp_path, use_ray=False, progress=False)
    assert again.encoded == 0 and calls == []
    np.testing.assert_allclose(again.vectors, real_encode(HFEncoder(llama_cfg), TEXTS), atol=1e-5)
