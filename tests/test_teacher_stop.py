"""distill.teacher_stop: the ELEC teacher is frozen at its best validation epoch while the student trains on."""

import pytest
import torch

from llmctr.train.ctr.teacher_stop import TEACHER_GROUP, TeacherStop, teacher_param_groups
from tests.test_distill import _pair


def _step(model, optimizer, seed):
    torch.manual_seed(seed)
    batch = {"user": torch.randint(0, 30, (64,)), "item": torch.randint(0, 200, (64,))}
    model.train()
    terms = model.loss(model(batch), torch.randint(0, 2, (64,)).float(), batch["user"])
    optimizer.zero_grad()
    terms["total"].backward()
    optimizer.step()


def _teacher(model):
    return {k: v.clone() for k, v in model.state_dict().items() if k.startswith(("teacher.", "inject."))}


def _student(model):
    return {k: v.clone() for k, v in model.state_dict().items() if k.startswith("student.")}


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_param_groups_split_the_gain_network_from_the_student():
    model = _pair(student_units=(32, 8))  # with a projection: it belongs to the student's side
    groups = teacher_param_groups(model)
    teacher, rest = ({id(p) for p in g["params"]} for g in groups)
    assert groups[0]["name"] == TEACHER_GROUP and not teacher & rest
    assert teacher == {id(p) for m in (model.teacher, model.inject) for p in m.parameters()}
    assert id(model.projection.weight) in rest and len(teacher | rest) == len(list(model.parameters()))


def test_the_teacher_is_restored_to_its_best_epoch_and_frozen_while_the_student_trains(tmp_path):
    torch.manual_seed(0)
    model = _pair()
    optimizer = torch.optim.Adam(teacher_param_groups(model), lr=1e-2)
    stop = TeacherStop().bind(loop := {})
    _step(model, optimizer, 1)
    stop.update(model, optimizer, 0.70, epoch=1)  # best so far: kept
    best = _teacher(model)
    _step(model, optimizer, 2)
    stop.update(model, optimizer, 0.72, epoch=2)  # better: kept instead
    best = _teacher(model)
    _step(model, optimizer, 3)
    assert not _same(best, _teacher(model)) and not stop.frozen
    stop.update(model, optimizer, 0.71, epoch=3)  # worse: epoch 2's teacher back, frozen
    assert stop.frozen and loop["teacher_stop"] == {"best_auc": 0.72, "best_epoch": 2, "frozen_at": 3}
    assert _same(best, _teacher(model))
    student = _student(model)
    for seed in (4, 5):
        _step(model, optimizer, seed)
    assert _same(best, _teacher(model)), "a frozen teacher must not move (Adam's momentum included)"
    assert not _same(student, _student(model)), "the student trains on"
    assert model.student.training and not model.teacher.training and not model.inject.training
    stop.update(model, optimizer, 0.99, epoch=6)  # frozen for good
    assert loop["teacher_stop"]["best_epoch"] == 2

    # A resumed run: the best weights come back from the checkpoint folder and the freeze is re-applied.
    stop.write(tmp_path)
    again = _pair()
    opt2 = torch.optim.Adam(teacher_param_groups(again), lr=1e-2)
    resumed = TeacherStop()
    resumed.read(tmp_path)
    resumed.bind(dict(loop)).apply(again, opt2)
    assert _same(best, resumed.best) and resumed.frozen
    assert [g["lr"] for g in opt2.param_groups] == [0.0, 1e-2] and not again.train().teacher.training


def test_freezing_needs_the_teacher_group():
    model = _pair()
    stop = TeacherStop().bind({"teacher_stop": {"best_auc": 0.7, "best_epoch": 1, "frozen_at": 2}})
    with pytest.raises(ValueError, match="teacher_param_groups"):
        stop.apply(model, torch.optim.Adam(model.parameters()))
