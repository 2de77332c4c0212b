"""The feature map: vocabularies and numeric transforms learnt on train, and the one encoder that
training data and live requests both go through (so serving can never drift from training).

Id convention for categorical fields: 0 = padding (multi-valued only), 1 = OOV / unseen, 2.. = vocab.
A sequence field (behaviour history) shares its ``of`` field's vocabulary: its ids are that field's ids.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmctr import storage
from llmctr.data import history
from llmctr.data.schema import DatasetConfig, FieldSpec

PAD_ID = 0
OOV_ID = 1
FIRST_ID = 2
RAW_PREFIX = "raw__"
LABEL = "label"
SEEN_MAX = 1 << 20  # raw values a field remembers the ids of (FieldMap.id_of)


def normalize_value(value: Any) -> str:
    """Raw value → vocabulary key. 7, 7.0 and "7" are the same key; None/NaN is the empty key."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value.is_integer():
            return str(int(value))
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (np.integer,)):
        return str(int(value))
    return str(value).strip()


def normalized_codes(values: Any) -> tuple[np.ndarray, list[str]]:
    """(each value's code, the vocabulary key of each distinct value): ``normalize_value`` once per distinct value."""
    codes, uniques = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=False)
    return codes, [normalize_value(u) for u in uniques]


def normalize_column(values: Any) -> np.ndarray:
    """``normalize_value`` of every value (an object array)."""
    codes, keys = normalized_codes(values)
    return np.array(keys or [""], dtype=object)[codes]


@dataclass
class FieldMap:
    name: str
    kind: str
    description: str
    source: str
    vocab: list[str] = field(default_factory=list)
    max_len: int = 1
    separator: str = "|"
    log: bool = False
    mean: float = 0.0
    std: float = 1.0
    boundaries: list[float] = field(default_factory=list)
    #: sequence fields: the categorical field whose vocabulary the history shares, and whether labels come along
    of: str | None = None
    with_label: bool = False

    @property
    def is_categorical(self) -> bool:
        return self.kind in ("categorical", "multi_categorical", "sequence") or bool(self.boundaries)

    @property
    def label_name(self) -> str:
        """A sequence field's label input (``<name>_label``)."""
        return f"{self.name}_label"

    @property
    def vocab_size(self) -> int:
        """Embedding rows needed: ids 0..vocab_size-1."""
        if self.boundaries:
            return len(self.boundaries) + 1 + FIRST_ID
        return len(self.vocab) + FIRST_ID

    @cached_property
    def index(self) -> dict[str, int]:
        return {v: i + FIRST_ID for i, v in enumerate(self.vocab)}

    @cached_property
    def _seen(self) -> dict[Any, int]:
        """Raw value → id, filled as values come (a server meets the same ids again and again): one dict lookup
        instead of ``normalize_value`` + lookup. Equal raw values normalise alike (7, 7.0, np.int64(7), True/1)."""
        return {}

    def id_of(self, value: Any) -> int:
        """One raw value's id (OOV when unseen in training), as ``encode`` gives it."""
        seen = self._seen
        try:
            return seen[value]
        except KeyError:
            found = self.index.get(normalize_value(value), OOV_ID)
            if len(seen) < SEEN_MAX:
                seen[value] = found
            return found
        except TypeError:  # unhashable: the slow way
            return self.index.get(normalize_value(value), OOV_ID)

    def encode(self, values: pd.Series) -> np.ndarray:
        """A column of raw values → model inputs (vectorised with pandas: the data pipeline's path)."""
        if self.kind == "categorical":  # one lookup per distinct value
            codes, keys = normalized_codes(values)
            return np.fromiter((self.index.get(k, OOV_ID) for k in keys), np.int64, len(keys))[codes]
        if self.kind == "numeric":
            x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            return self._numeric(x)
        if self.kind == "sequence":
            return history.encode_ids(list(values), self.index, self.max_len, normalize_value)
        return self.encode_values(list(values))

    def encode_values(self, values: list[Any]) -> np.ndarray:
        """``encode`` for a short list of raw values without pandas (the serving path: a request's records); the
        same ids and values as ``encode``."""
        if self.kind == "categorical":
            return np.fromiter(map(self.id_of, values), np.int64, len(values))
        if self.kind == "multi_categorical":
            out = np.full((len(values), self.max_len), PAD_ID, dtype=np.int64)
            for row, value in enumerate(values):
                tokens = _tokens(value, self.separator)[: self.max_len]
                out[row, : len(tokens)] = [self.index.get(t, OOV_ID) for t in tokens]
            return out
        if self.kind == "numeric":
            return self._numeric(np.fromiter((_to_float(v) for v in values), np.float64, len(values)))
        if self.kind == "sequence":
            out = np.full((len(values), self.max_len), PAD_ID, dtype=np.int64)
            for row, value in enumerate(values):
                items = history.as_list(value)[: self.max_len]
                out[row, : len(items)] = list(map(self.id_of, items))
            return out
        raise ValueError(f"field {self.name!r} of kind {self.kind!r} is not a model input")

    def encode_labels(self, values: list[Any]) -> np.ndarray:
        """A sequence field's history labels (lists of 0/1, None = empty) → [rows, max_len] int64, padding 0."""
        return history.encode_labels(values, self.max_len)

    def _numeric(self, x: np.ndarray) -> np.ndarray:
        if self.log:
            x = _log(x)
        if self.boundaries:
            ids = np.searchsorted(np.asarray(self.boundaries), x, side="right") + FIRST_ID
            return np.where(np.isnan(x), OOV_ID, ids).astype(np.int64)
        return np.nan_to_num((x - self.mean) / self.std, nan=0.0).astype(np.float32)


def _to_float(value: Any) -> float:
    """pd.to_numeric(errors="coerce") for one value."""
    if isinstance(value, bool) or value is None:
        return float(value) if isinstance(value, bool) else math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _tokens(value: Any, separator: str) -> list[str]:
    if isinstance(value, (list, tuple, np.ndarray)):
        return [normalize_value(v) for v in value if normalize_value(v)]
    text = normalize_value(value)
    return [t.strip() for t in text.split(separator) if t.strip()] if text else []


def _log(x: np.ndarray) -> np.ndarray:
    """FuxiCTR/Criteo convention: log(x)^2 compresses large counts; small values kept."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(x > 2, np.log(np.maximum(x, 2)) ** 2, x)


@dataclass
class FeatureMap:
    dataset: str
    fields: list[FieldMap]
    label: str = LABEL
    group_by: str | None = None

    def __post_init__(self) -> None:
        for f in self.fields:  # a sequence field shares (is given the same list as) its ``of`` field's vocabulary
            if f.kind == "sequence" and f.of is not None:
                f.vocab = self.field(f.of).vocab
                f.__dict__.pop("index", None)

    @property
    def input_fields(self) -> list[FieldMap]:
        return [f for f in self.fields if f.kind != "text"]

    @property
    def static_fields(self) -> list[FieldMap]:
        """The input fields that describe the row itself (not a behaviour history): what texts and LLaCTR's
        field-level semantics cover."""
        return [f for f in self.input_fields if f.kind != "sequence"]

    @property
    def input_columns(self) -> list[str]:
        """Every column a model reads: the input fields and each labelled sequence's ``<name>_label``."""
        return [name for f in self.input_fields
                for name in ([f.name, f.label_name] if f.kind == "sequence" and f.with_label else [f.name])]

    def field(self, name: str) -> FieldMap:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def encode_frame(self, raw: pd.DataFrame, keep_raw: bool = False) -> dict[str, np.ndarray]:
        """Encode raw values (columns named by field *name*) into model inputs."""
        out: dict[str, np.ndarray] = {}
        for f in self.input_fields:
            out[f.name] = f.encode(raw[f.name])
            if f.kind == "sequence" and f.with_label:
                labels = raw[f.label_name] if f.label_name in raw else [None] * len(raw)
                out[f.label_name] = f.encode_labels(list(labels))
        if keep_raw:
            for f in self.fields:
                if f.kind == "sequence":  # the raw values as lists (padding never stored)
                    lengths, flat = history.flat_lists(raw[f.name], f.max_len)
                    keys = normalize_column(flat).tolist()
                    ends = np.cumsum(lengths)
                    out[RAW_PREFIX + f.name] = history.object_array(
                        [keys[a:b] for a, b in zip(ends - lengths, ends)])
                else:
                    out[RAW_PREFIX + f.name] = normalize_column(raw[f.name])
        return out

    def encode_records(self, records: list[dict[str, Any]], names: set[str] | None = None) -> dict[str, np.ndarray]:
        """Raw records (field name → value; missing = None) → model inputs, without pandas. A sequence field's value
        is a list of raw ``of`` values, most recent first (missing: empty history), with ``<name>_label``.
        ``names``: only these input fields (default: all)."""
        out = {}
        for f in self.input_fields:
            if names is not None and f.name not in names:
                continue
            out[f.name] = f.encode_values([r.get(f.name) for r in records])
            if f.kind == "sequence" and f.with_label:
                out[f.label_name] = f.encode_labels([r.get(f.label_name) for r in records])
        return out

    def save(self, path: str | Path) -> None:
        storage.write_text(path, json.dumps(self.to_dict(), indent=1))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for f in data["fields"]:
            if f["kind"] == "sequence":
                f["vocab"] = []  # shared with its ``of`` field, stored there once
        data["ids"] = {"pad": PAD_ID, "oov": OOV_ID, "first": FIRST_ID}
        data["field_order"] = [f.name for f in self.input_fields]
        data["vocab_sizes"] = {f.name: f.vocab_size for f in self.input_fields if f.is_categorical}
        return data

    @classmethod
    def load(cls, path: str | Path) -> FeatureMap:
        data = json.loads(storage.read_text(path))
        fields = [FieldMap(**f) for f in data["fields"]]
        return cls(dataset=data["dataset"], fields=fields, label=data["label"], group_by=data.get("group_by"))


def count_values(batch: pd.DataFrame, specs: list[FieldSpec]) -> pd.DataFrame:
    """Per-batch value counts of categorical fields, as rows (field, value, count), for vocab building."""
    parts = []
    for spec in specs:
        if spec.kind == "categorical":
            keys = pd.Series(normalize_column(batch[spec.column]), dtype=object)
        elif spec.kind == "multi_categorical":
            keys = pd.Series([t for v in batch[spec.column] for t in _tokens(v, spec.separator)], dtype=object)
        else:
            continue
        counts = keys.value_counts()
        parts.append(pd.DataFrame({"field": spec.name, "value": counts.index.astype(str), "count": counts.values}))
    if not parts:
        return pd.DataFrame({"field": [], "value": [], "count": []})
    return pd.concat(parts, ignore_index=True)


def build_feature_map(cfg: DatasetConfig, counts: pd.DataFrame, numeric_sample: pd.DataFrame) -> FeatureMap:
    """Vocabularies (train values with count >= min_count, most frequent first) and numeric transforms."""
    totals = counts.groupby(["field", "value"], sort=False)["count"].sum().reset_index()
    fields = []
    for spec in cfg.fields:
        fm = FieldMap(name=spec.name, kind=spec.kind, description=spec.description, source=spec.column,
                      separator=spec.separator, log=spec.log,
                      max_len=spec.max_len if spec.kind == "multi_categorical" else 1)
        if spec.kind == "sequence":
            fm.of, fm.max_len, fm.with_label = spec.of, spec.max_len, spec.with_label
        elif spec.kind in ("categorical", "multi_categorical"):
            rows = totals[(totals["field"] == spec.name) & (totals["count"] >= spec.min_count)]
            rows = rows.sort_values(["count", "value"], ascending=[False, True])
            fm.vocab = rows["value"].astype(str).tolist()
        elif spec.kind == "numeric":
            x = pd.to_numeric(numeric_sample[spec.column], errors="coerce").to_numpy(float, na_value=np.nan)
            x = x[~np.isnan(x)]
            if spec.log:
                x = _log(x)
            if spec.buckets > 0 and len(x):
                qs = np.quantile(x, np.linspace(0, 1, spec.buckets + 1)[1:-1])
                fm.boundaries = sorted({float(q) for q in qs})
            elif len(x):
                fm.mean, fm.std = float(x.mean()), float(x.std() or 1.0)
        fields.append(fm)
    return FeatureMap(dataset=cfg.name, fields=fields, group_by=cfg.group_by)
