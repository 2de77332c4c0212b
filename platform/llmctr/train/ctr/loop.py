"""The per-worker training loop run by Ray Train: fit, validate each epoch, early-stop on validation AUC,
checkpoint every epoch (resumable after a worker dies), and finally score the test split with the best
weights. All ranks evaluate the full validation split, so they take identical early-stopping decisions.
What is optimised, evaluated and exported (a plain model, or ELEC's teacher and student) is the objective's
business (``objective.py``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from typing import Any

import numpy as np
import ray.train
import ray.train.torch
import torch

from llmctr.config import parse_config
from llmctr.data.feature_map import LABEL, FeatureMap
from llmctr.models.artifact import cpu_state, unwrap
from llmctr.models.sparse import SparsityMeter, sparse_masks
from llmctr.train import feed
from llmctr.train.checkpoint import best_epoch_metrics, new_loop_state, record_epoch
from llmctr.train.ctr.cold_texts import ColdTexts
from llmctr.train.ctr.config import ExperimentConfig
from llmctr.train.ctr.instance_texts import InstanceTexts
from llmctr.train.ctr.objective import BatchScorer, PlainObjective, make_objective
from llmctr.train.ctr.precision import autocast, resolve_precision
from llmctr.train.job import report, restore, start_worker
from llmctr.train.metrics import evaluate_predictions

log = logging.getLogger(__name__)


@torch.inference_mode()
def predict(model: torch.nn.Module, batches, scorer: BatchScorer | None = None) -> np.ndarray:
    """Click probabilities over an iterable of batches, in order (``scorer``: batch → logits; default the
    model's own output)."""
    model.eval()
    scorer = scorer or (lambda b: model(b).logit)
    return np.concatenate([torch.sigmoid(scorer(b).float()).cpu().numpy() for b in batches])


def evaluate(model, objective: PlainObjective, data: feed.Batch, batch_size: int, device, group_by: str | None,
             prefix: str, meter: bool = False) -> dict:
    """Metrics of every scorer of the objective on an in-memory split (``valid_auc``, ``valid_teacher_auc``, ...);
    batches keep the split's order, so labels and groups line up. ``meter``: also the served model's share of
    active hidden units and multiply-adds when it is dynamically sparse."""
    groups = data[group_by].numpy() if group_by else None
    served = objective.served(model)
    metrics = {}
    for infix, scorer in objective.scorers(model).items():
        batches = feed.memory_batches(data, batch_size, False, 0, device)
        if infix == "" and meter and sparse_masks(served):
            with SparsityMeter(served) as m:
                probs = predict(model, batches, scorer)
            metrics.update({f"{prefix}active_fraction": m.active_fraction, f"{prefix}mac_fraction": m.mac_fraction})
        else:
            probs = predict(model, batches, scorer)
        metrics.update(evaluate_predictions(data[LABEL].numpy(), probs, groups, prefix + infix))
    return metrics


def train_epoch(model, objective: PlainObjective, optimizer, scheduler, batches, forward_context=None
                ) -> tuple[float, int, float, dict]:
    """One pass; returns (mean loss, samples, seconds, mean of each named loss term). ``forward_context``: a
    factory of the context each forward pass runs in (mixed precision: ``precision.autocast``)."""
    model.train()
    total, count, t0 = 0.0, 0, time.perf_counter()
    parts: dict[str, float] = {}
    forward_context = forward_context or contextlib.nullcontext
    for batch in batches:
        with forward_context():
            loss, terms = objective.loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        n = len(batch[LABEL])
        total += loss.item() * n
        for name, value in terms.items():
            parts[name] = parts.get(name, 0.0) + value.item() * n
        count += n
    seconds = time.perf_counter() - t0
    return total / max(count, 1), count, seconds, {k: v / max(count, 1) for k, v in parts.items()}


def train_loop_per_worker(config: dict[str, Any]) -> None:
    exp = parse_config(ExperimentConfig, config["experiment"], "experiment")
    tc = exp.train
    rank, world, device = start_worker(tc.seed, config["threads"])
    fmap = FeatureMap.load(config["feature_map"])
    names = fmap.input_columns

    objective = make_objective(fmap, exp, _load_semantics(config.get("semantics_dir")))
    model = objective.model
    row_texts = [t for t in (ColdTexts.load(config["cold_texts"]) if config.get("cold_texts") else None,
                             InstanceTexts.load(config["instance_texts"]) if config.get("instance_texts") else None)
                 if t is not None]
    for texts in row_texts:
        texts.install(model)
    optimizer = torch.optim.Adam(objective.param_groups(), lr=tc.lr, weight_decay=tc.weight_decay)
    stopper = objective.teacher_stop()  # distill.teacher_stop (else None)
    best, state = restore(model, optimizer, new_loop_state(), rank, read=stopper and stopper.read)
    if stopper is not None:
        stopper.bind(state).apply(model, optimizer)
    model = ray.train.torch.prepare_model(model) if world > 1 else model.to(device)

    splits, use_memory = config["splits"], config["memory"]
    train_shard = None if use_memory else ray.train.get_dataset_shard("train")
    train_data = feed.read_split(splits["train"], names, rank, world) if use_memory else None
    lists = feed_lists(tc, fmap, use_memory)
    valid = feed.read_split(splits["valid"], names)
    for texts in row_texts:
        train_data = None if train_data is None else texts.attach(train_data, "train", rank, world)
        valid = texts.attach(valid, "valid")
    steps_per_epoch = math.ceil(config["train_rows"] / world / tc.batch_size)
    precision = resolve_precision(tc.precision, device)
    forward_context = functools.partial(autocast, precision, device)
    scheduler = None
    if tc.lr_schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=tc.epochs * steps_per_epoch)
        for _ in range(state["epoch"] * steps_per_epoch):
            scheduler.step()

    while state["epoch"] < tc.epochs and state["bad_epochs"] < tc.early_stopping_patience:
        epoch = state["epoch"]
        seed = tc.seed * 1000 + epoch * 31 + rank
        batches = (feed.memory_batches(train_data, tc.batch_size, True, seed, device, lists) if use_memory
                   else feed.stream_batches(train_shard, names, tc.batch_size, True, seed, device))
        bar = epoch_bar(batches, config.get("progress") and rank == 0, f"epoch {epoch + 1}/{tc.epochs}",
                        steps_per_epoch)
        loss, count, seconds, terms = train_epoch(model, objective, optimizer, scheduler, bar, forward_context)
        if bar is not batches:
            bar.close()
        metrics = evaluate(model, objective, valid, tc.eval_batch_size, device, fmap.group_by, "valid_")
        metrics.update(epoch=epoch + 1, train_loss=loss, samples_per_s=count * world / seconds, precision=precision,
                       epoch_seconds=seconds, **{f"train_{k}": v for k, v in terms.items()})
        if stopper is not None:  # before the snapshot: a best student epoch keeps the teacher it distilled from
            stopper.update(model, optimizer, metrics["valid_teacher_auc"], epoch + 1)
        best = record_epoch(state, metrics, metrics["valid_auc"], model, best)
        if rank == 0:
            log.info("epoch %d/%d: train loss %.4f, valid AUC %.4f, logloss %.4f, %.0f samples/s",
                     epoch + 1, tc.epochs, loss, metrics["valid_auc"], metrics["valid_logloss"],
                     metrics["samples_per_s"])
        report(rank, metrics, cpu_state(model), best, optimizer, state, write=stopper and stopper.write)

    unwrap(model).load_state_dict(best)
    test = feed.read_split(splits["test"], names)
    for texts in row_texts:
        test = texts.attach(test, "test")
    final = evaluate(model, objective, test, tc.eval_batch_size, device, fmap.group_by, "test_", meter=True)
    final.update(best_epoch_metrics(state))  # the best epoch's valid_ metrics, for every scorer
    final.update(best_epoch=state["best_epoch"], epochs_run=state["epoch"], final=True)
    if stopper is not None:  # 0: the teacher never stopped improving
        final.update(teacher_best_epoch=stopper.state["best_epoch"], teacher_frozen_at=stopper.state["frozen_at"] or 0)
    report(rank, final, cpu_state(model), best, optimizer, state)


def epoch_bar(batches, show: bool, desc: str, steps: int):
    """``batches`` counted by a bar that Ray draws on the driver's terminal (``show``: the driver is on one and this
    is the first worker); else ``batches`` itself."""
    if not show:
        return batches
    from ray.experimental.tqdm_ray import tqdm

    return tqdm(batches, desc=desc, total=steps, unit="batch")


def feed_lists(tc, fmap: FeatureMap, use_memory: bool = True) -> tuple[str, int] | None:
    """``memory_batches``' ``lists`` for ``train.list_size`` (None without it), or a ValueError saying why not."""
    if tc.list_size is None:
        return None
    if not use_memory:
        raise ValueError("train.list_size packs lists in the memory feed; this run streams its shard "
                         "(set train.feed: memory)")
    if not fmap.group_by or fmap.group_by not in fmap.input_columns:
        raise ValueError(f"train.list_size needs the dataset's group_by as an input column (group_by: "
                         f"{fmap.group_by!r})")
    return fmap.group_by, tc.list_size


def _load_semantics(folder: str | None):
    """LLaCTR's semantic tables, built on the driver before training (None for a plain experiment)."""
    if not folder:
        return None
    from llmctr.semantics.tables import SemanticTables

    return SemanticTables.load(folder)
