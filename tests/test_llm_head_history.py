"""The LLM head reading the request's own history (``context: history``), calibrated on the rows the router sends
it, and shipping adaptive exit thresholds only where they beat the fixed depths."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from llmctr.data import FeatureMap
from llmctr.data.feature_map import LABEL
from llmctr.data.routing_rule import cold_start_mask, route_mask
from llmctr.models.ctr_model import sigmoid
from llmctr.models.llm_head_config import load_llm_head_config
from llmctr.semantics.encoders import EncoderConfig
from llmctr.semantics.history_context import HistoryContext
from llmctr.train.llm_head.calibration import (
    calibrate_thresholds,
    fixed_auc_at,
    fixed_depth_points,
    fixed_depth_thresholds,
    simulate_exit,
)
from llmctr.train.llm_head.rows import TEXT, student_logits


def _context() -> HistoryContext:
    # 2-d vectors: "a" (the candidate) points along x; "near" close to it, "far" opposite, "mid" at 90 degrees
    ids = ["a", "near", "far", "mid", "near2"]
    vectors = np.array([[1, 0], [0.9, 0.1], [-1, 0], [0, 1], [0.8, 0.3]], dtype=np.float32)
    return HistoryContext(ids, vectors, "history", "movie_id", "history_label")


def test_history_context_picks_the_liked_and_disliked_items_nearest_the_candidate():
    ctx = _context()
    record = {"movie_id": "a", "history": ["mid", "far", "near", "a", "near2", "unknown"],
              "history_label": [1, 0, 1, 1, 0, 1]}
    (row,) = ctx.neighbours([record], k=1)
    assert row == [("near", 1), ("near2", 0)], "the nearest liked and the nearest disliked, never the candidate"
    (row,) = ctx.neighbours([record], k=5)
    assert row == [("near", 1), ("mid", 1), ("unknown", 1), ("near2", 0), ("far", 0)], \
        "by similarity within each label; an item without a vector comes last"
    unseen = {**record, "movie_id": "new"}
    assert ctx.neighbours([unseen], k=2) == [[("mid", 1), ("near", 1), ("far", 0), ("near2", 0)]], \
        "an unseen candidate keeps the most recent items"
    assert ctx.neighbours([{"movie_id": "a"}], k=2) == [[]]
    no_labels = HistoryContext(ctx.item_ids, ctx.vectors, "history", "movie_id", None)
    assert no_labels.neighbours([record], k=2) == [[("near", -1), ("near2", -1)]]


def test_history_context_round_trips_with_the_head(tmp_path):
    ctx = _context()
    assert HistoryContext.load(tmp_path) is None, "no stored context: the head reads a retriever"
    ctx.save(tmp_path)
    loaded = HistoryContext.load(tmp_path)
    record = {"movie_id": "a", "history": ["far", "near", "mid"], "history_label": [0, 1, 1]}
    assert loaded.neighbours([record], 1) == ctx.neighbours([record], 1)
    np.testing.assert_allclose(loaded.vectors, ctx.vectors, atol=1e-3)


def test_calibration_held_out_by_user_shares_no_user_with_the_fit_rows():
    from llmctr.train.llm_head.rows import fit_and_calibration_rows

    rng = np.random.default_rng(0)
    valid = pd.DataFrame({"user_id": rng.integers(0, 40, 1000), "x": np.arange(1000)})
    cfg = load_llm_head_config("synthetic_tiny")
    cfg.train = replace(cfg.train, fit_split="valid", sample=None, valid_sample=200, calibration_groups="user_id")
    fit, calibration, source = fit_and_calibration_rows(cfg, valid.iloc[:0], valid)
    assert not set(fit["user_id"]) & set(calibration["user_id"]), "no user on both sides"
    assert 200 <= len(calibration) < 200 + valid["user_id"].value_counts().max() and len(fit) + len(calibration) == 1000
    assert calibration["x"].is_monotonic_increasing and source == len(fit)
    cfg.train = replace(cfg.train, calibration_groups=None)
    _, by_rows, _ = fit_and_calibration_rows(cfg, valid.iloc[:0], valid)
    assert len(by_rows) == 200 and set(fit_and_calibration_rows(cfg, valid.iloc[:0], valid)[0]["user_id"]) & set(
        by_rows["user_id"]), "a row sample shares users with the fit rows (what the option avoids)"
    cfg.train = replace(cfg.train, calibration_groups="nope")
    with pytest.raises(ValueError, match="calibration_groups"):
        fit_and_calibration_rows(cfg, valid.iloc[:0], valid)


def test_fixed_depths_answer_at_one_head_and_interpolate():
    rng = np.random.default_rng(0)
    probs = rng.random((50, 3))
    for k in range(3):
        _, heads = simulate_exit(probs, fixed_depth_thresholds(3, k))
        assert (heads == k).all()
    y = rng.integers(0, 2, 50)
    fixed = fixed_depth_points(probs, y, [2, 4, 6])
    assert [p.mean_layers for p in fixed] == [2, 4, 6]
    assert fixed_auc_at(fixed, 3.0) == pytest.approx((fixed[0].auc + fixed[1].auc) / 2)


def test_calibration_ships_a_fixed_depth_unless_adaptive_beats_it():
    rng = np.random.default_rng(1)
    n = 3000
    y = rng.integers(0, 2, n)
    score = y + rng.normal(0, 1.0, n)
    p = sigmoid(score)
    same = np.stack([p, p, p], 1)  # every head says the same: depth buys nothing
    cal = calibrate_thresholds(same, y, [2, 4, 6], target_auc_loss=0.001)
    assert not cal.adaptive_beats_fixed and cal.chosen.mean_layers == 2.0
    assert cal.chosen.thresholds == fixed_depth_thresholds(3, 0) and cal.summary()["shipped"] == "fixed depth"
    # head 0 is right and sure on half the rows and guesses on the rest, which the last head gets right:
    # exiting the sure rows early keeps the full AUC at a depth where mixing fixed depths cannot
    easy = rng.random(n) < 0.5
    sign = 2 * y - 1
    full = 0.5 + sign * np.where(easy, 0.49, rng.uniform(0.01, 0.3, n))
    head0 = np.where(easy, full, 0.5 + rng.uniform(-0.05, 0.05, n))
    cal = calibrate_thresholds(np.stack([head0, head0, full], 1), y, [2, 4, 6], target_auc_loss=0.001)
    assert cal.adaptive_beats_fixed and cal.chosen == cal.adaptive and 2.0 < cal.chosen.mean_layers < 6.0
    summary = cal.summary()
    assert summary["shipped"] == "adaptive"
    assert summary["valid_fixed_auc_at_adaptive_depth"] < cal.adaptive.auc
    edge = cal.adaptive.auc - summary["valid_fixed_auc_at_adaptive_depth"]
    tie = calibrate_thresholds(np.stack([head0, head0, full], 1), y, [2, 4, 6], target_auc_loss=0.001,
                               adaptive_margin=edge + 1e-9)
    assert not tie.adaptive_beats_fixed and tie.chosen in tie.fixed, "an edge within the margin is a tie: fixed"


def test_head_reads_the_request_history_and_calibrates_on_routed_rows(ray_local, prepared_synthetic,
                                                                      untrained_student, tiny_bert, tmp_path):
    from llmctr.models.llm_head import EarlyExitHead
    from llmctr.train.llm_head import fit_early_exit

    cfg = load_llm_head_config("synthetic_tiny")
    cfg.encoder = replace(cfg.encoder, model=tiny_bert, max_length=64)
    cfg.history_encoder = EncoderConfig(model=tiny_bert, max_length=32)
    cfg.exit_layers, cfg.student, cfg.context, cfg.neighbours = [1, 3], str(untrained_student), "history", 2
    fmap = FeatureMap.load(prepared_synthetic / "feature_map.json")
    valid = pd.read_parquet(prepared_synthetic / "valid")
    all_probs = sigmoid(student_logits(untrained_student, fmap, valid))
    band = tuple(float(q) for q in np.quantile(all_probs, [0.25, 0.75]))  # the random student's middle half
    cfg.train = replace(cfg.train, sample=400, valid_sample=600, batch_size=64, calibrate_on="routed",
                        routing_band=band)
    result = fit_early_exit(cfg, prepared_synthetic, artifacts=tmp_path)

    # the calibration rows are exactly the sample's rows the router would send to the LLM path
    m = result.metrics
    assert m["calibrate_on"] == "routed" and m["calibration_sample_rows"] == 600
    sample = valid.drop(index=valid.index.difference(valid.sample(n=600, random_state=cfg.train.seed + 1).index))
    probs = sigmoid(student_logits(untrained_student, fmap, sample))
    cold = cold_start_mask({f: sample[f].to_numpy() for f in ("user_id", "item_id")}, ["user_id", "item_id"])
    routed = route_mask(probs, cold, band)
    assert 0 < routed.sum() < 600 and m["valid_rows"] == routed.sum()
    np.testing.assert_array_equal(result.valid[LABEL].to_numpy(), sample[LABEL].to_numpy()[routed])

    # the context is the row's own history: liked / disliked items it rated before, never the candidate
    assert result.retriever is None and "request history" in m["context_source"]
    records = result.valid_records
    with_history = [i for i, r in enumerate(records) if set(r["history"]) - {r["item_id"]}]
    assert with_history and all(" liked: " in result.valid[TEXT][i] or " disliked: " in result.valid[TEXT][i]
                                for i in with_history)
    meta = json.loads((result.artifact / "head.json").read_text())
    assert meta["context"]["kind"] == "history" and "shipped" in meta["metrics"]

    head = EarlyExitHead.load(result.artifact)
    assert head.reads_history
    contexts = head.contexts(records)
    assert head.texts(records, contexts) == list(result.valid[TEXT]), "served texts equal the trained ones"
    assert head.contexts_for(records, None) == contexts, "the Serve deployment renders the same context"
    base = result.valid["base_logit"].to_numpy()
    probs, _, _ = head.score(records, base, contexts, thresholds=[1.0, 1.0])
    np.testing.assert_allclose(probs, result.valid_head_probs[:, -1], atol=1e-4)
