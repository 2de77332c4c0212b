"""Training a CTR experiment in this process under the benchmark protocol: the library's own objective, epoch and
prediction functions (``llmctr.train.ctr``) on a prepared dataset held in memory, without a Ray Train job per run
(its start-up would cost more than a run's training on ML-1M). Each run keeps the epoch with the best validation
AUC, stops after ``patience`` epochs without one, and returns that epoch's test predictions.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.lib.protocol import Protocol
from llmctr.config import dump_config
from llmctr.data import FeatureMap
from llmctr.data.feature_map import LABEL
from llmctr.models.artifact import cpu_state, unwrap
from llmctr.semantics.cache import default_cache_root
from llmctr.train import feed
from llmctr.train.ctr.cold_texts import ColdTexts, entity_texts_of
from llmctr.train.ctr.config import ExperimentConfig
from llmctr.train.ctr.instance_texts import InstanceTexts, reads_instance_texts
from llmctr.train.ctr.instance_texts import columns as instance_columns
from llmctr.train.ctr.loop import feed_lists, predict, train_epoch
from llmctr.train.ctr.objective import make_objective
from llmctr.train.metrics import auc

SPLITS = ("train", "valid", "test")


@dataclass
class Prepared:
    fmap: FeatureMap
    splits: dict[str, feed.Batch]
    raw: dict[str, pd.DataFrame]  # the splits' raw__ columns of the slice keys
    folder: Path | None = None
    #: instance-text tables built for runs on these splits, by their settings (built once, shared by the seeds)
    instance_texts: dict[str, InstanceTexts] = field(default_factory=dict)


def load_prepared(folder: Path, raw_columns: tuple[str, ...] = ()) -> Prepared:
    fmap = FeatureMap.load(folder / "feature_map.json")
    columns = [*fmap.input_columns, LABEL]
    splits, raw = {}, {}
    for split in SPLITS:
        frame = pd.read_parquet(folder / split, columns=columns + [f"raw__{c}" for c in raw_columns])
        splits[split] = feed.to_tensors({c: frame[c].to_numpy() for c in columns}, fmap.input_columns)
        raw[split] = frame[[f"raw__{c}" for c in raw_columns]]
    return Prepared(fmap, splits, raw, folder)


@dataclass
class RunResult:
    valid_auc: float
    test_auc: float
    test_probs: np.ndarray
    best_epoch: int
    epochs_run: int
    seconds: float
    epoch_seconds: float
    #: a distilling experiment's teacher at the student's best epoch (None otherwise)
    teacher_test_auc: float | None = None
    #: with cold-start texts: the same weights' test predictions without them (OOV candidates read "unknown")
    test_probs_without_texts: np.ndarray | None = None
    #: with cold-start texts: rows per split whose OOV candidate has a text of its own
    cold_text_rows: dict[str, int] | None = None
    #: with instance texts (distill.instance: texts): rows, distinct texts, encoding seconds
    instance_texts: dict | None = None
    #: with distill.teacher_stop: the teacher's best validation epoch and the epoch after which it was frozen
    teacher_stop: dict | None = None


def fit_in_process(exp: ExperimentConfig, data: Prepared, protocol: Protocol, seed: int,
                   threads: int | None = None, trace: list[dict] | None = None, semantics=None) -> RunResult:
    """``trace``: a list to which each epoch appends its validation AUC and, as a diagnostic never used to choose
    anything, its test AUC. ``semantics``: the semantic tables (llmctr.semantics.tables) the experiment needs."""
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    objective = make_objective(data.fmap, exp, semantics)
    model = objective.model
    cold, splits = _cold_texts(exp, data, semantics, model)
    instance = _instance_texts(exp, data, model)
    if instance is not None:
        splits = {s: instance.attach(batch, s) for s, batch in splits.items()}
    tc = exp.train
    optimizer = torch.optim.Adam(objective.param_groups(), lr=tc.lr, weight_decay=tc.weight_decay)
    stopper = objective.teacher_stop()
    if stopper is not None:
        stopper.bind({})
    valid_y = splits["valid"][LABEL].numpy()
    scorers = objective.scorers(model)  # "": the served model (a distilled student), "teacher_": its teacher
    best, best_auc, best_epoch, bad, epoch, t0 = cpu_state(model), -1.0, 0, 0, 0, time.time()
    train_seconds = 0.0
    while epoch < protocol.max_epochs and bad < protocol.patience:
        batches = feed.memory_batches(splits["train"], tc.batch_size, True, seed * 1000 + epoch * 31, "cpu",
                                      feed_lists(tc, data.fmap))
        train_seconds += train_epoch(model, objective, optimizer, None, batches)[2]
        epoch += 1
        valid_auc = auc(valid_y, _probs(model, splits["valid"], tc.eval_batch_size, scorers[""]))
        if trace is not None:
            trace.append({"epoch": epoch, "valid_auc": valid_auc, "test_auc": auc(
                splits["test"][LABEL].numpy(), _probs(model, splits["test"], tc.eval_batch_size, scorers[""]))})
        if stopper is not None:  # as llmctr.train.ctr.loop: before the snapshot
            stopper.update(model, optimizer, auc(valid_y, _probs(model, splits["valid"], tc.eval_batch_size,
                                                                scorers["teacher_"])), epoch)
        if valid_auc > best_auc:
            best, best_auc, best_epoch, bad = cpu_state(model), valid_auc, epoch, 0
        else:
            bad += 1
    unwrap(model).load_state_dict(best)
    test_y = splits["test"][LABEL].numpy()
    test_probs = _probs(model, splits["test"], tc.eval_batch_size, scorers[""])
    teacher = scorers.get("teacher_")
    teacher_auc = None if teacher is None else auc(test_y, _probs(model, splits["test"], tc.eval_batch_size, teacher))
    result = RunResult(best_auc, auc(test_y, test_probs), test_probs, best_epoch, epoch, time.time() - t0,
                       train_seconds / max(epoch, 1), teacher_auc)
    if instance is not None:
        result.instance_texts = instance.info
    if stopper is not None:
        result.teacher_stop = dict(stopper.state)
    if cold is not None:
        result.test_probs_without_texts = _probs(model, data.splits["test"], tc.eval_batch_size, scorers[""])
        result.cold_text_rows = {s: cold.count(s) for s in SPLITS}
    return result


def _cold_texts(exp: ExperimentConfig, data: Prepared, semantics, model) -> tuple[ColdTexts | None, dict]:
    """The splits with their cold-start text rows, the table installed in ``model`` (llmctr.train.ctr.cold_texts),
    when the experiment reads them (``load_prepared``'s ``raw_columns`` must hold the entity's key and fields)."""
    spec = entity_texts_of(exp, data.fmap, semantics)
    if spec is None:
        return None, data.splits
    cold = ColdTexts.build(spec, data.raw, {s: data.splits[s][spec.key].numpy() for s in SPLITS},
                           default_cache_root())
    cold.install(model)
    return cold, {s: cold.attach(batch, s) for s, batch in data.splits.items()}


def _instance_texts(exp: ExperimentConfig, data: Prepared, model) -> InstanceTexts | None:
    """The instance-text table of ``exp`` (built on first use for its settings and encoder, through the embedding
    cache), installed in ``model``."""
    if not reads_instance_texts(exp):
        return None
    key = json.dumps([dump_config(exp.distill.instance_texts), dump_config(exp.semantics.encoder)], sort_keys=True)
    if key not in data.instance_texts:
        if data.folder is None:
            raise ValueError("instance texts need the prepared folder (load_prepared sets it)")
        frames = {s: pd.read_parquet(data.folder / s, columns=instance_columns(exp)) for s in SPLITS}
        data.instance_texts[key] = InstanceTexts.build(exp, frames, default_cache_root())
    texts = data.instance_texts[key]
    texts.install(model)
    return texts


def _probs(model, split: feed.Batch, batch_size: int, scorer) -> np.ndarray:
    return predict(model, feed.memory_batches(split, batch_size, False, 0, "cpu"), scorer)
