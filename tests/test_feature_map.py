import numpy as np
import pandas as pd

from llmctr.data.feature_map import OOV_ID, PAD_ID, FeatureMap, FieldMap, normalize_value
from llmctr.data.records import raw_records


def _fmap():
    return FeatureMap(dataset="t", fields=[
        FieldMap(name="city", kind="categorical", description="", source="city", vocab=["paris", "rome"]),
        FieldMap(name="tags", kind="multi_categorical", description="", source="tags", vocab=["a", "b"],
                 max_len=3),
        FieldMap(name="price", kind="numeric", description="", source="price", mean=10.0, std=2.0),
        FieldMap(name="age", kind="numeric", description="", source="age", boundaries=[18.0, 30.0]),
        FieldMap(name="note", kind="text", description="", source="note"),
    ])


def test_normalize_value():
    assert normalize_value(7) == normalize_value(7.0) == normalize_value("7") == "7"
    assert normalize_value(None) == normalize_value(float("nan")) == ""
    assert normalize_value(2.5) == "2.5"


def test_unseen_values_map_to_oov_never_crash():
    enc = _fmap().encode_frame(pd.DataFrame({
        "city": ["rome", "tokyo", None], "tags": ["a|zz", [], "b"], "price": [12.0, None, 8.0],
        "age": [17, 45, None], "note": ["x", "y", "z"]}))
    assert enc["city"].tolist() == [3, OOV_ID, OOV_ID]
    assert enc["tags"].tolist() == [[2, OOV_ID, PAD_ID], [PAD_ID] * 3, [3, PAD_ID, PAD_ID]]
    np.testing.assert_allclose(enc["price"], [1.0, 0.0, -1.0])
    assert enc["age"].tolist() == [2, 4, OOV_ID]
    assert "note" not in enc


def test_save_load_roundtrip(tmp_path):
    fmap = _fmap()
    fmap.save(tmp_path / "fm.json")
    again = FeatureMap.load(tmp_path / "fm.json")
    frame = pd.DataFrame({"city": ["paris"], "tags": ["b|a"], "price": [3.0], "age": [20], "note": [""]})
    for k, v in fmap.encode_frame(frame).items():
        np.testing.assert_array_equal(v, again.encode_frame(frame)[k])
    assert again.field("age").vocab_size == 2 + 3


def test_raw_records_roundtrip():
    fmap = _fmap()
    frame = pd.DataFrame({"raw__city": ["rome"], "raw__tags": ["a|b"], "raw__price": ["12.5"],
                          "raw__age": [""], "raw__note": ["hi"]})
    rec = raw_records(frame, fmap)[0]
    assert rec == {"city": "rome", "tags": "a|b", "price": 12.5, "age": None, "note": "hi"}


def test_serving_encoder_matches_the_pipeline_encoder():
    """encode_records (lists, no pandas: the serving path) gives the ids and values encode_frame gives."""
    frame = pd.DataFrame({
        "city": ["rome", "tokyo", None, 7, "paris"], "tags": ["a|zz", [], "b", ["b", "a"], None],
        "price": [12.0, None, "8", "oops", 11], "age": [17, 45, None, "30", 30.0], "note": ["x"] * 5})
    expected = _fmap().encode_frame(frame)
    got = _fmap().encode_records(frame.to_dict("records"))
    assert set(got) == set(expected)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
        assert got[name].dtype == expected[name].dtype, name


def test_remembered_ids_equal_the_normalised_lookup():
    """id_of remembers raw values' ids (the serving path's fast path); equal raw values share the normalised id,
    and a second pass over the same values (all remembered) answers the same as the first."""
    field = FieldMap(name="id", kind="categorical", description="", source="id", vocab=["7", "1", "x"])
    values = [7, 7.0, "7", np.int64(7), True, 1, " x", None, float("nan"), "zz", 2.5, ["unhashable"]]
    expected = [field.index.get(normalize_value(v), OOV_ID) for v in values]
    assert [field.id_of(v) for v in values] == expected
    assert [field.id_of(v) for v in values] == expected
    assert expected[:6] == [2, 2, 2, 2, 3, 3] and expected[6] == 4
    assert field.encode_values(values[:4]).tolist() == [2] * 4


def test_parquet_records_stream_the_split_as_raw_records_does(prepared_synthetic):
    from llmctr.data.records import parquet_records

    fmap = FeatureMap.load(prepared_synthetic / "feature_map.json")
    frame = pd.read_parquet(prepared_synthetic / "valid")
    batches, total = parquet_records(prepared_synthetic / "valid", fmap, batch_rows=500)
    streamed = [r for batch in batches for r in batch]
    assert total == len(frame) == len(streamed)
    assert streamed == raw_records(frame, fmap)
