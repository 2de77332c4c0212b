"""Cold-start texts (history.semantic.cold_texts): a candidate unseen in training reads the vector of its own
record's text instead of the "unknown" row, in the layer, offline (the splits' text rows) and served (the scorer
encodes the record's text once, caches it and counts it); a record without its describing fields keeps "unknown"."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from test_semantic_history import B, FIELDS, batch, model, table

from llmctr.data.feature_map import OOV_ID
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


def test_record_texts_render_as_the_entity_table_and_none_without_fields():
    fields = [TITLE, GENRES]
    records = [{"title": "Toy Story (1995)", "genres": "Animation"}, {"title": None, "genres": float("nan")}, {},
               {"title": "Heat (1995)"}]
    texts = record_texts(records, fields)
    assert texts[0] == sample_text(records[0], fields) == (
        "The movie's title and release year is Toy Story (1995). The movie's genres are Animation.")
    assert texts[1] is None and texts[2] is None
    assert texts[3] == sample_text({"title": "Heat (1995)"}, fields)  # a missing field reads "unknown"
