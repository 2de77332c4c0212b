"""The retriever end to end: one Ray Train job (2 workers, DDP) on the synthetic split → artifact → Retriever and
every method of its API (incl. unknown ids), the CLI; VectorIndex kinds and backends; config errors."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file

from llmctr.cli import main
from llmctr.config import ConfigError, parse_config
from llmctr.data import FeatureMap
from llmctr.models.retriever import Retriever
from llmctr.models.vector_index import VectorIndex, l2_normalize
from llmctr.train.retriever import RetrieverConfig, load_retriever_config, resolve_fields

KS = [10, 20, 50]


@pytest.fixture(scope="module")
def retriever(trained_retriever):
    return Retriever.load(Path(trained_retriever.artifact).parent)  # the parent: LATEST names the version


@pytest.fixture(scope="module")
def train_rows(prepared_synthetic):
    return pd.read_parquet(prepared_synthetic / "train", columns=["user_id", "item_id", "label"])


def test_artifact_files_and_metrics(trained_retriever, prepared_synthetic, train_rows):
    folder = Path(trained_retriever.artifact)
    for name in ("vectors.safetensors", "history.safetensors", "retriever.json", "feature_map.json",
                 "training_curve.png"):
        assert (folder / name).is_file(), name
    assert (folder.parent / "LATEST").read_text().strip() == folder.name
    fmap = FeatureMap.load(prepared_synthetic / "feature_map.json")
    vectors = load_file(folder / "vectors.safetensors")
    assert vectors["user"].shape == (fmap.field("user_id").vocab_size, 32)
    assert vectors["item"].shape == (fmap.field("item_id").vocab_size, 32)
    history = load_file(folder / "history.safetensors")  # every train row, liked and disliked, per user
    counts = np.bincount(train_rows["user_id"], minlength=len(history["indptr"]) - 1)
    assert np.diff(history["indptr"]).tolist() == counts.tolist()
    assert set(np.unique(history["labels"])) == {0.0, 1.0}
    meta = json.loads((folder / "retriever.json").read_text())
    assert (meta["user_field"], meta["item_field"]) == ("user_id", "item_id")  # defaults: the YAML's entities
    m = meta["metrics"]
    for k in KS:
        for key in (f"test_recall@{k}", f"test_ndcg@{k}", f"test_popularity_recall@{k}", f"valid_recall@{k}"):
            assert 0.0 <= m[key] <= 1.0, key
    assert m["test_recall@50"] >= m["test_recall@10"]
    assert m["num_workers"] == 2 and m["test_users"] > 50 and m["train_edges"] > 1000
    assert 1 <= m["best_epoch"] <= m["epochs_run"] == len(meta["history"]) == 3
    assert meta["version"] == folder.name


def test_ids_round_trip(retriever):
    ids = retriever.encode_ids("user_id", [5, "5", 5.0, 10**9])
    assert ids[0] == ids[1] == ids[2] >= 2 and ids[3] == 1
    assert retriever.raw_values("user_id", ids) == ["5", "5", "5", None]
    assert retriever.raw_values("item_id", np.array([0, 1, 10**9, -3])) == [None] * 4
    with pytest.raises(ValueError, match="unknown field 'nope'"):
        retriever.encode_ids("nope", [1])


def _known(retriever, n=6):
    """Users and items with a trained vector: those the indexes hold."""
    return np.sort(retriever.user_index.ids)[:n], np.sort(retriever.item_index.ids)[:n]


def test_items_for_users_is_the_exact_top_k_of_unseen_items(retriever):
    users, _ = _known(retriever)
    ids, scores = retriever.items_for_users(users, k=10)
    assert ids.shape == scores.shape == (len(users), 10)
    for row, user in enumerate(users):
        seen = retriever.history.items[retriever.history.indptr[user]:retriever.history.indptr[user + 1]]
        candidates = np.setdiff1d(retriever.item_index.ids, seen)
        brute = retriever.item_vectors[candidates] @ retriever.user_vectors[user]
        np.testing.assert_allclose(scores[row], np.sort(brute)[::-1][:10], rtol=1e-5)
        assert not set(ids[row]) & set(seen)
    with_seen, _ = retriever.items_for_users(users, k=10, exclude_seen=False)
    assert any(set(a) != set(b) for a, b in zip(ids, with_seen))


def test_unknown_users_get_the_average_user_and_never_raise(retriever):
    odd = np.array([0, 1, 10**9, -5])
    ids, scores = retriever.items_for_users(odd, k=5)
    assert (ids >= 2).all() and np.isfinite(scores).all()
    assert (ids == ids[0]).all()  # all served as the same average user
    assert (retriever.similar_users(odd, 5)[0] == -1).all()
    assert (retriever.similar_items(odd, 5)[0] == -1).all()


def test_similar_items_and_users_exclude_the_query(retriever):
    users, items = _known(retriever)
    for ids_, method, vectors in ((items, retriever.similar_items, retriever.item_vectors),
                                  (users, retriever.similar_users, retriever.user_vectors)):
        found, scores = method(ids_, 5)
        assert not (found == ids_[:, None]).any() and (found >= 2).all()
        assert (np.diff(scores, axis=1) <= 1e-6).all()
        unit = l2_normalize(vectors)
        np.testing.assert_allclose(scores[:, 0], (unit[found[:, 0]] * unit[ids_]).sum(1), rtol=1e-5)
    k_too_big = len(retriever.item_index) + 5
    found, scores = retriever.similar_items(items[:1], k_too_big)
    assert (found[0, -6:] == -1).all() and np.isneginf(scores[0, -6:]).all()


def test_history_neighbours_are_the_users_interactions_most_similar_first(retriever):
    users, items = _known(retriever)
    candidates = items[::-1]
    rows = retriever.history_neighbours(users, candidates, k=4)
    unit = l2_normalize(retriever.item_vectors)
    for user, candidate, row in zip(users, candidates, rows):
        start, stop = retriever.history.indptr[user], retriever.history.indptr[user + 1]
        past = set(zip(retriever.history.items[start:stop].tolist(), retriever.history.labels[start:stop].tolist()))
        assert 0 < len(row) <= 4
        sims = [s for _, _, s in row]
        assert sims == sorted(sims, reverse=True)
        for item, label, sim in row:
            assert (item, label) in past  # a repeated item may appear once per interaction
            if retriever.known_items([item])[0]:
                assert sim == pytest.approx(float(unit[item] @ unit[candidate]), rel=1e-5)


def test_history_neighbours_for_unknown_users_and_candidates(retriever):
    users, items = _known(retriever)
    cold = retriever.history_neighbours(np.array([1, 10**9]), items[:2], k=3)
    similar, scores = retriever.similar_items(items[:2], 3)
    for row, ids, sc in zip(cold, similar, scores):
        assert [(i, lab) for i, lab, _ in row] == [(int(i), -1) for i in ids]
        np.testing.assert_allclose([s for _, _, s in row], sc, rtol=1e-6)
    user = users[0]
    start, stop = retriever.history.indptr[user], retriever.history.indptr[user + 1]
    recent = retriever.history.items[start:stop][::-1][:3].tolist()  # unknown candidate: most recent first
    for candidate in (1, 10**9, -3):  # OOV, outside the table
        row = retriever.history_neighbours(np.array([user]), np.array([candidate]), k=3)[0]
        assert [i for i, _, _ in row] == recent and all(s == 0.0 for _, _, s in row)
    assert retriever.history_neighbours(np.array([1]), np.array([1]), k=3) == [[]]


def test_query_cli_prints_json(trained_retriever, capsys):
    assert main(["retriever", "query", str(Path(trained_retriever.artifact).parent), "--user", "5", "--item", "7",
                 "-k", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["user"]["id"] >= 2 and len(out["items_for_user"]) == 3
    assert {"similar_items", "similar_users", "history_neighbours"} <= set(out)
    assert main(["retriever", "train", "no_such_retriever"]) == 2
    assert "unknown retriever" in capsys.readouterr().err


@pytest.fixture(scope="module")
def random_vectors():
    rng = np.random.default_rng(0)
    return rng.normal(size=(5000, 32)).astype(np.float32), rng.normal(size=(200, 32)).astype(np.float32)


def _recall(ids, reference):
    return np.mean([len(set(a) & set(b)) / reference.shape[1] for a, b in zip(ids, reference)])


@pytest.mark.parametrize("kind,options,floor", [("hnsw", {}, 0.95), ("ivf", {"nprobe": 64}, 0.9)])
def test_approximate_indexes_recall_the_exact_neighbours(random_vectors, kind, options, floor):
    vectors, queries = random_vectors
    exact, _ = VectorIndex(vectors, kind="flat").search(queries, 10)
    found, _ = VectorIndex(vectors, kind=kind, **options).search(queries, 10)
    assert _recall(found, exact) >= floor


@pytest.mark.parametrize("normalize", [True, False])
def test_torch_backend_equals_faiss_flat(random_vectors, normalize):
    vectors, queries = random_vectors
    ids = np.arange(len(vectors)) + 2
    faiss_ids, faiss_scores = VectorIndex(vectors, ids, normalize=normalize).search(queries, 10)
    torch_ids, torch_scores = VectorIndex(vectors, ids, normalize=normalize, backend="torch").search(queries, 10)
    np.testing.assert_array_equal(torch_ids, faiss_ids)
    np.testing.assert_allclose(torch_scores, faiss_scores, rtol=1e-4, atol=1e-5)


def test_index_kinds_and_padding():
    vectors = np.eye(3, 4, dtype=np.float32)
    assert VectorIndex(vectors).kind == "flat" and VectorIndex(vectors, exact_below=2).kind == "hnsw"
    ids, scores = VectorIndex(vectors, ids=np.array([7, 8, 9])).search(vectors[:1] * 5, 5)
    assert ids[0, 0] == 7 and set(ids[0, 1:3]) == {8, 9} and (ids[0, 3:] == -1).all()  # 8 and 9 tie at 0
    assert scores[0, 0] == pytest.approx(1.0) and np.isneginf(scores[0, 3:]).all()
    with pytest.raises(ValueError, match="torch backend searches exactly"):
        VectorIndex(vectors, kind="hnsw", backend="torch")
    with pytest.raises(ValueError, match="index kind must be one of"):
        VectorIndex(vectors, kind="annoy")


@pytest.mark.parametrize("change,key", [({"trian": {}}, "trian"), ({"train": {"epochs": "many"}}, "train.epochs"),
                                        ({"select_k": 5}, "select_k"), ({"index_kind": "lsh"}, "index_kind")])
def test_config_errors_name_the_key(change, key):
    with pytest.raises(ConfigError, match=key):
        parse_config(RetrieverConfig, {"name": "r", "dataset": "synthetic", **change}, "r.yaml")


def test_field_errors_name_the_key(prepared_synthetic):
    fmap = FeatureMap.load(prepared_synthetic / "feature_map.json")
    assert resolve_fields(load_retriever_config("synthetic_lightgcn"), fmap) == ("user_id", "item_id")
    config = parse_config(RetrieverConfig, {"name": "r", "dataset": "synthetic", "item_field": "price"})
    with pytest.raises(ConfigError, match="item_field 'price' is not a categorical field"):
        resolve_fields(config, fmap)
