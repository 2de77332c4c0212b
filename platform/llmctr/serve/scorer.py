"""In-process scoring: validate raw records, encode them with the training feature map, run the model.

Used by the Serve deployment, the CLI and the benchmarks, so the HTTP path and offline checks share code.
"""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmctr import storage
from llmctr.data.feature_map import FeatureMap
from llmctr.models.artifact import load_artifact, resolve_artifact
from llmctr.models.ctr_model import sigmoid
from llmctr.models.layers.semantic_history import text_vector_key
from llmctr.semantics.entity_texts import ENTITY_TEXTS, EntityTexts, TextVectors, oov_texts

SCALAR = (str, numbers.Number)
#: ``encode``'s per-record cold-start text status (0 none, 1 encoded now, 2 from the cache); not a model input
TEXT_STATUS = "__text_status__"


class RecordError(ValueError):
    """A request's records do not fit the model's features."""


class Scorer:
    def __init__(self, model: torch.nn.Module, fmap: FeatureMap, meta: dict[str, Any],
                 texts: TextVectors | None = None):
        """``texts``: the cold-start texts of a model whose semantic history reads them (``load`` makes it from the
        artifact's ``entity_texts.json``): a record whose candidate is unseen in training is scored with the vector
        of its own text, encoded once and cached; known candidates stay a table lookup."""
        self.model = model.eval()
        self.texts = texts
        self.fmap = fmap
        self.meta = meta
        # a behaviour history is optional (missing: empty, or the graph's history store fills it)
        self.required = [f.name for f in fmap.input_fields if f.kind != "sequence"]
        self.kinds = {f.name: f.kind for f in fmap.input_fields}
        self.kinds.update({f.label_name: "sequence_label" for f in fmap.input_fields
                           if f.kind == "sequence" and f.with_label})
        # the inputs the model reads: a sequence field only when it has a history layer over it
        history = getattr(model, "history_field", None)
        self.inputs = {f.name for f in fmap.input_fields
                       if f.kind != "sequence" or (history is not None and f.name == history.name)}

    @classmethod
    def load(cls, path: str | Path) -> Scorer:
        model, fmap, meta = load_artifact(path)
        return cls(model, fmap, meta, cold_start_texts(model, meta["path"]))

    @property
    def name(self) -> str:
        return self.meta.get("name", "")

    @property
    def version(self) -> str:
        return self.meta.get("version", "")

    def validate(self, records: list[dict[str, Any]]) -> None:
        """Raise RecordError naming each bad record and field; unknown values are fine (they map to OOV)."""
        problems = []
        for i, rec in enumerate(records):
            missing = [n for n in self.required if n not in rec]
            if missing:
                problems.append(f"record {i}: missing field(s) {missing}")
            for name in self.kinds:
                if name in rec and not self._type_ok(self.kinds[name], rec[name]):
                    problems.append(f"record {i}: field {name!r} ({self.kinds[name]}) cannot take "
                                    f"{type(rec[name]).__name__} {rec[name]!r}")
            if len(problems) >= 20:
                break
        if problems:
            raise RecordError("; ".join(problems))

    @staticmethod
    def _type_ok(kind: str, value: Any) -> bool:
        if value is None:
            return True
        if kind == "numeric":
            return isinstance(value, numbers.Number) and not isinstance(value, bool)
        if kind in ("multi_categorical", "sequence") and isinstance(value, list):
            return all(issubclass(t, SCALAR) for t in set(map(type, value)))  # per distinct type: long histories
        if kind == "sequence_label":
            try:
                return isinstance(value, list) and set(value) <= {0, 1}
            except TypeError:  # an unhashable item
                return False
        return kind != "sequence" and isinstance(value, SCALAR)

    def encode(self, records: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        """Raw records → feature-map ids (and numeric values) per input field."""
        encoded = self.fmap.encode_records(records, self.inputs)
        if self.texts is not None:  # the candidate's own text where its id is unseen (TEXT_STATUS says how)
            spec = self.texts.spec
            vectors, encoded[TEXT_STATUS] = self.texts.vectors(oov_texts(records, encoded[spec.key], spec.fields))
            encoded[text_vector_key(spec.key)] = vectors
        return encoded

    @torch.inference_mode()
    def logits(self, encoded: dict[str, np.ndarray]) -> np.ndarray:
        features = {k: torch.from_numpy(np.require(v, requirements="W")) for k, v in encoded.items()
                    if k != TEXT_STATUS}
        return self.model(features).logit.numpy().astype(float)

    def score(self, records: list[dict[str, Any]]) -> np.ndarray:
        return sigmoid(self.logits(self.encode(records)))


def cold_start_texts(model: torch.nn.Module, location: storage.Location) -> TextVectors | None:
    """The artifact's cold-start texts with their encoder loaded (the one that built the semantic tables), for a
    model whose semantic history reads them; None for any other model."""
    layer = getattr(model, "semantic_history", None)
    if layer is None or not layer.config.cold_texts:
        return None
    spec = EntityTexts.load(storage.local_copy(resolve_artifact(location)))
    if spec is None:
        raise ValueError(f"model artifact {location} reads cold-start texts (history.semantic.cold_texts) but has no "
                         f"{ENTITY_TEXTS} (what renders and encodes them); retrain it with the platform's job")
    if spec.key != model.history_field.of:
        raise ValueError(f"{ENTITY_TEXTS} of {location} describes {spec.key!r}, not the candidate field "
                         f"{model.history_field.of!r}")
    return TextVectors(spec)
