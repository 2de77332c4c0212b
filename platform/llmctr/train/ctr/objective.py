"""What a training run optimises, evaluates and exports. The loop (``loop.py``) is the same for both kinds:

- ``PlainObjective``: one ``CTRModel`` and its BCE (+ LLaCTR's aux loss, + embedding L2);
- ``DistillObjective``: ELEC's teacher and student side by side (``PseudoSiamese``) and their joint loss. The
  student is what gets evaluated as ``valid_auc`` / ``test_auc`` (early stopping, Tune) and exported; the teacher
  is evaluated too (``valid_teacher_auc``, ...) and saved beside the student, but never served.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from llmctr.data.feature_map import LABEL, FeatureMap
from llmctr.models.artifact import build_model, llactr_inputs, unwrap
from llmctr.models.distill import build_pseudo_siamese, teacher_config
from llmctr.models.layers import FieldInput
from llmctr.train.ctr.config import ExperimentConfig
from llmctr.train.ctr.teacher_stop import TeacherStop, teacher_param_groups

BatchScorer = Callable[[dict[str, torch.Tensor]], torch.Tensor]


class PlainObjective:
    def __init__(self, fmap: FeatureMap, exp: ExperimentConfig, semantics: Any = None):
        self.model: nn.Module = build_model(fmap, exp.model, semantics=semantics)
        self.embedding_l2 = exp.train.embedding_l2

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss to minimise and its named parts (for the history); ``model`` may be DDP-wrapped."""
        out = model(batch)
        loss = F.binary_cross_entropy_with_logits(out.logit, batch[LABEL])
        if out.aux_loss is not None:
            loss = loss + out.aux_loss
        if self.embedding_l2 > 0:
            loss = loss + self.embedding_l2 * unwrap(model).embedding_l2()
        return loss, {}

    def scorers(self, model: nn.Module) -> dict[str, BatchScorer]:
        """Metric-name infix → logits of a batch; "" is the model that is served."""
        inner = unwrap(model)
        return {"": lambda batch: inner(batch).logit}

    def served(self, model: nn.Module) -> nn.Module:
        return unwrap(model)

    def param_groups(self) -> list:
        """What the optimizer is built over."""
        return list(self.model.parameters())

    def teacher_stop(self) -> TeacherStop | None:
        """The switch that freezes an ELEC teacher at its best validation epoch (``distill.teacher_stop``)."""
        return None


class DistillObjective(PlainObjective):
    def __init__(self, fmap: FeatureMap, exp: ExperimentConfig, semantics: Any):
        if semantics is None:
            raise ValueError(f"experiment {exp.name!r} distils: it needs a 'semantics' section (the LLM encoder of "
                             "the teacher's instance vectors)")
        fields = FieldInput.from_feature_map(fmap)
        config = exp.distill
        plugins = llactr_inputs(fields, exp.model, semantics)
        llactr_inputs(fields, teacher_config(exp.model, config), semantics)  # sets the teacher's semantic_dim
        self.model = build_pseudo_siamese(fields, exp.model, config, semantics, plugins)
        self.embedding_l2 = exp.train.embedding_l2
        names = {f.name for f in fields}
        self.groups = fmap.group_by if config.lists == "group" and fmap.group_by in names else None
        self.stop = config.teacher_stop

    def loss(self, model, batch):
        inner = unwrap(model)
        terms = inner.loss(model(batch), batch[LABEL], batch[self.groups] if self.groups else None)
        loss = terms["total"]
        if self.embedding_l2 > 0:
            loss = loss + self.embedding_l2 * (inner.teacher.embedding_l2() + inner.student.embedding_l2())
        return loss, {k: v for k, v in terms.items() if k != "total"}

    def scorers(self, model):
        inner = unwrap(model)
        return {"": lambda batch: inner.student(batch).logit,
                "teacher_": lambda batch: inner.teacher_forward(batch).logit}

    def served(self, model):
        return unwrap(model).student

    def param_groups(self):
        return teacher_param_groups(self.model) if self.stop else super().param_groups()

    def teacher_stop(self):
        return TeacherStop() if self.stop else None


def split_state(exp: ExperimentConfig, state: dict[str, torch.Tensor]
                ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """A trained objective's state → (the served model's weights, the teacher's or None). The teacher's are the
    gain network's: its backbone (``teacher.``), injection MLP (``inject.``) and the student-side projection."""
    if exp.distill is None:
        return state, None
    served = {k[len("student."):]: v for k, v in state.items() if k.startswith("student.")}
    return served, {k: v for k, v in state.items() if not k.startswith("student.")}


def make_objective(fmap: FeatureMap, exp: ExperimentConfig, semantics: Any = None) -> PlainObjective:
    return (DistillObjective if exp.distill is not None else PlainObjective)(fmap, exp, semantics)
