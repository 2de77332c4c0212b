"""A history model served over HTTP: raw rows that carry their history as a client would send it score exactly as
the trainer scores the prepared test split; records without a history get their user's from the history store,
which ``POST /v1/events`` feeds (and which survives a replica restart)."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pandas as pd
import pytest
import torch

from llmctr.data import FeatureMap, Manifest
from llmctr.data.feature_map import normalize_value
from llmctr.data.records import raw_records
from llmctr.models.artifact import load_artifact
from llmctr.models.ctr_model import sigmoid
from llmctr.train.feed import to_tensors

PORT = 8137
URL = f"http://127.0.0.1:{PORT}"
FIELDS = ["user_id", "item_id", "user_group", "item_category", "device", "price", "hour", "tags"]
MAX_LEN = 20  # configs/datasets/synthetic.yaml


@pytest.fixture(scope="module")
def served(ray_local, tmp_path_factory):
    """A clean synthetic log (no bad rows: every raw line is a sample), prepared, a history DeepFM trained on it
    with Ray Train (its history read by item id and through the items' LLM vectors: the served model carries the
    vector table in its weights), and the graph (student + history store) deployed."""
    from ray import serve

    from llmctr.data import load_dataset_config
    from llmctr.data.pipeline import prepare_dataset
    from llmctr.data.synthetic import write_synthetic
    from llmctr.serve.client import wait_healthy
    from llmctr.serve.deploy import deploy
    from llmctr.train import fit, load_experiment

    raw = tmp_path_factory.mktemp("history_raw")
    write_synthetic(raw, n_rows=5000, seed=3)
    prepared = tmp_path_factory.mktemp("history_prepared") / "synthetic"
    prepare_dataset(load_dataset_config("synthetic"), raw, prepared)
    exp = load_experiment("synthetic_deepfm_semantic_history")
    exp.train.epochs, exp.train.batch_size = 2, 256
    result = fit(exp, prepared, artifacts=tmp_path_factory.mktemp("history_artifacts"))
    events_log = tmp_path_factory.mktemp("events") / "events.jsonl"
    deploy(result.artifact, port=PORT, history={"events_log": str(events_log)})
    wait_healthy(URL, timeout=180)
    yield {"raw": raw, "prepared": prepared, "artifact": result.artifact, "events_log": events_log}
    serve.shutdown()


def _score(records: list[dict]) -> np.ndarray:
    out = []
    for start in range(0, len(records), 100):
        resp = httpx.post(f"{URL}/v1/score", json={"records": records[start:start + 100]}, timeout=60)
        assert resp.status_code == 200, resp.text
        out += resp.json()["probabilities"]
    return np.asarray(out)


def client_rows(raw_folder, n_test: int) -> tuple[pd.DataFrame, list[dict]]:
    """The test rows straight from the raw CSV (the split's order, its last ``n_test`` rows), each with the history
    a client keeps: the same user's earlier rows (strictly earlier timestamps), most recent first."""
    log = pd.read_csv(raw_folder / "clicks.csv")
    log = log.sort_values(["timestamp", "user_id", "item_id"], kind="stable", ignore_index=True)
    test = log.tail(n_test)
    by_user = {u: g.sort_values(["timestamp", "item_id", "click"], kind="stable") for u, g in log.groupby("user_id")}
    records = []
    for row in test.itertuples(index=False):
        earlier = by_user[row.user_id]
        earlier = earlier[earlier.timestamp < row.timestamp].tail(MAX_LEN).iloc[::-1]
        record = {f: getattr(row, f) for f in FIELDS}
        record = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in record.items()}
        record["price"] = None if pd.isna(record["price"]) else record["price"]
        record["history"] = earlier.item_id.astype(int).tolist()
        record["history_label"] = earlier.click.astype(int).tolist()
        records.append(record)
    return test, records


def _key(record: dict) -> tuple:
    return (*(normalize_value(record[f]) for f in FIELDS), tuple(normalize_value(v) for v in record["history"]),
            tuple(int(x) for x in record["history_label"]))


@torch.inference_mode()
def offline_predictions(artifact, prepared) -> dict[tuple, float]:
    """What the trainer computes: the model on the prepared (encoded) test split, by the row's raw values."""
    model, fmap, _ = load_artifact(artifact)
    frame = pd.read_parquet(prepared / "test")
    batch = to_tensors({c: frame[c].to_numpy() for c in frame.columns}, fmap.input_columns)
    probs = sigmoid(model(batch).logit.numpy())
    return {_key(r): float(p) for r, p in zip(raw_records(frame, FeatureMap.load(prepared / "feature_map.json")),
                                              probs)}


def test_raw_rows_with_their_history_score_over_http_as_offline(served):
    manifest = Manifest.load(served["prepared"] / "manifest.json")
    _, records = client_rows(served["raw"], manifest.rows["test"])
    offline = offline_predictions(served["artifact"], served["prepared"])
    assert len(records) == manifest.rows["test"] and all(_key(r) in offline for r in records)
    assert sum(len(r["history"]) > 0 for r in records) > 0.5 * len(records), "most test rows have a history"
    np.testing.assert_allclose(_score(records), [offline[_key(r)] for r in records], atol=1e-6)
    # the served model read the items' LLM vectors from its own weights (rebuilt without the semantic tables)
    model, fmap, _ = load_artifact(served["artifact"])
    table = model.semantic_history.table
    assert table.shape == (fmap.field("item_id").vocab_size, model.config.history.semantic.dim)
    assert table.abs().sum() > 0


def test_openapi_documents_history_and_events(served):
    spec = httpx.get(f"{URL}/openapi.json").json()
    assert "/v1/events" in spec["paths"]
    assert "history_label" in spec["components"]["schemas"]["ScoreRequest"]["properties"]["records"]["description"]


def test_events_change_the_next_score_and_survive_a_store_restart(served):
    import ray

    template = {f: v for f, v in client_rows(served["raw"], 1)[1][0].items() if f in FIELDS}
    record = dict(template, user_id=10**9)  # a user nobody has seen: an empty history, not an error
    empty = _score([record])[0]
    assert empty == pytest.approx(_score([dict(record, history=[], history_label=[])])[0], abs=1e-9)
    events = [{"user": 10**9, "item": int(i), "label": int(i % 2)} for i in (3, 4, 5, 6, 7)]
    resp = httpx.post(f"{URL}/v1/events", json={"events": events})
    assert resp.status_code == 200 and resp.json() == {"appended": 5}
    after = _score([record])[0]
    carried = dict(record, history=[7, 6, 5, 4, 3], history_label=[1, 0, 1, 0, 1])
    assert after != pytest.approx(empty, abs=1e-6)
    assert after == pytest.approx(_score([carried])[0], abs=1e-9), "the store fills what the events said"
    assert httpx.post(f"{URL}/v1/events", json={"events": [{"user": 1, "item": 2, "label": 7}]}).status_code == 422
    victim = next(a for a in ray.util.list_named_actors(all_namespaces=True)
                  if a["namespace"] == "serve" and "HistoryStoreDeployment" in a["name"])
    ray.kill(ray.get_actor(victim["name"], namespace="serve"), no_restart=True)
    deadline, again = time.time() + 90, None
    while time.time() < deadline:
        try:
            again = _score([record])[0]
            break
        except AssertionError:
            time.sleep(1)
    assert again == pytest.approx(after, abs=1e-9), "a restarted store replays its event log"


@pytest.mark.slow  # the default suite checks events change the next score (test_events_change_the_next_score...)
def test_store_fed_in_time_order_fills_the_history_the_record_carried(served, tmp_path):
    """From an empty store, each chosen user's interactions go in through /v1/events in time order; before each of
    their test rows, a record without a history scores as the same record carrying its history."""
    from llmctr.serve.deploy import deploy

    manifest = Manifest.load(served["prepared"] / "manifest.json")
    test, records = client_rows(served["raw"], manifest.rows["test"])
    users = test.user_id.value_counts().index[:3].tolist()
    deploy(served["artifact"], port=PORT, history={"events_log": str(tmp_path / "log.jsonl"), "start_empty": True})
    try:
        log = pd.read_csv(served["raw"] / "clicks.csv").sort_values(["timestamp", "item_id", "click"], kind="stable")
        checked = 0
        for user in users:
            mine = log[log.user_id == user]
            sent = 0
            for row, record in zip(test.itertuples(index=False), records):
                if row.user_id != user:
                    continue
                earlier = mine[mine.timestamp < row.timestamp]
                new = earlier.iloc[sent:]
                if len(new):
                    events = [{"user": int(user), "item": int(e.item_id), "label": int(e.click)}
                              for e in new.itertuples(index=False)]
                    assert httpx.post(f"{URL}/v1/events", json={"events": events}).status_code == 200
                    sent = len(earlier)
                bare = {k: v for k, v in record.items() if k not in ("history", "history_label")}
                np.testing.assert_allclose(_score([bare]), _score([record]), atol=1e-9)
                checked += 1
        assert checked >= 3
    finally:
        deploy(served["artifact"], port=PORT, history={"events_log": str(served["events_log"])})
