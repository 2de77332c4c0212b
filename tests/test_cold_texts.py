"""Cold-start texts (history.semantic.cold_texts): a candidate unseen in training reads the vector of its own
record's text instead of the "unknown" row, in the layer, offline (the splits' text rows) and served (the scorer
encodes the record's text once, caches it and counts it); a record without its describing fields keeps "unknown"."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from test_semantic_history import B, batch, model, table

from llmctr.data.feature_map import FIRST_ID, OOV_ID
from llmctr.data.records import raw_records
from llmctr.data.schema import FieldSpec
from llmctr.models.layers.semantic_history import text_row_key, text_vector_key
from llmctr.semantics.entity_texts import record_texts
from llmctr.semantics.text import sample_text

GENRES = FieldSpec(name="genres", kind="categorical", description="the movie's genres")
TITLE = FieldSpec(name="title", kind="categorical", description="the movie's title and release year")


def semantic_fields(m, x: dict[str, torch.Tensor]) -> torch.Tensor:
    ids = x["hist"]
    return m.semantic_history(x["item"], ids, ids != 0, x["hist_label"], m.semantic_history.text_vectors(x, "item"))


@pytest.mark.parametrize("form", ["vector", "row"])
def test_an_oov_candidate_with_a_text_reads_its_vector_and_one_without_reads_unknown(form):
    m = model(cold_texts=True).eval()
    x = batch()
    known = x["item"].clone()
    x["item"] = torch.where(torch.arange(B) < 8, OOV_ID, x["item"])  # rows 0-7 unseen, 8.. known
    vectors = torch.zeros(B, table().shape[1])
    vectors[:4] = table()[known[:4]]  # rows 0-3 carry the text of the item they replaced; 4-7 carry none
    vectors[8:] = torch.randn(B - 8, vectors.shape[1])  # a known candidate ignores any text
    if form == "vector":
        x[text_vector_key("item")] = vectors
    else:
        m.semantic_history.set_texts(torch.cat([torch.zeros(1, vectors.shape[1]), vectors]))
        x[text_row_key("item")] = torch.where(vectors.abs().sum(-1) > 0, torch.arange(1, B + 1), 0)
    with torch.no_grad():
        got = semantic_fields(m, x)
        as_known = semantic_fields(m, dict(batch(), item=known))
        plain = semantic_fields(m, {k: v for k, v in x.items() if "__text" not in k})
    torch.testing.assert_close(got[:4], as_known[:4], rtol=1e-5, atol=1e-6)  # the text's vector is the item's row
    torch.testing.assert_close(got[4:], plain[4:], rtol=0, atol=0)  # no text: "unknown"; known ids: their rows
    assert not torch.allclose(got[:4], plain[:4])
    m(x).logit.sum()  # the whole model reads the column too


def test_without_cold_texts_the_layer_ignores_the_columns_and_bad_tables_are_refused():
    m = model().eval()
    x = dict(batch(), item=torch.full((B,), OOV_ID))
    with torch.no_grad():
        torch.testing.assert_close(m(dict(x, **{text_vector_key("item"): torch.randn(B, 10)})).logit, m(x).logit)
    with pytest.raises(ValueError, match="zero row 0"):
        m.semantic_history.set_texts(torch.ones(3, 10))
    with pytest.raises(ValueError, match=r"\[rows, 10\]"):
        m.semantic_history.set_texts(torch.zeros(3, 7))
    cold = model(cold_texts=True).eval()
    with pytest.raises(ValueError, match="set_texts"):  # text rows without their table
        cold(dict(x, **{text_row_key("item"): torch.full((B,), 3)}))


def test_record_texts_render_as_the_entity_table_and_none_without_fields():
    fields = [TITLE, GENRES]
    records = [{"title": "Toy Story (1995)", "genres": "Animation"}, {"title": None, "genres": float("nan")}, {},
               {"title": "Heat (1995)"}]
    texts = record_texts(records, fields)
    assert texts[0] == sample_text(records[0], fields) == (
        "The movie's title and release year is Toy Story (1995). The movie's genres are Animation.")
    assert texts[1] is None and texts[2] is None
    assert texts[3] == sample_text({"title": "Heat (1995)"}, fields)  # a missing field reads "unknown"


@pytest.fixture(scope="module")
def synthetic_tables(prepared_synthetic, tiny_bert, tmp_path_factory):
    """The synthetic split's semantic tables by a tiny random BERT (its item entity: the product's category)."""
    from llmctr.data import FeatureMap, load_dataset_config
    from llmctr.semantics.encoders import EncoderConfig
    from llmctr.semantics.tables import SemanticTables, build_semantic_tables
    from llmctr.train import load_experiment
    from llmctr.train.ctr.cold_texts import entity_texts_of

    root = tmp_path_factory.mktemp("cold_texts")
    folder = build_semantic_tables(prepared_synthetic, load_dataset_config("synthetic"),
                                   EncoderConfig(model=tiny_bert, max_length=32), root / "tables",
                                   cache_root=root / "cache", use_ray=False, progress=False)
    tables = SemanticTables.load(folder)
    exp = load_experiment("synthetic_deepfm_semantic_history")
    exp.model.history.semantic.cold_texts = True
    fmap = FeatureMap.load(prepared_synthetic / "feature_map.json")
    frame = pd.read_parquet(prepared_synthetic / "test")
    known = frame["item_id"].to_numpy() >= FIRST_ID
    return SimpleNamespace(tables=tables, cache=root / "cache", exp=exp, fmap=fmap, root=root,
                           spec=entity_texts_of(exp, fmap, tables), frame=frame[known].reset_index(drop=True))


def test_offline_an_unseen_item_with_known_fields_gets_the_tables_vector_of_those_fields(synthetic_tables):
    from llmctr.train.ctr.cold_texts import ColdTexts

    t = synthetic_tables
    assert (t.spec.entity, t.spec.key, t.spec.names) == ("item", "item_id", ["item_category"])
    frame = t.frame.head(40)
    ids = frame["item_id"].to_numpy().copy()
    raw = frame[["raw__item_category"]].copy()
    ids[:30] = OOV_ID  # rows 0-29: the same records as if their item were new
    raw.iloc[25:30, 0] = None  # 25-29: new, and nothing describes them; 30-39 known
    cold = ColdTexts.build(t.spec, {"test": raw}, {"test": ids}, t.cache)
    rows = cold.rows["test"]
    assert (rows[:25] > 0).all() and (rows[25:] == 0).all()
    # through the embedding cache: exactly the tables' vectors of the items whose category they carry
    expected = t.tables.entities["item"][frame["item_id"].to_numpy()[:25]]
    torch.testing.assert_close(cold.table[rows[:25]], expected, rtol=0, atol=0)


def test_served_scorer_encodes_an_unseen_items_text_once_then_counts_cache_hits(synthetic_tables):
    from llmctr.models.artifact import build_model, save_artifact
    from llmctr.serve.metrics import GraphMetrics
    from llmctr.serve.scorer import Scorer
    from llmctr.serve.student import score_requests

    t = synthetic_tables
    torch.manual_seed(0)
    config = t.exp.model
    model = build_model(t.fmap, config, semantics=t.tables).eval()
    with torch.no_grad():  # a trained model's projection: the text must matter to the score
        model.semantic_history.project.weight.normal_()
    folder = t.root / "served"
    folder.mkdir()
    path = save_artifact(t.root / "models", "cold", model.state_dict(), config, t.fmap, {},
                         extra_files={"entity_texts.json": t.spec.save(folder)})
    scorer = Scorer.load(path)
    plain = Scorer(scorer.model, scorer.fmap, scorer.meta)  # the same model without cold-start texts
    history = {"history": [int(v) for v in t.frame["raw__item_id"][4:10]], "history_label": [1, 0, 1, 1, 0, 1]}
    known = [dict(r, **history) for r in raw_records(t.frame.head(4), t.fmap)]  # the layer reads a history
    unseen = [dict(r, item_id=10**9 + i) for i, r in enumerate(known)]  # new ids, the same categories
    unseen[3]["item_category"] = None  # a new item nothing describes

    encoded = scorer.encode(unseen)
    vectors = encoded["item_id__text_vector"]
    expected = t.tables.entities["item"][t.frame["item_id"].to_numpy()[:3]]
    torch.testing.assert_close(torch.from_numpy(vectors[:3]), expected, rtol=1e-4, atol=1e-5)
    categories = [r["item_category"] for r in unseen[:3]]  # a text repeated in one call is encoded once
    status = [1 if c not in categories[:i] else 2 for i, c in enumerate(categories)] + [0]
    assert not vectors[3].any() and list(encoded["__text_status__"]) == status
    with_texts, without = scorer.score(unseen), plain.score(unseen)
    assert not np.allclose(with_texts[:3], without[:3]) and with_texts[3] == pytest.approx(without[3], abs=1e-7)
    np.testing.assert_allclose(scorer.score(known), plain.score(known), rtol=0, atol=0)  # a lookup, no text

    metrics = GraphMetrics(replica="test")
    fresh = Scorer.load(path)
    for _ in range(2):  # the first request encodes each distinct text once, the second finds them all cached
        (answer,) = score_requests(fresh, [unseen[:1] * 3], [()])
        assert "error" not in answer, answer["error"]
        metrics.count_texts(answer["texts"])
    page = metrics.render().decode()
    assert "llmctr_entity_text_encodes_total 1.0" in page and "llmctr_entity_text_cache_hits_total 5.0" in page


@pytest.mark.slow
def test_ray_train_job_reads_the_texts_and_its_artifact_serves_them(ray_local, prepared_synthetic, synthetic_tables,
                                                                     tiny_bert, tmp_path):
    """The platform's job: the driver builds the text rows, the worker evaluates with them, the artifact carries what
    the served scorer needs to encode an unseen item's text (no dataset config, no training code)."""
    from llmctr.semantics.encoders import EncoderConfig
    from llmctr.serve.scorer import Scorer
    from llmctr.train import fit

    exp = copy.deepcopy(synthetic_tables.exp)
    exp.semantics.encoder = EncoderConfig(model=tiny_bert, max_length=32)
    exp.train.epochs, exp.train.batch_size = 1, 512
    result = fit(exp, prepared_synthetic, artifacts=tmp_path)
    rows = result.metrics["cold_text_rows"]
    frame = pd.read_parquet(prepared_synthetic / "test", columns=["item_id"])
    assert rows["test"] == int((frame["item_id"] == OOV_ID).sum()) and rows["train"] == 0
    scorer = Scorer.load(result.artifact)
    assert scorer.texts is not None and scorer.texts.spec.names == ["item_category"]
    record = raw_records(synthetic_tables.frame.head(1), synthetic_tables.fmap)[0]
    encoded = scorer.encode([dict(record, item_id=10**9)])
    assert list(encoded["__text_status__"]) == [1] and encoded["item_id__text_vector"].any()
