"""Dataset YAML schema: where raw data lives, how rows are validated, labelled, split and featurised.

One YAML file in ``configs/datasets/`` describes a dataset completely; adding a dataset needs no code.
"""

from __future__ import annotations

from dataclasses import field
from pathlib import Path
from typing import Literal

from pydantic import model_validator
from pydantic.dataclasses import dataclass

from llmctr.config import STRICT, load_named_config


@dataclass(config=STRICT)
class ColumnSpec:
    """A raw column: its type and allowed range. Rows that violate it are quarantined."""

    name: str
    type: Literal["int", "float", "str"] = "str"
    min: float | None = None
    max: float | None = None
    nullable: bool = False


@dataclass(config=STRICT)
class TableSpec:
    """A raw file: delimited text (``delimiter`` may be multi-character, e.g. ``::``), CSV, or parquet.

    ``path`` may list several names; the first one present is used (e.g. a full ``ratings.dat``
    before a partial copy).
    """

    path: str | list[str]
    format: Literal["delimited", "csv", "parquet"] = "delimited"
    delimiter: str = ","
    header: bool = False
    encoding: str = "utf-8"
    columns: list[ColumnSpec] = field(default_factory=list)

    def candidates(self) -> list[str]:
        return [self.path] if isinstance(self.path, str) else list(self.path)

    def resolve(self, root: Path) -> Path:
        for name in self.candidates():
            if (root / name).exists():
                return root / name
        raise FileNotFoundError(f"none of {self.candidates()} found in {root}")


@dataclass(config=STRICT)
class JoinSpec(TableSpec):
    """A lookup table joined onto the main table by key (e.g. users.dat on user_id)."""

    key: str = ""


@dataclass(config=STRICT)
class LabelSpec:
    """Binary label from a column. With thresholds: >= positive_min is 1, <= negative_max is 0,
    anything between is dropped by rule (counted). Without thresholds the column must be 0/1."""

    column: str
    positive_min: float | None = None
    negative_max: float | None = None


@dataclass(config=STRICT)
class SplitSpec:
    """``temporal``: sort by ``order_by`` and cut in order; ``random``: seeded shuffle, then cut.

    Cut sizes are floor(n * ratio) for train and valid, the rest is test.
    """

    kind: Literal["temporal", "random"] = "temporal"
    order_by: list[str] = field(default_factory=list)
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 2026

    @model_validator(mode="after")
    def _check(self) -> SplitSpec:
        if abs(sum(self.ratios) - 1.0) > 1e-6 or min(self.ratios) < 0:
            raise ValueError(f"split ratios must be non-negative and sum to 1, got {self.ratios}")
        if self.kind == "temporal" and not self.order_by:
            raise ValueError("a temporal split needs order_by")
        return self


FieldKind = Literal["categorical", "multi_categorical", "numeric", "text", "sequence"]


@dataclass(config=STRICT)
class FieldSpec:
    """A model feature. ``description`` is the field's meaning in plain words (used as its semantic text).

    categorical: vocabulary from train values seen >= min_count times; others map to the OOV id.
    multi_categorical: ``separator``-joined values, padded/truncated to ``max_len``.
    numeric: standardised scalar (``buckets: 0``) or quantile buckets learnt on train.
    text: kept raw for the semantic layer; not an input of tabular models.
    sequence: behaviour history: for each row, the ``of`` field's values of the same ``group_by`` key's last
    ``max_len`` rows strictly before the row's ``order_by`` time, most recent first, through the ``of`` field's
    vocabulary (padding 0); with ``with_label`` also ``<name>_label``, their labels (see ``llmctr.data.history``).
    """

    name: str
    kind: FieldKind
    description: str
    source: str | None = None
    min_count: int = 1
    separator: str = "|"
    max_len: int = 8
    buckets: int = 0
    log: bool = False
    #: Label used in semantic texts per raw value (e.g. ML-1M age "25" -> "25-34"); unlisted values as they are.
    value_labels: dict[str, str] | None = None
    #: sequence fields: the categorical field whose values (and vocabulary) the history holds
    of: str | None = None
    #: sequence fields: the user key (a field or column name) and the time column
    group_by: str | None = None
    order_by: str | None = None
    with_label: bool = True

    @property
    def column(self) -> str:
        return self.source or self.name

    @model_validator(mode="after")
    def _check(self) -> FieldSpec:
        if self.kind == "sequence":
            missing = [k for k in ("of", "group_by", "order_by") if not getattr(self, k)]
            if missing:
                raise ValueError(f"sequence field {self.name!r} needs {', '.join(missing)}")
            if self.max_len <= 0:
                raise ValueError(f"sequence field {self.name!r}: max_len must be > 0, got {self.max_len}")
        elif self.of or self.group_by or self.order_by:
            raise ValueError(f"field {self.name!r}: of/group_by/order_by are for sequence fields only")
        return self


@dataclass(config=STRICT)
class EntitySpec:
    """An entity of the log (e.g. a user or an item): its key field and the fields that describe it.
    The semantic layer encodes one text per key value from these fields."""

    key: str
    fields: list[str]


@dataclass(config=STRICT)
class DatasetConfig:
    name: str
    source: TableSpec
    label: LabelSpec
    split: SplitSpec
    fields: list[FieldSpec]
    description: str = ""
    subdir: str = ""
    joins: list[JoinSpec] = field(default_factory=list)
    group_by: str | None = None
    generator: Literal["synthetic"] | None = None
    download_url: str | None = None
    entities: dict[str, EntitySpec] = field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> DatasetConfig:
        names = [f.name for f in self.fields]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate field names: {dupes}")
        if not any(f.kind != "text" for f in self.fields):
            raise ValueError("at least one non-text field is needed")
        for join in self.joins:
            if not join.key:
                raise ValueError(f"join {join.path!r} needs 'key'")
        self._check_sequences()
        declared = self.declared_columns()
        if declared is not None:
            needed = {f.column for f in self.fields if f.kind != "sequence"} | {self.label.column}
            needed |= set(self.split.order_by) | {c for f in self.sequence_fields for c in self.sequence_columns(f)}
            missing = sorted(needed - declared)
            if missing:
                raise ValueError(f"fields/label/split use columns no table declares: {missing}")
        if self.group_by and self.group_by not in names:
            raise ValueError(f"group_by {self.group_by!r} is not a field")
        for entity, spec in self.entities.items():
            unknown = sorted({spec.key, *spec.fields} - set(names))
            if unknown:
                raise ValueError(f"entity {entity!r} names unknown fields: {unknown}")
        return self

    def _check_sequences(self) -> None:
        by_name = {f.name: f for f in self.fields}
        for seq in self.sequence_fields:
            target = by_name.get(seq.of)
            if target is None:
                raise ValueError(f"sequence field {seq.name!r}: 'of' names no field: {seq.of!r}")
            if target.kind != "categorical":
                raise ValueError(f"sequence field {seq.name!r}: 'of' must name a categorical field, "
                                 f"{seq.of!r} is {target.kind}")
            if f"{seq.name}_label" in by_name:
                raise ValueError(f"sequence field {seq.name!r}: a field named {seq.name}_label would clash "
                                 "with its label column")

    @property
    def sequence_fields(self) -> list[FieldSpec]:
        return [f for f in self.fields if f.kind == "sequence"]

    def column_of(self, name: str) -> str:
        """A field name → its raw column; any other name is taken as a column."""
        for f in self.fields:
            if f.name == name and f.kind != "sequence":
                return f.column
        return name

    def sequence_columns(self, seq: FieldSpec) -> tuple[str, str, str]:
        """The raw columns a sequence field reads: (item, user key, time)."""
        return self.column_of(seq.of), self.column_of(seq.group_by), self.column_of(seq.order_by)

    def declared_columns(self) -> set[str] | None:
        """All column names the tables declare, or None when a table takes its names from a header."""
        cols: set[str] = set()
        for table in [self.source, *self.joins]:
            if not table.columns:
                return None
            cols |= {c.name for c in table.columns}
        return cols

    @property
    def input_fields(self) -> list[FieldSpec]:
        return [f for f in self.fields if f.kind != "text"]

    @property
    def static_fields(self) -> list[FieldSpec]:
        """The input fields that describe the row itself (not a behaviour history)."""
        return [f for f in self.input_fields if f.kind != "sequence"]


def load_dataset_config(path_or_name: str | Path) -> DatasetConfig:
    """Load a dataset YAML by path, or by name from ``configs/datasets/``."""
    return load_named_config(DatasetConfig, path_or_name, "dataset")
