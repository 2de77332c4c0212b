"""The rows the early-exit LLM head learns from, built on the driver once: a seeded sample of the train split (or
of the validation split) and of the validation split, each row's text (request sentences + retrieved history,
``llmctr.semantics.rag``) and the distilled student's logit. The workers then only tokenize; the same renderer
serves requests (``EarlyExitHead.texts``), so training and serving texts cannot drift apart.
"""

from __future__ import annotations

import functools
import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from llmctr import storage
from llmctr.config import dump_config
from llmctr.data import FeatureMap, load_dataset_config
from llmctr.data.feature_map import LABEL
from llmctr.data.records import raw_records
from llmctr.data.routing_rule import cold_start_mask, route_mask
from llmctr.data.schema import DatasetConfig
from llmctr.models.artifact import load_artifact, resolve_artifact
from llmctr.models.ctr_model import sigmoid
from llmctr.models.llm_head_config import EarlyExitConfig
from llmctr.semantics.history_context import HistoryContext
from llmctr.semantics.rag import (
    HistoryRetriever,
    RecentHistory,
    contexts_from_neighbours,
    entity_fields,
    item_texts,
    request_texts,
    retrieve_neighbours,
)
from llmctr.storage import artifacts_root, resolve_artifact_path

log = logging.getLogger(__name__)

TEXT, BASE, ROW = "text", "base_logit", "row"


@dataclass
class HeadRows:
    train: pd.DataFrame  # text, base_logit, label
    valid: pd.DataFrame  # row, text, base_logit, label (+ the raw records, for the round trip)
    valid_records: list[dict]
    items: dict[str, str]
    retriever: HistoryRetriever | None  # None when the context is the request's own history
    info: dict[str, Any]
    history: HistoryContext | None = None


def _sample(frame: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """Up to ``n`` rows (seeded), in the frame's order, index kept."""
    return frame if n is None or n >= len(frame) else frame.sample(n=n, random_state=seed).sort_index()


def _sample_groups(frame: pd.DataFrame, column: str, n: int | None, seed: int) -> pd.DataFrame:
    """Whole groups of ``column`` (seeded order) until at least ``n`` rows, in the frame's order, index kept."""
    if column not in frame:
        raise ValueError(f"train.calibration_groups: {column!r} is not a column of the split")
    if n is None or n >= len(frame):
        return frame
    groups = pd.unique(frame[column])
    order = np.random.default_rng(seed).permutation(len(groups))
    sizes = frame[column].value_counts()
    take = np.searchsorted(np.cumsum(sizes.loc[groups[order]].to_numpy()), n) + 1
    return frame[frame[column].isin(groups[order[:take]])]


def fit_and_calibration_rows(config: EarlyExitConfig, train: pd.DataFrame, valid: pd.DataFrame
                             ) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(rows to fit on, validation rows to calibrate on, rows of the split the fit rows come from). With
    ``fit_split: valid`` the fit rows are validation rows outside the calibration sample."""
    tc = config.train
    calibration = (_sample(valid, tc.valid_sample, tc.seed + 1) if tc.calibration_groups is None
                   else _sample_groups(valid, tc.calibration_groups, tc.valid_sample, tc.seed + 1))
    source = train if tc.fit_split == "train" else valid.drop(index=calibration.index)
    if len(source) == 0:
        raise ValueError("no validation rows are left to fit on outside the calibration sample: lower "
                         "train.valid_sample or use train.fit_split: train")
    return (_sample(source, tc.sample, tc.seed).reset_index(drop=True), calibration.reset_index(drop=True),
            len(source))


def resolve_student(student: str, artifacts) -> storage.Location:
    """A model/version folder as given, else ``ARTIFACTS/models/<experiment name>``."""
    if storage.is_uri(student) or Path(student).exists():
        return resolve_artifact(student)
    return resolve_artifact(storage.join(artifacts_root(artifacts), "models", student))


@torch.inference_mode()
def student_logits(location: storage.Location, fmap: FeatureMap, frame: pd.DataFrame,
                   batch_size: int = 16384) -> np.ndarray:
    """The student's logit per row of a prepared split (its encoded columns); the student must have been
    trained on the same feature map."""
    model, student_fmap, _ = load_artifact(location)
    ours = {f.name: f.vocab_size for f in fmap.input_fields if f.is_categorical}
    theirs = {f.name: f.vocab_size for f in student_fmap.input_fields if f.is_categorical}
    if ours != theirs:
        raise ValueError(f"student {location} was trained on another feature map (vocabulary sizes {theirs}, "
                         f"this dataset's {ours})")
    names = fmap.input_columns
    out = []
    for start in range(0, len(frame), batch_size):
        part = frame.iloc[start:start + batch_size]
        batch = {n: torch.from_numpy(np.array(np.stack(part[n].to_numpy()) if part[n].dtype == object
                                              else part[n].to_numpy())) for n in names}
        out.append(model(batch).logit.float().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def load_retriever(config: EarlyExitConfig, train: pd.DataFrame, fmap: FeatureMap, user_key: str,
                   item_key: str) -> tuple[HistoryRetriever, str]:
    """The configured retriever, or the user's most recent train interactions; and which one it is."""
    if config.retriever is None:
        return RecentHistory(train, fmap, user_key, item_key, LABEL), "recent train interactions"
    module, _, name = config.retriever.loader.partition(":")
    try:
        loader = functools.reduce(getattr, name.split("."), importlib.import_module(module))
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"retriever.loader {config.retriever.loader!r} cannot be imported: {exc}") from exc
    path = resolve_artifact_path(config.retriever.path)
    return loader(path), f"retriever {path}"


def history_context(config: EarlyExitConfig, dataset: DatasetConfig, data_dir: Path, fmap: FeatureMap,
                    item_key: str, artifacts=None) -> HistoryContext:
    """The request-history context: the dataset's sequence field of item ids and the items' entity vectors from its
    semantic tables (built with ``config.history_encoder`` when missing; cached)."""
    from llmctr.semantics.tables import SemanticTables, build_semantic_tables

    fields = [f for f in fmap.fields if f.kind == "sequence" and f.of == item_key]
    names = [f.name for f in fields]
    if config.history_field is not None:
        fields = [f for f in fields if f.name == config.history_field]
    if len(fields) != 1:
        raise ValueError(f"context: history needs one sequence field of {item_key!r} (history_field "
                         f"{config.history_field!r}; the dataset's: {names})")
    entity, _ = entity_fields(dataset, item_key)
    tables = SemanticTables.load(build_semantic_tables(data_dir, dataset, config.history_encoder,
                                                       artifacts=artifacts, progress=False))
    seq = fields[0]
    return HistoryContext.from_entity_table(tables.entities[entity].numpy(), fmap.field(item_key).vocab, seq.name,
                                            item_key, seq.label_name if seq.with_label else None)


def routed_rows(base_logits: np.ndarray, frame: pd.DataFrame, cold_fields: list[str],
                band: tuple[float, float]) -> np.ndarray:
    """Which rows of a prepared split the router sends to the LLM path (``llmctr.data.routing_rule``)."""
    cold = cold_start_mask({n: frame[n].to_numpy() for n in cold_fields}, cold_fields)
    return route_mask(sigmoid(base_logits), cold, band)


def head_rows(config: EarlyExitConfig, data_dir: Path, fmap: FeatureMap, artifacts=None,
              retriever: HistoryRetriever | None = None) -> HeadRows:
    """The fit and calibration rows as (text, student logit, label), built on the driver once: the workers then
    only tokenize. The same renderer serves requests (``EarlyExitHead.texts``), so training and serving texts
    cannot drift apart."""
    dataset = load_dataset_config(config.dataset)
    user_key, item_key = (dataset.entities[e].key if e in dataset.entities else None
                          for e in (config.user_entity, config.item_entity))
    if user_key is None or item_key is None:
        raise ValueError(f"dataset {dataset.name!r} needs entities {config.user_entity!r} and "
                         f"{config.item_entity!r} (it has {sorted(dataset.entities)})")
    specs = {f.name: f for f in dataset.static_fields}
    text_fields = config.text_fields or [n for n in specs if n not in (user_key, item_key)]
    unknown = sorted(set(text_fields) - set(specs))
    if unknown:
        raise ValueError(f"text_fields {unknown} are not input fields of dataset {dataset.name!r}")
    if config.train.calibrate_on == "routed" and not config.student:
        raise ValueError("train.calibrate_on: routed needs a student (the router routes on its probability)")
    subject, _ = entity_fields(dataset, user_key)
    full_train = pd.read_parquet(data_dir / "train")
    history = None
    if config.context == "history":
        history = history_context(config, dataset, data_dir, fmap, item_key, artifacts)
        retriever, source = None, f"request history ({history.history_field}), ranked by item vectors"
    elif retriever is None:
        retriever, source = load_retriever(config, full_train, fmap, user_key, item_key)
    else:
        source = "given retriever"
    items = item_texts(data_dir, fmap, dataset, item_key)
    student = resolve_student(config.student, artifacts) if config.student else None
    fit_rows, calibration_rows, source_rows = fit_and_calibration_rows(config, full_train,
                                                                       pd.read_parquet(data_dir / "valid"))
    out, records = {}, {}
    for split, frame in {"train": fit_rows, "valid": calibration_rows}.items():
        base = student_logits(student, fmap, frame) if student else np.zeros(len(frame), np.float32)
        if split == "valid" and config.train.calibrate_on == "routed":
            keep = routed_rows(base, frame, [user_key, item_key], config.train.routing_band)
            log.info("calibrating on the %d of %d validation rows the router sends to the LLM path", keep.sum(),
                     len(frame))
            frame, base = frame[keep].reset_index(drop=True), base[keep]
        records[split] = raw_records(frame, fmap)
        neighbours = (history.neighbours(records[split], config.neighbours) if history is not None
                      else retrieve_neighbours(records[split], retriever, config.neighbours))
        contexts = contexts_from_neighbours(neighbours, items, subject)
        out[split] = pd.DataFrame({ROW: np.arange(len(frame)), TEXT: request_texts(
            records[split], [specs[n] for n in text_fields], contexts), BASE: base, LABEL: frame[LABEL].to_numpy()})
    fit_split = config.train.fit_split
    info = {"fit_split": fit_split, "train_rows": len(fit_rows), "train_split_rows": source_rows,
            "train_is_sample": len(fit_rows) < source_rows, "valid_rows": len(out["valid"]),
            "calibration_sample_rows": len(calibration_rows), "calibrate_on": config.train.calibrate_on,
            "context_source": source, "student": str(student) if student else None,
            "context": {"user_field": user_key, "item_field": item_key, "subject": subject,
                        "neighbours": config.neighbours, "source": source, "kind": config.context,
                        "text_fields": [dump_config(specs[n]) for n in text_fields]}}
    if info["train_is_sample"]:
        log.info("fitting on a sample of %d of the %d %s rows%s", len(fit_rows), source_rows, fit_split,
                 " outside the calibration sample" if fit_split == "valid" else "")
    return HeadRows(out["train"], out["valid"], records["valid"], items, retriever, info, history)
