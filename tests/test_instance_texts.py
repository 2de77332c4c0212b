"""ELEC's instance texts (distill.instance: texts): each row's own sentence from its history and candidate, encoded
once; the teacher reads its row's vector, the student never does."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch

from llmctr.data import load_dataset_config
from llmctr.data.feature_map import LABEL
from llmctr.models.distill import INSTANCE_ROW, InstanceSemantics
from llmctr.semantics.instance_texts import InstanceTextRenderer, InstanceTextsConfig


def _ml1m_rows() -> pd.DataFrame:
    return pd.DataFrame({
        "raw__history": [["1", "2", "3", "4", "99"], [], ["3"]],
        "history_label": [[1, 0, 1, 1, 0], [], [0]],
        "raw__movie_id": ["5", "1", "2"],
        "raw__title": ["Heat (1995)", "Toy Story (1995)", "Jumanji (1995)"],
        "raw__genres": ["Action|Crime", "Animation", "Adventure"],
    })


def test_a_row_names_its_most_recent_liked_and_disliked_items_and_describes_its_candidate():
    renderer = InstanceTextRenderer(load_dataset_config("ml1m"), InstanceTextsConfig(liked=2, disliked=1))
    frame = _ml1m_rows()
    names = {**renderer.names([frame]), "3": "Fargo (1996)", "4": "Seven (1995)"}  # "99": a title nowhere
    texts = renderer.texts(frame, names)
    heat = "The movie's title and release year is Heat (1995). The movie's genres are Action, Crime."
    # the candidate first; most recent first: 1 and 3 are the two latest liked (4 is older), 2 the latest disliked,
    # 99 has no name
    assert texts[0] == f"{heat} The user recently liked Toy Story (1995); Fargo (1996) and disliked Jumanji (1995)."
    assert texts[1].startswith("The movie's title") and texts[1].endswith("The user has rated nothing yet.")
    assert texts[2].endswith(". The user recently disliked Fargo (1996).")
    with pytest.raises(ValueError, match="columns"):
        renderer.texts(frame.drop(columns=["history_label"]), names)
    with pytest.raises(ValueError, match="labelled sequence field"):
        InstanceTextRenderer(load_dataset_config("ml1m"), InstanceTextsConfig(history_field="genres"))


def test_the_teacher_reads_its_rows_vector_from_the_installed_table():
    reader = InstanceSemantics(rows_dim=3)
    table = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    with pytest.raises(ValueError, match="width 3"):
        reader.set_rows(torch.zeros(2, 4))
    reader.set_rows(table)
    out = reader({INSTANCE_ROW: torch.tensor([2, 0, 1])})
    assert torch.equal(out, table[[2, 0, 1]]) and reader.output_dim == 3
    assert "rows_table" not in reader.state_dict()  # training only: never saved with the teacher
    with pytest.raises(KeyError, match="in-memory splits"):
        reader({"user_id": torch.tensor([1])})


@pytest.fixture(scope="module")
def instance_elec(prepared_synthetic, tiny_bert, tmp_path_factory):
    """The synthetic ELEC experiment with an instance-text teacher, its tables and its instance texts."""
    from benchmarks.lib.inprocess import load_prepared
    from llmctr.semantics.encoders import EncoderConfig
    from llmctr.semantics.tables import SemanticTables, build_semantic_tables
    from llmctr.train import load_experiment
    from llmctr.train.ctr.instance_texts import InstanceTexts, columns

    root = tmp_path_factory.mktemp("instance_texts")
    exp = load_experiment("synthetic_deepfm_elec")
    exp.distill.instance = "texts"
    exp.semantics.encoder = EncoderConfig(model=tiny_bert, max_length=32)
    folder = build_semantic_tables(prepared_synthetic, load_dataset_config("synthetic"), exp.semantics.encoder,
                                   root / "tables", cache_root=root / "cache", use_ray=False, progress=False)
    frames = {s: pd.read_parquet(prepared_synthetic / s, columns=columns(exp)) for s in ("train", "valid", "test")}
    texts = InstanceTexts.build(exp, frames, root / "cache")
    return exp, load_prepared(prepared_synthetic), SemanticTables.load(folder), texts


def test_every_row_gets_its_own_text_encoded_once(instance_elec):
    _, data, tables, texts = instance_elec
    info = texts.info
    rows = {s: len(b[LABEL]) for s, b in data.splits.items()}
    assert info["rows"] == sum(rows.values()) and 1 < info["distinct_texts"] <= info["rows"]
    assert info["encoded"] == info["distinct_texts"] and "The user " in info["example"]
    assert texts.table.shape == (info["distinct_texts"] + 1, tables.field.shape[1])
    assert all(len(texts.rows[s]) == n and texts.rows[s].min() >= 1 for s, n in rows.items())


def test_the_teachers_injection_layer_moves_only_when_its_rows_have_vectors(instance_elec):
    from llmctr.train.ctr.objective import make_objective

    exp, data, tables, texts = instance_elec
    torch.manual_seed(0)
    pair = make_objective(data.fmap, exp, tables).model
    assert texts.install(pair) == 1
    batch = {k: v[:256] for k, v in texts.attach(data.splits["train"], "train").items()}
    for table, moves in ((texts.table, True), (torch.zeros_like(texts.table), False)):
        pair.instance.set_rows(table)
        pair.zero_grad()
        pair.loss(pair(batch), batch[LABEL].float(), None)["total"].backward()
        grad = pair.inject[-1].weight.grad
        assert bool(grad is not None and grad.abs().sum() > 0) == moves


def test_in_process_run_trains_the_teacher_on_its_rows_texts(instance_elec, monkeypatch, tmp_path):
    from benchmarks.lib import inprocess
    from benchmarks.lib.protocol import Protocol

    exp, data, tables, _ = instance_elec
    monkeypatch.setattr(inprocess, "default_cache_root", lambda: tmp_path / "cache")
    result = inprocess.fit_in_process(exp, data, Protocol(seeds=(1,), max_epochs=1, patience=1), seed=1,
                                      semantics=tables)
    assert result.instance_texts["rows"] == sum(len(b[LABEL]) for b in data.splits.values())
    assert result.teacher_test_auc is not None and 0.0 < result.test_auc < 1.0


def test_in_process_run_can_freeze_the_teacher_at_its_best_epoch(instance_elec, monkeypatch, tmp_path):
    from benchmarks.lib import inprocess
    from benchmarks.lib.protocol import Protocol

    exp, data, tables, _ = instance_elec
    exp = copy.deepcopy(exp)
    exp.distill.teacher_stop, exp.train.lr = True, 0.02
    monkeypatch.setattr(inprocess, "default_cache_root", lambda: tmp_path / "cache")
    result = inprocess.fit_in_process(exp, data, Protocol(seeds=(1,), max_epochs=3, patience=3), seed=1,
                                      semantics=tables)
    stop = result.teacher_stop
    assert 1 <= stop["best_epoch"] <= 3 and 0.5 < stop["best_auc"] <= 1.0
    assert stop["frozen_at"] is None or stop["frozen_at"] == stop["best_epoch"] + 1


@pytest.mark.slow
def test_ray_train_job_builds_the_texts_on_the_driver_and_the_worker_reads_them(ray_local, prepared_synthetic,
                                                                               instance_elec, tmp_path):
    """The platform's job: the driver encodes every row's text and saves the table, the worker installs it and
    attaches the rows; the teacher's injection layer (zero at the start) has learnt from them."""
    from safetensors.torch import load_file

    from llmctr.train import fit

    exp = copy.deepcopy(instance_elec[0])
    exp.train.epochs = 1
    result = fit(exp, prepared_synthetic, artifacts=tmp_path)
    info = result.metrics["instance_texts"]
    assert info["rows"] == instance_elec[3].info["rows"] and info["distinct_texts"] == instance_elec[3].info[
        "distinct_texts"]
    teacher = load_file(str(result.artifact / "teacher.safetensors"))
    last = max(k for k in teacher if k.startswith("inject.") and k.endswith(".weight"))
    assert teacher[last].abs().sum() > 0 and "test_teacher_auc" in result.metrics
