"""Each user's recent behaviour for serving: the last ``max_len`` interactions (raw item ids and labels, most recent
first) of every user, as of the end of the prepared log, plus what ``POST /v1/events`` appended since.

A request's record may carry its own history (the sequence field, e.g. ``history: [ids]`` and ``history_label``);
a record without one is filled from the store, so a client that only sends the candidate still gets a history
model's answer. Unknown users get an empty history, never an error.

Files: ``user_history.json`` (written by ``llmctr data prepare`` for a dataset with a sequence field, copied into
each model artifact trained on it) and, per deployment, an append-only event log (JSON lines). An event is written
to the log and flushed before it is applied in memory, so a restarted store replays the log over the artifact and
ends where the old one was: events survive a replica's death.
"""

from __future__ import annotations

import json
import os
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

USER_HISTORY = "user_history.json"


class HistoryStore:
    """``spec``: the sequence field as the feature map describes it: ``field`` (its name), ``of`` (the item field),
    ``group_by`` (the user field), ``max_len``, ``with_label``."""

    def __init__(self, spec: Mapping[str, Any], users: Mapping[str, tuple[Sequence, Sequence]] | None = None,
                 log_path: str | Path | None = None):
        self.spec = dict(spec)
        self.field, self.user_field, self.item_field = spec["field"], spec["group_by"], spec["of"]
        self.max_len = int(spec["max_len"])
        self._users: dict[str, deque] = {}
        for user, (items, labels) in (users or {}).items():
            self._users[str(user)] = deque(list(zip(items, labels))[:self.max_len], maxlen=self.max_len)
        self._lock = threading.Lock()
        self.log_path = Path(log_path) if log_path else None
        self.replayed = self._replay() if self.log_path else 0

    # -- files ----------------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, folder: str | Path, log_path: str | Path | None = None) -> HistoryStore:
        """The store of an artifact (or prepared dataset) folder, with ``log_path``'s events replayed over it."""
        path = Path(folder) / USER_HISTORY
        if not path.is_file():
            raise FileNotFoundError(f"no {USER_HISTORY} in {folder} (a dataset with a sequence field writes it)")
        data = json.loads(path.read_text())
        return cls(data["spec"], {u: (h["items"], h["labels"]) for u, h in data["users"].items()}, log_path)

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / USER_HISTORY
        with self._lock:
            users = {u: {"items": [i for i, _ in h], "labels": [lb for _, lb in h]} for u, h in self._users.items()}
        path.write_text(json.dumps({"spec": self.spec, "users": users}))
        return path

    def _replay(self) -> int:
        if not self.log_path.is_file():
            return 0
        events = []
        for line in self.log_path.read_text().splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a crash mid-write: nothing after it was applied
                break
        self._apply(events)
        return len(events)

    # -- reading and writing --------------------------------------------------------------------------------------
    def history(self, user: Any) -> tuple[list, list]:
        """(items, labels) of ``user``, most recent first; empty for an unknown user."""
        with self._lock:
            entries = list(self._users.get(str(user), ()))
        return [i for i, _ in entries], [lb for _, lb in entries]

    def fill(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The records, each without its own sequence field given that user's stored history (and labels)."""
        out = []
        for record in records:
            record = dict(record)
            if record.get(self.field) is None:
                items, labels = self.history(record.get(self.user_field))
                record[self.field], record[f"{self.field}_label"] = items, labels
            out.append(record)
        return out

    def append(self, events: Iterable[Mapping[str, Any]]) -> int:
        """Record interactions ``{user: ..., item: ..., label: 0|1}`` in the order given (oldest first); returns
        how many. Logged and flushed first, then applied."""
        events = [{"user": e["user"], "item": e["item"], "label": int(e["label"])} for e in events]
        if self.log_path is not None and events:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a") as fh:
                fh.write("".join(json.dumps(e) + "\n" for e in events))
                fh.flush()
                os.fsync(fh.fileno())
        self._apply(events)
        return len(events)

    def _apply(self, events: Sequence[Mapping[str, Any]]) -> None:
        with self._lock:
            for e in events:
                self._users.setdefault(str(e["user"]), deque(maxlen=self.max_len)).appendleft((e["item"], e["label"]))

    @property
    def n_users(self) -> int:
        return len(self._users)
