"""Samples and features as natural-language text, from the dataset YAML's field descriptions.

A field's ``description`` is a noun phrase ("the user's age group"); a feature reads
"The user's age group is 25-34." and a sample is its features' sentences joined. Raw values go
through the field's ``value_labels`` (e.g. ML-1M occupation "12" -> "programmer"); multi-valued
values are listed ("The movie's genres are Comedy, Romance."). A missing value reads "unknown".
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from llmctr.data.feature_map import normalize_value
from llmctr.data.schema import FieldSpec

UNKNOWN = "unknown"
_PAREN = re.compile(r"\s*\([^)]*\)\s*$")


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _subject(field: FieldSpec) -> str:
    """The description without a trailing parenthetical (codes, ranges): the noun phrase of a feature text."""
    return _PAREN.sub("", field.description).strip() or field.name.replace("_", " ")


_BREAKS = {"of", "in", "on", "for", "with", "that", "which", "who", "the", "a", "an", "per", "at", "by"}


def _plural(subject: str) -> bool:
    """Whether the head noun of a description ("the movie's genres", "the price in dollars") is plural."""
    words = subject.lower().split()
    head = words[:1]
    for word in words[1:]:
        if word in _BREAKS:
            break
        head.append(word)
    last = head[-1] if head else ""
    return last.endswith("s") and not last.endswith(("ss", "'s", "us", "is"))


def value_tokens(field: FieldSpec, value: Any) -> list[str]:
    """A raw value as its displayed labels: split on the field's separator for categorical and
    multi-valued fields, each token mapped through ``value_labels``."""
    if isinstance(value, (list, tuple, np.ndarray)):
        tokens = [normalize_value(v) for v in value]
    else:
        text = normalize_value(value)
        if field.kind in ("categorical", "multi_categorical") and field.separator and field.separator in text:
            tokens = text.split(field.separator)
        else:
            tokens = [text]
    labels = field.value_labels or {}
    return [labels.get(t.strip(), t.strip()) for t in tokens if t.strip()]


def field_text(field: FieldSpec) -> str:
    """The field's description as a sentence (its semantic text, e.g. for the field-level vector)."""
    return _sentence(field.description)


def feature_text(field: FieldSpec, value: Any) -> str:
    """One feature as a sentence: "The user's age group is 25-34."; an empty value reads "unknown"."""
    subject = _subject(field)
    tokens = value_tokens(field, value)
    verb = "are" if len(tokens) > 1 or _plural(subject) else "is"
    return _sentence(f"{subject} {verb} {', '.join(tokens) if tokens else UNKNOWN}")


def sample_text(record: Mapping[str, Any], fields: Sequence[FieldSpec]) -> str:
    """A sample (raw values by field name) as the sentences of its fields, in ``fields`` order.

    A field absent from ``record`` reads as unknown."""
    return " ".join(feature_text(f, record.get(f.name)) for f in fields)
