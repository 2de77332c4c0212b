"""ELEC on Ray Train: the joint run exports the student alone (served without the LLM) and keeps its teacher."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from llmctr.config import ConfigError, parse_config
from llmctr.data import FeatureMap
from llmctr.data.feature_map import LABEL
from llmctr.models.artifact import load_artifact
from llmctr.models.distill import build_pseudo_siamese
from llmctr.models.layers import FieldInput
from llmctr.models.sparse import SparseConfig
from llmctr.semantics.tables import SemanticTables
from llmctr.train import fit, load_experiment
from llmctr.train.ctr.config import ExperimentConfig
from llmctr.train.ctr.objective import split_state
from llmctr.train.metrics import auc


def test_distill_needs_semantics_and_validates_weights():
    base = {"name": "x", "dataset": "synthetic", "model": {"name": "deepfm"}, "distill": {}}
    with pytest.raises(ConfigError, match="semantics"):
        parse_config(ExperimentConfig, base)
    with pytest.raises(ConfigError, match="alpha"):
        parse_config(ExperimentConfig, {**base, "semantics": {}, "distill": {"alpha": -1}})


def test_split_state_separates_student_and_gain_network():
    exp = load_experiment("synthetic_deepfm_elec")
    state = {"student.a": torch.ones(1), "teacher.b": torch.zeros(1), "inject.c": torch.zeros(1)}
    served, teacher = split_state(exp, state)
    assert set(served) == {"a"} and set(teacher) == {"teacher.b", "inject.c"}
    assert split_state(load_experiment("synthetic_deepfm"), state) == (state, None)


@pytest.fixture(scope="module")
def distilled(ray_local, prepared_synthetic, tmp_path_factory):
    exp = load_experiment("synthetic_deepfm_elec")
    exp.train.epochs = 2
    exp.train.num_workers = 2  # DDP over the teacher/student pair
    return fit(exp, prepared_synthetic, artifacts=tmp_path_factory.mktemp("artifacts")), exp


def _test_split(prepared, fmap):
    frame = pd.read_parquet(prepared / "test")
    batch = {f.name: torch.from_numpy(np.stack(frame[f.name].to_numpy()) if frame[f.name].dtype == object
                                      else frame[f.name].to_numpy().copy()) for f in fmap.input_fields}
    return batch, frame[LABEL].to_numpy()


def test_joint_run_exports_the_student_and_keeps_the_teacher(distilled, prepared_synthetic):
    result, exp = distilled
    m = result.metrics
    assert {"test_auc", "test_teacher_auc", "valid_teacher_auc"} <= set(m)
    assert m["test_auc"] > 0.6 and m["test_teacher_auc"] > 0.6
    assert all({"train_clid", "train_rep_mse", "train_teacher_bce", "valid_teacher_auc"} <= set(h)
               for h in result.history)

    student, fmap, meta = load_artifact(result.artifact)
    assert meta["model"]["name"] == "deepfm" and not any(k.startswith(("teacher", "inject")) for k in
                                                         student.state_dict())
    info = json.loads((result.artifact / "metrics.json").read_text())["distillation"]
    assert info["teacher_model"] == "deepfm" and info["config"]["alpha"] == exp.distill.alpha

    # The saved teacher + student, put back into the pair with the semantic tables, reproduce the metrics.
    tables = SemanticTables.load(info["semantic_tables"])
    pair = build_pseudo_siamese(FieldInput.from_feature_map(fmap), exp.model, exp.distill, tables)
    teacher_state = load_file(str(result.artifact / "teacher.safetensors"))
    pair.load_state_dict({**teacher_state, **{f"student.{k}": v for k, v in student.state_dict().items()}})
    batch, labels = _test_split(prepared_synthetic, FeatureMap.load(prepared_synthetic / "feature_map.json"))
    with torch.inference_mode():
        out = pair.eval()(batch)
        assert torch.allclose(out.student.logit, student(batch).logit, atol=1e-5)
        assert auc(labels, torch.sigmoid(out.teacher.logit).numpy()) == pytest.approx(m["test_teacher_auc"],
                                                                                      abs=1e-6)
    assert json.loads((result.artifact / "teacher.json").read_text())["metrics"]["test_teacher_auc"] == \
        pytest.approx(m["test_teacher_auc"])


@pytest.mark.slow  # 30 s; masks and meter: tests/test_sparse.py, distillation through Ray Train: the joint run above
def test_dynamic_sparse_student_is_distilled_and_metered(ray_local, prepared_synthetic, tmp_path):
    exp = load_experiment("synthetic_deepfm_elec")
    exp.train.epochs = 1
    exp.model.dynamic_sparse = SparseConfig(mass=0.8, train=True)
    m = fit(exp, prepared_synthetic, artifacts=tmp_path).metrics
    assert 0.0 < m["test_active_fraction"] < 0.8 and 0.0 < m["test_mac_fraction"] < 1.0
    assert m["test_auc"] > 0.6


@pytest.mark.slow
def test_teacher_stop_freezes_the_teacher_at_its_best_validation_epoch(ray_local, prepared_synthetic, tmp_path):
    """distill.teacher_stop through Ray Train with 2 workers (DDP: the frozen teacher's parameters still get
    gradients, at learning rate 0)."""
    exp = load_experiment("synthetic_deepfm_elec")
    exp.train.epochs, exp.train.num_workers, exp.train.early_stopping_patience = 4, 2, 4
    exp.train.lr = 0.02  # a teacher that over-fits within the run
    exp.distill.teacher_stop = True
    result = fit(exp, prepared_synthetic, artifacts=tmp_path)
    m, teacher_aucs = result.metrics, [h["valid_teacher_auc"] for h in result.history]
    frozen_at, best = m["teacher_frozen_at"], m["teacher_best_epoch"]
    seen = teacher_aucs[:frozen_at] if frozen_at else teacher_aucs
    assert best == 1 + max(range(len(seen)), key=seen.__getitem__)
    if frozen_at:  # the epoch after the best that did not improve; from then on the teacher scores as at its best
        assert frozen_at == best + 1 and teacher_aucs[frozen_at - 1] <= teacher_aucs[best - 1]
        assert teacher_aucs[frozen_at:] == pytest.approx([teacher_aucs[best - 1]] * len(teacher_aucs[frozen_at:]),
                                                         abs=1e-9)
