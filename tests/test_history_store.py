"""The serving history store: users' last interactions, filled into records without their own, bounded per user,
surviving a restart through its event log."""

from __future__ import annotations

import json

from llmctr.data.history_store import USER_HISTORY, HistoryStore

SPEC = {"field": "history", "of": "item_id", "group_by": "user_id", "max_len": 3, "with_label": True}


def _artifact(tmp_path):
    users = {"7": {"items": [30, 20, 10], "labels": [1, 0, 1]}}
    (tmp_path / USER_HISTORY).write_text(json.dumps({"spec": SPEC, "users": users}))
    return tmp_path


def test_fill_gives_records_without_a_history_their_users(tmp_path):
    store = HistoryStore.load(_artifact(tmp_path))
    records = [{"user_id": 7, "item_id": 1}, {"user_id": 99, "item_id": 1},
               {"user_id": 7, "item_id": 1, "history": [5], "history_label": [0]}]
    filled = store.fill(records)
    assert filled[0]["history"] == [30, 20, 10] and filled[0]["history_label"] == [1, 0, 1]
    assert filled[1]["history"] == [] and filled[1]["history_label"] == [], "an unknown user: empty, no error"
    assert filled[2]["history"] == [5], "a record's own history is kept"
    assert "history" not in records[0], "the caller's records are not changed"


def test_events_come_first_and_the_history_stays_bounded(tmp_path):
    store = HistoryStore.load(_artifact(tmp_path))
    assert store.append([{"user": 7, "item": 40, "label": 0}, {"user": "7", "item": 50, "label": 1}]) == 2
    assert store.history(7) == ([50, 40, 30], [1, 0, 1])
    store.append([{"user": 8, "item": 1, "label": 1}])
    assert store.history("8") == ([1], [1]) and store.n_users == 2


def test_a_restarted_store_replays_its_event_log(tmp_path):
    log = tmp_path / "events" / "log.jsonl"
    store = HistoryStore.load(_artifact(tmp_path), log_path=log)
    store.append([{"user": 7, "item": 40, "label": 0}])
    store.append([{"user": 9, "item": 41, "label": 1}])
    with open(log, "a") as fh:
        fh.write('{"user": 9, "item": 4')  # a write cut short by a crash
    again = HistoryStore.load(tmp_path, log_path=log)
    assert again.replayed == 2
    assert again.history(7) == store.history(7) == ([40, 30, 20], [0, 1, 0])
    assert again.history(9) == ([41], [1])


def test_save_and_load_round_trip(tmp_path):
    store = HistoryStore(SPEC, {"1": ([3, 2], [1, 1])})
    store.append([{"user": 1, "item": 4, "label": 0}])
    store.save(tmp_path)
    assert HistoryStore.load(tmp_path).history(1) == ([4, 3, 2], [0, 1, 1])
