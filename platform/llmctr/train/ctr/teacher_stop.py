"""``distill.teacher_stop``: the ELEC teacher stops training at its best validation epoch.

In joint training the student distils from the teacher of the same step. A teacher that keeps training past its
best validation epoch fits the training rows ever more closely, and the student is then pulled towards those
over-fitted scores. With ``teacher_stop``, the teacher's validation AUC is read after every epoch; the first epoch
that does not improve it restores the teacher's best weights and freezes them for the rest of the run: its optimizer
group's learning rate becomes 0 (its gradients are still computed, so a DDP-wrapped model sees every parameter used)
and it runs in eval mode (no dropout of its inputs), while the student goes on with its BCE and the distillation
terms against that fixed teacher. Early stopping still follows the student's validation AUC.

The teacher's best weights and the switch's state travel in the training checkpoint, so a resumed run freezes the
same weights.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from llmctr.models.artifact import unwrap

log = logging.getLogger(__name__)

#: the optimizer group holding the teacher's parameters (``teacher_param_groups``)
TEACHER_GROUP = "teacher"
BEST_FILE = "teacher_best.safetensors"


def teacher_param_groups(model: torch.nn.Module) -> list[dict[str, Any]]:
    """A PseudoSiamese's parameters in two optimizer groups: the gain network (teacher backbone and injection MLP)
    named ``teacher``, and the rest (student, projection). Same hyper-parameters: Adam over these two groups makes
    the same steps as over one."""
    teacher = [p for n, p in model.named_parameters() if _is_teacher(n)]
    rest = [p for n, p in model.named_parameters() if not _is_teacher(n)]
    return [{"params": teacher, "name": TEACHER_GROUP}, {"params": rest, "name": "student"}]


def _is_teacher(name: str) -> bool:
    return name.startswith(("teacher.", "inject."))


def _teacher_state(inner: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in inner.state_dict().items() if _is_teacher(k)}


class TeacherStop:
    """Tracks the teacher's validation AUC (``update`` after each epoch) and freezes it at its best epoch."""

    def __init__(self):
        #: the loop state's ``teacher_stop`` entry (JSON: saved with every checkpoint; ``bind``)
        self.state: dict[str, Any] = {}
        self.best: dict[str, torch.Tensor] | None = None

    def bind(self, loop_state: dict[str, Any]) -> TeacherStop:
        """Keep the switch's state in ``loop_state`` (a new run's, or the one restored from a checkpoint)."""
        self.state = loop_state.setdefault("teacher_stop", {"best_auc": -math.inf, "best_epoch": 0,
                                                            "frozen_at": None})
        return self

    @property
    def frozen(self) -> bool:
        return self.state.get("frozen_at") is not None

    def update(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, teacher_auc: float, epoch: int
               ) -> None:
        """After epoch ``epoch``: keep the teacher's weights when ``teacher_auc`` (validation) is its best so far,
        else restore the best ones and freeze them."""
        if self.frozen:
            return
        inner = unwrap(model)
        if teacher_auc > self.state["best_auc"]:
            self.state.update(best_auc=float(teacher_auc), best_epoch=epoch)
            self.best = _teacher_state(inner)
            return
        if self.best is not None:
            inner.load_state_dict(self.best, strict=False)
        self.state["frozen_at"] = epoch
        self.apply(model, optimizer)
        log.info("teacher frozen after epoch %d at its best epoch %d (valid AUC %.4f)", epoch,
                 self.state["best_epoch"], self.state["best_auc"])

    def apply(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """A frozen teacher's learning rate 0 and eval mode (also after a resume)."""
        if not self.frozen:
            return
        groups = [g for g in optimizer.param_groups if g.get("name") == TEACHER_GROUP]
        if not groups:
            raise ValueError("distill.teacher_stop needs the optimizer built over teacher_param_groups(model)")
        for g in groups:
            g["lr"] = 0.0
        unwrap(model).freeze_teacher()

    def write(self, folder: Path) -> None:
        """The teacher's best weights beside a checkpoint (its switch's state is in the loop state)."""
        if self.best is not None:
            save_file(self.best, str(folder / BEST_FILE))

    def read(self, folder: Path) -> None:
        path = folder / BEST_FILE
        self.best = load_file(str(path)) if path.is_file() else None
