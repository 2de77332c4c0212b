"""The ``sequence`` field kind (behaviour history): strictly-earlier rows only (timestamp ties excluded), most recent
first, truncated to max_len, labels parallel; computed on Ray Data over the whole log; ids through the ``of`` field's
vocabulary (OOV 1, padding 0); raw records round-trip."""

import json

import numpy as np
import pandas as pd
import pytest

from llmctr.config import ConfigError
from llmctr.data import FeatureMap, load_dataset_config
from llmctr.data.feature_map import OOV_ID, PAD_ID, FieldMap, normalize_value
from llmctr.data.history import user_history
from llmctr.data.pipeline import prepare_dataset
from llmctr.data.records import raw_records

MAX_LEN = 4


def test_user_history_excludes_ties_and_later_rows():
    # one user; items are unique per row so each history entry names the row it came from
    times = [5, 3, 3, 1, 5, 7, 3, 9, 9, 2]
    log = pd.DataFrame({"user_id": 1, "item": [100 + i for i in range(len(times))], "ts": times,
                        "label": [1, 0, 1, 1, 0, 1, 0, 1, 1, 0]}).sample(frac=1.0, random_state=3)
    out = user_history(log, name="h", item="item", order_by="ts", max_len=3)
    time_of = dict(zip(log["item"], log["ts"]))
    label_of = dict(zip(log["item"], log["label"]))
    for _, row in out.iterrows():
        hist, labels = list(row["h"]), list(row["h_label"])
        assert all(time_of[i] < row["ts"] for i in hist), (row["ts"], hist)
        hist_times = [time_of[i] for i in hist]
        assert hist_times == sorted(hist_times, reverse=True), "most recent first"
        assert labels == [label_of[i] for i in hist]
        earlier = sorted(((time_of[i], i) for i in time_of if time_of[i] < row["ts"]), reverse=True)
        assert hist == [i for _, i in earlier[:3]], "the last max_len strictly earlier rows"
    first = out[out["ts"] == 1].iloc[0]
    assert list(first["h"]) == [] and list(first["h_label"]) == []
    at9 = out[out["ts"] == 9]
    assert len(at9) == 2 and all(list(h) == [105, 104, 100] for h in at9["h"])  # not its tie partner
    at3 = out[out["ts"] == 3]
    assert all(list(h) == [109, 103] for h in at3["h"])


def test_user_history_without_labels():
    log = pd.DataFrame({"u": 1, "item": ["a", "b"], "ts": [1, 2], "label": [1.0, 0.0]})
    out = user_history(log, name="h", item="item", order_by="ts", max_len=5, with_label=False)
    assert "h_label" not in out and [list(h) for h in out["h"]] == [[], ["a"]]


# -- the pipeline on Ray Data ---------------------------------------------------------------------------------------

YAML = """
name: hist
source:
  path: log.csv
  format: csv
  header: true
  columns:
    - {{name: user_id, type: int, min: 1}}
    - {{name: item_id, type: int, min: 1}}
    - {{name: ts, type: int, min: 0}}
    - {{name: click, type: int, min: 0, max: 1}}
label: {{column: click}}
split: {{kind: {split}, order_by: [ts, user_id, item_id], ratios: [0.6, 0.2, 0.2]}}
group_by: user_id
fields:
  - {{name: user_id, kind: categorical, description: "user"}}
  - {{name: item_id, kind: categorical, description: "item"}}
  - {{name: when, source: ts, kind: numeric, description: "time"}}
  - {{name: history, kind: sequence, of: item_id, max_len: {max_len}, group_by: user_id, order_by: ts,
     description: "earlier items"}}
"""


def _log() -> pd.DataFrame:
    """60 early rows (ts 0..14, many ties) and 40 late rows (ts 20..29, with items 100.. never seen early), so the
    temporal split's train holds exactly the early rows and later rows' histories hold OOV items."""
    rng = np.random.default_rng(7)
    early = pd.DataFrame({"user_id": rng.integers(1, 6, 60), "item_id": rng.integers(1, 20, 60),
                          "ts": rng.integers(0, 15, 60)})
    late = pd.DataFrame({"user_id": rng.integers(1, 6, 40), "item_id": rng.integers(1, 20, 40),
                         "ts": rng.integers(20, 30, 40)})
    late.loc[::3, "item_id"] = 100 + np.arange(len(late.loc[::3]))
    log = pd.concat([early, late], ignore_index=True)
    log["click"] = rng.integers(0, 2, len(log))
    return log.sample(frac=1.0, random_state=1).reset_index(drop=True)


def _expected(log: pd.DataFrame, user: int, ts: int, fmap: FeatureMap) -> tuple[list[int], list[int]]:
    """Brute force: the user's rows strictly before ts, most recent first (ties by item then label, descending)."""
    rows = log[(log.user_id == user) & (log.ts < ts)]
    rows = rows.sort_values(["ts", "item_id", "click"], ascending=False).head(MAX_LEN)
    index = fmap.field("item_id").index
    ids = [index.get(normalize_value(i), OOV_ID) for i in rows.item_id]
    labels = rows.click.tolist()
    pad = MAX_LEN - len(ids)
    return ids + [PAD_ID] * pad, labels + [0] * pad


@pytest.fixture(scope="module", params=["temporal", "random"])
def prepared(request, ray_local, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"hist_{request.param}")
    (folder / "raw").mkdir()
    log = _log()
    log.to_csv(folder / "raw" / "log.csv", index=False)
    (folder / "hist.yaml").write_text(YAML.format(split=request.param, max_len=MAX_LEN))
    cfg = load_dataset_config(folder / "hist.yaml")
    prepare_dataset(cfg, folder / "raw", folder / "out")
    return request.param, log, folder / "out"


def test_pipeline_history_matches_brute_force(prepared):
    split, log, out = prepared
    fmap = FeatureMap.load(out / "feature_map.json")
    hist = fmap.field("history")
    assert hist.kind == "sequence" and hist in fmap.input_fields
    assert (hist.of, hist.max_len, hist.with_label) == ("item_id", MAX_LEN, True)
    assert hist.vocab_size == fmap.field("item_id").vocab_size and hist.vocab is fmap.field("item_id").vocab
    meta = json.loads((out / "feature_map.json").read_text())
    assert meta["vocab_sizes"]["history"] == meta["vocab_sizes"]["item_id"]
    assert next(f for f in meta["fields"] if f["name"] == "history")["vocab"] == []  # stored once, on item_id
    frames = {s: pd.read_parquet(out / s) for s in ("train", "valid", "test")}
    assert sum(map(len, frames.values())) == len(log)
    seen_oov = seen_train_in_later = 0
    first_later_ts = min(frames["valid"]["raw__when"].astype(int).min(), frames["test"]["raw__when"].astype(int).min())
    for name, frame in frames.items():
        for _, row in frame.iterrows():
            user, ts = int(row["raw__user_id"]), int(row["raw__when"])
            ids, labels = _expected(log, user, ts, fmap)
            assert list(row["history"]) == ids, (name, user, ts)
            assert list(row["history_label"]) == labels, (name, user, ts)
            earlier = log[(log.user_id == user) & (log.ts < ts)]
            assert len(row["raw__history"]) == min(len(earlier), MAX_LEN)
            seen_oov += OOV_ID in ids
            if name != "train" and split == "temporal":
                top = earlier.sort_values("ts", ascending=False).head(MAX_LEN)  # what the history holds
                seen_train_in_later += bool((top.ts < first_later_ts).any())
    assert seen_oov, "items never seen in train appear in later histories as OOV"
    if split == "temporal":
        assert seen_train_in_later, "valid/test rows see the earlier train rows"
        assert frames["train"]["raw__when"].astype(int).max() < first_later_ts


def test_prepare_writes_each_users_latest_history_for_the_store(prepared):
    """user_history.json: each user's last max_len rows of the whole log (no cut at a timestamp: it is what a request
    after the end of the data sees), most recent first, raw ids, in the order the rows' histories list ties."""
    from llmctr.data.history_store import USER_HISTORY, HistoryStore

    _, log, out = prepared
    store = HistoryStore.load(out)
    assert (out / USER_HISTORY).is_file() and store.n_users == log.user_id.nunique()
    assert (store.field, store.user_field, store.item_field, store.max_len) == ("history", "user_id", "item_id",
                                                                               MAX_LEN)
    for user, rows in log.groupby("user_id"):
        rows = rows.sort_values(["ts", "item_id", "click"], ascending=False).head(MAX_LEN)
        assert store.history(user) == (rows.item_id.tolist(), rows.click.tolist()), user


def test_pipeline_raw_records_round_trip(prepared):
    _, _, out = prepared
    fmap = FeatureMap.load(out / "feature_map.json")
    frame = pd.concat([pd.read_parquet(out / s) for s in ("train", "valid", "test")], ignore_index=True)
    records = raw_records(frame, fmap)
    assert all(isinstance(r["history"], list) and len(r["history"]) == len(r["history_label"]) for r in records)
    assert any(r["history"] for r in records) and any(not r["history"] for r in records)
    encoded = fmap.encode_records(records)
    np.testing.assert_array_equal(encoded["history"], np.stack(frame["history"].to_numpy()))
    np.testing.assert_array_equal(encoded["history_label"], np.stack(frame["history_label"].to_numpy()))
    np.testing.assert_array_equal(encoded["item_id"], frame["item_id"].to_numpy())


# -- feature map -----------------------------------------------------------------------------------------------------

def _fmap() -> FeatureMap:
    return FeatureMap(dataset="t", fields=[
        FieldMap(name="movie", kind="categorical", description="", source="movie", vocab=["7", "9", "x"]),
        FieldMap(name="hist", kind="sequence", description="", source="hist", of="movie", max_len=3, with_label=True),
    ])


def test_sequence_encoding_frame_and_records_agree():
    fmap = _fmap()
    assert fmap.field("hist").vocab_size == fmap.field("movie").vocab_size == 5
    frame = pd.DataFrame({"movie": [7, "x", None, 9],
                          "hist": [[9, 7.0, "x", 7], [], None, np.array([42, 9])],
                          "hist_label": [[1, 0, 1, 1], [], None, [0.0, 1.0]]})
    enc = fmap.encode_frame(frame)
    assert enc["hist"].tolist() == [[3, 2, 4], [0, 0, 0], [0, 0, 0], [OOV_ID, 3, 0]]
    assert enc["hist_label"].tolist() == [[1, 0, 1], [0, 0, 0], [0, 0, 0], [0, 1, 0]]
    got = fmap.encode_records(frame.to_dict("records"))
    for name in enc:
        np.testing.assert_array_equal(got[name], enc[name], err_msg=name)
        assert got[name].dtype == enc[name].dtype
    missing = fmap.encode_records([{"movie": 7}])  # no history given: empty history, never an error
    assert missing["hist"].tolist() == [[0, 0, 0]] and missing["hist_label"].tolist() == [[0, 0, 0]]


def test_feature_map_save_load_shares_vocab_and_old_files_load(tmp_path):
    fmap = _fmap()
    fmap.save(tmp_path / "fm.json")
    again = FeatureMap.load(tmp_path / "fm.json")
    assert again.field("hist").vocab is again.field("movie").vocab
    assert again.field("hist").of == "movie" and again.field("hist").with_label
    data = json.loads((tmp_path / "fm.json").read_text())
    data["fields"] = [{k: v for k, v in f.items() if k not in ("of", "with_label")}
                      for f in data["fields"] if f["kind"] != "sequence"]
    (tmp_path / "old.json").write_text(json.dumps(data))
    old = FeatureMap.load(tmp_path / "old.json")
    assert old.field("movie").of is None and not old.field("movie").with_label


# -- config validation -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("change, message", [
    ("of: item_id", "of: nothing"),
    ("of: item_id", "of: when"),
    ("group_by: user_id, ", ""),
    ("order_by: ts,", ""),
    ("max_len: 4", "max_len: 0"),
])
def test_sequence_config_errors(tmp_path, change, message):
    text = YAML.format(split="temporal", max_len=MAX_LEN)
    path = tmp_path / "bad.yaml"
    path.write_text(text.replace(change, message))
    expected = {"of: nothing": "names no field", "of: when": "must name a categorical field",
                "max_len: 0": "max_len must be > 0"}.get(message, "needs")
    with pytest.raises(ConfigError, match=expected):
        load_dataset_config(path)
