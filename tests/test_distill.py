"""ELEC distillation: the losses on hand-checkable inputs, gradient isolation of the teacher, and a joint run on
planted data where the distilled student beats the student trained alone."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from llmctr.models import CTRModel, FieldInput, ModelConfig
from llmctr.models.distill import DistillConfig, InstanceSemantics, PseudoSiamese, binary_kl, clid_loss, listwise_kl
from llmctr.train.metrics import auc


def test_binary_kl_is_zero_iff_probabilities_agree():
    t = torch.tensor([-2.0, 0.0, 3.0])
    assert binary_kl(t.clone(), t).item() == pytest.approx(0.0, abs=1e-7)
    s = torch.tensor([0.0, 0.0, 0.0])
    p = torch.sigmoid(t)
    expected = (p * (p / 0.5).log() + (1 - p) * ((1 - p) / 0.5).log()).mean()
    assert binary_kl(s, t).item() == pytest.approx(expected.item(), rel=1e-5)


def test_listwise_kl_by_hand_and_shift_invariance():
    t = torch.tensor([1.0, 2.0, 0.5, 0.0, 5.0])
    s = torch.tensor([2.0, 1.0, 0.5, 1.0, -3.0])
    groups = torch.tensor([7, 7, 9, 9, 4])  # group 4 has one sample: skipped

    def kl(a, b):  # KL(softmax(a) || softmax(b))
        pa, pb = a.softmax(0), b.softmax(0)
        return (pa * (pa / pb).log()).sum()

    expected = (kl(t[:2], s[:2]) + kl(t[2:4], s[2:4])) / 2
    assert listwise_kl(s, t, groups, tau=1.0).item() == pytest.approx(expected.item(), rel=1e-5)
    assert listwise_kl(s, t, None, tau=2.0).item() == pytest.approx(kl(t / 2, s / 2).item(), rel=1e-5)
    shifted = t + torch.tensor([3.0, 3.0, -1.0, -1.0, 8.0])  # a constant per list: same ranking within lists
    assert listwise_kl(shifted, t, groups, tau=0.5).item() == pytest.approx(0.0, abs=1e-6)
    assert binary_kl(shifted, t).item() > 0.1, "the calibration term sees what the listwise term cannot"


def test_clid_is_zero_for_equal_scores_and_never_moves_the_teacher():
    cfg = DistillConfig(tau=0.7)
    t = torch.randn(16, requires_grad=True)
    groups = torch.randint(0, 4, (16,))
    assert clid_loss(t.detach().clone(), t, groups, cfg).item() == pytest.approx(0.0, abs=1e-6)
    s = torch.randn(16, requires_grad=True)
    clid_loss(s, t, groups, cfg).backward()
    assert t.grad is None and s.grad.abs().sum() > 0


FIELDS = [FieldInput("user", "categorical", 30), FieldInput("item", "categorical", 200)]


def _pair(alpha=1.0, beta=1.0, item_vectors=None, student_units=(32, 16)):
    cfg = DistillConfig(alpha=alpha, beta=beta, tau=1.0, injection_units=(32, 16))
    teacher = CTRModel(FIELDS, ModelConfig(name="deepfm", embedding_dim=8, params={"hidden_units": [32, 16]}),
                       extra_dim=16)
    student = CTRModel(FIELDS, ModelConfig(name="deepfm", embedding_dim=8,
                                           params={"hidden_units": list(student_units)}))
    vectors = item_vectors if item_vectors is not None else torch.randn(200, 12)
    return PseudoSiamese(teacher, student, InstanceSemantics(entities={"item": vectors}), cfg)


def test_distillation_terms_train_the_student_only():
    torch.manual_seed(0)
    model = _pair(student_units=(32, 8))  # representation widths differ: a projection is learnt
    batch = {"user": torch.randint(0, 30, (64,)), "item": torch.randint(0, 200, (64,))}
    out = model(batch)
    assert out.teacher.logit.shape == out.student.logit.shape == (64,)
    terms = model.loss(out, torch.randint(0, 2, (64,)).float(), batch["user"])
    assert set(terms) == {"teacher_bce", "student_bce", "clid", "rep_mse", "total"}
    (terms["clid"] + terms["rep_mse"]).backward()
    assert all(p.grad is None for p in model.teacher.parameters()), "distillation must not move the teacher"
    assert all(p.grad is None for p in model.inject.parameters())
    assert model.student.embedding.table.weight.grad.abs().sum() > 0
    assert model.projection.weight.grad.abs().sum() > 0
    assert "table_0" not in model.state_dict(), "semantic tables are training-only buffers"
    off = _pair(alpha=0.0, beta=0.0)
    assert set(off.loss(off(batch), torch.ones(64), None)) == {"teacher_bce", "student_bce", "total"}


def test_instance_semantics_falls_back_to_the_mean_of_feature_vectors():
    user, item = torch.randn(30, 6), torch.randn(200, 6)
    inst = InstanceSemantics(features={"user": user, "item": item})
    batch = {"user": torch.tensor([3, 4]), "item": torch.tensor([5, 6])}
    assert torch.allclose(inst(batch), (user[[3, 4]] + item[[5, 6]]) / 2)
    with pytest.raises(ValueError, match="needs entity or feature"):
        InstanceSemantics()


def _planted(n, seed):
    """Each item has a hidden quality (encoded, with noise, in its semantic vector); clicks depend on it.
    With few samples per item, the student alone must learn 200 item biases from noisy labels."""
    g = np.random.default_rng(seed)
    quality = np.random.default_rng(0).normal(size=200)
    users, items = g.integers(0, 30, n), g.integers(0, 200, n)
    p = 1 / (1 + np.exp(-(1.5 * quality[items])))
    labels = (g.random(n) < p).astype(np.float32)
    return {"user": torch.from_numpy(users), "item": torch.from_numpy(items)}, torch.from_numpy(labels), quality


def _fit(model, step_loss, batch, labels, epochs=5, lr=1e-2):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        for idx in torch.randperm(len(labels), generator=torch.Generator().manual_seed(1)).split(256):
            sub = {k: v[idx] for k, v in batch.items()}
            loss = step_loss(sub, labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()


def test_distilled_student_beats_the_student_alone_on_planted_data():
    train, y_train, quality = _planted(1200, seed=1)
    test, y_test, _ = _planted(4000, seed=2)
    sem = torch.from_numpy(np.stack([quality, np.random.default_rng(3).normal(size=200)], 1)).float()
    sem = torch.cat([sem, 0.1 * torch.randn(200, 6)], 1)

    torch.manual_seed(0)
    alone = _pair(item_vectors=sem).student
    _fit(alone, lambda b, y: F.binary_cross_entropy_with_logits(alone(b).logit, y), train, y_train)
    torch.manual_seed(0)
    joint = _pair(alpha=1.0, beta=1.0, item_vectors=sem)
    _fit(joint, lambda b, y: joint.loss(joint(b), y, b["user"])["total"], train, y_train)

    with torch.no_grad():
        auc_alone = auc(y_test.numpy(), torch.sigmoid(alone.eval()(test).logit).numpy())
        out = joint.eval()(test)
        auc_student = auc(y_test.numpy(), torch.sigmoid(out.student.logit).numpy())
        auc_teacher = auc(y_test.numpy(), torch.sigmoid(out.teacher.logit).numpy())
    # Measured over 3 data/init seeds: the distilled student leads by 0.02-0.03 AUC (Bayes-optimal: 0.81).
    assert auc_student > auc_alone + 0.01, (auc_student, auc_alone, auc_teacher)
    assert not math.isnan(auc_teacher)
