"""ELEC-style teacher/student distillation (arXiv 2509.07594): a *gain network* (teacher: a zoo backbone whose
input also carries the sample's LLM representation, passed through an MLP and concatenated) and a *vanilla
network* (student: the same backbone on tabular features only), trained jointly ("pseudo-siamese"):

    L = BCE(teacher) + BCE(student) + beta * CLID(student || teacher) + alpha * MSE(P(rep_student), rep_teacher)

CLID (calibrated listwise distillation) = a pointwise calibration term (binary KL between the teacher's and the
student's click probabilities) + a listwise term (KL between the softmax over a list's teacher scores and the
softmax over its student scores, temperature tau; a list is one user's impressions in the batch, or the whole
batch). The teacher is detached in every distillation term: they train the student only. The served student
never calls the LLM; its cost is its backbone's.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from pydantic import Field
from pydantic.dataclasses import dataclass
from torch import nn

from llmctr.config import STRICT
from llmctr.models.ctr_model import CTRModel, CTROutput, ModelConfig, history_inputs, init_dense_xavier
from llmctr.models.layers import MLP
from llmctr.semantics.instance_texts import InstanceTextsConfig

#: the batch column of each row's index into the instance-text table (``distill.instance: texts``)
INSTANCE_ROW = "__instance_row"


@dataclass(config=STRICT)
class DistillConfig:
    """An experiment's ``distill:`` section: the joint loss's weights (0 switches a term off: the ablations), the
    teacher, and where the teacher's LLM representation of a sample comes from."""

    alpha: float = Field(1.0, ge=0)  # representation MSE
    beta: float = Field(1.0, ge=0)  # CLID
    tau: float = Field(1.0, gt=0)  # listwise softmax temperature
    calibration: float = Field(1.0, ge=0)  # weight of CLID's pointwise part (its listwise part has weight 1)
    listwise: bool = True
    lists: Literal["group", "batch"] = "group"  # a list = one group_by value (user) in the batch, or the batch
    injection_units: tuple[int, ...] = (512, 256, 128)  # the teacher's MLP over the LLM representation
    #: the gain network's backbone; None: the student's (``model:``) without its dynamic sparsity
    teacher: ModelConfig | None = None
    #: the sample's LLM vector: ``entities`` concatenates the semantic tables' entity vectors (e.g. the user's and
    #: the movie's description texts); ``features`` averages its feature-text vectors; ``texts``: the vector of the
    #: row's own instance text (its recent liked / disliked items and the candidate: llmctr.semantics.instance_texts),
    #: encoded once for every row of the dataset before training
    instance: Literal["entities", "features", "texts"] = "entities"
    instance_texts: InstanceTextsConfig = Field(default_factory=InstanceTextsConfig)
    #: stop training the teacher at its best validation epoch (its weights restored and frozen; the student goes
    #: on distilling from it): llmctr.train.ctr.teacher_stop
    teacher_stop: bool = False


def binary_kl(student_logit: torch.Tensor, teacher_logit: torch.Tensor) -> torch.Tensor:
    """Mean KL(Bernoulli(p_teacher) || Bernoulli(p_student)); zero iff the probabilities agree."""
    p = torch.sigmoid(teacher_logit)
    log_p, log_1p = F.logsigmoid(teacher_logit), F.logsigmoid(-teacher_logit)
    log_q, log_1q = F.logsigmoid(student_logit), F.logsigmoid(-student_logit)
    return (p * (log_p - log_q) + (1 - p) * (log_1p - log_1q)).mean()


def listwise_kl(student_logit: torch.Tensor, teacher_logit: torch.Tensor, groups: torch.Tensor | None,
                tau: float) -> torch.Tensor:
    """Mean over lists of KL(softmax(t / tau) || softmax(s / tau)) within each list (lists of one are skipped:
    their softmax is 1 whatever the scores). ``groups`` None: the batch is one list."""
    s, t = student_logit / tau, teacher_logit / tau
    if groups is None:
        return F.kl_div(F.log_softmax(s, 0), F.log_softmax(t, 0), log_target=True, reduction="sum")
    _, index, counts = torch.unique(groups, return_inverse=True, return_counts=True)
    n = counts.numel()

    def log_softmax_by_group(x: torch.Tensor) -> torch.Tensor:
        peak = torch.full((n,), -torch.inf, dtype=x.dtype, device=x.device).scatter_reduce(
            0, index, x, "amax", include_self=True)
        z = (x - peak[index]).exp()
        total = torch.zeros(n, dtype=x.dtype, device=x.device).index_add(0, index, z)
        return x - peak[index] - total.log()[index]

    log_p, log_q = log_softmax_by_group(t), log_softmax_by_group(s)
    per_group = torch.zeros(n, dtype=s.dtype, device=s.device).index_add(0, index, log_p.exp() * (log_p - log_q))
    keep = counts > 1
    return per_group[keep].mean() if keep.any() else per_group.sum() * 0


def clid_loss(student_logit: torch.Tensor, teacher_logit: torch.Tensor, groups: torch.Tensor | None,
              config: DistillConfig) -> torch.Tensor:
    """Calibrated listwise distillation; the teacher is detached."""
    teacher_logit = teacher_logit.detach()
    loss = config.calibration * binary_kl(student_logit, teacher_logit)
    if config.listwise:
        loss = loss + listwise_kl(student_logit, teacher_logit, groups if config.lists == "group" else None,
                                  config.tau)
    return loss


class InstanceSemantics(nn.Module):
    """A sample's LLM representation from precomputed semantic tables (non-persistent buffers: training only).

    ``entities``: {key field: [rows, S]} (e.g. user_id → the user's text vector, movie_id → the movie's), whose
    vectors are concatenated. Without entity tables, the mean of the sample's feature-text vectors
    (``features``: {field: [vocab, S]}) stands in for the mean-pooled sample text. ``rows_dim``: each row's own
    vector, read from a table installed before training (``set_rows``) at the batch's ``INSTANCE_ROW`` column.
    """

    def __init__(self, entities: dict[str, torch.Tensor] | None = None,
                 features: dict[str, torch.Tensor] | None = None, rows_dim: int | None = None):
        super().__init__()
        if rows_dim is not None:
            self.mode, self.names, self.output_dim = "rows", [], int(rows_dim)
            self.register_buffer("rows_table", torch.zeros(1, self.output_dim), persistent=False)
            return
        tables = entities or features
        if not tables:
            raise ValueError("InstanceSemantics needs entity or feature semantic tables")
        self.mode = "concat" if entities else "mean"
        self.names = list(tables)
        for i, name in enumerate(self.names):
            self.register_buffer(f"table_{i}", torch.as_tensor(tables[name], dtype=torch.float32), persistent=False)
        dims = {int(t.shape[1]) for t in tables.values()}
        if self.mode == "mean" and len(dims) != 1:
            raise ValueError(f"feature semantic tables differ in width: {sorted(dims)}")
        self.output_dim = sum(int(t.shape[1]) for t in tables.values()) if self.mode == "concat" else dims.pop()

    def set_rows(self, table: torch.Tensor) -> None:
        """The instance-text table ([K + 1, S], row 0 zeros) the ``INSTANCE_ROW`` column indexes."""
        if self.mode != "rows" or table.dim() != 2 or table.shape[1] != self.output_dim:
            raise ValueError(f"an instance-text table of width {self.output_dim} was expected, got "
                             f"{tuple(table.shape)} (mode {self.mode})")
        self.rows_table = table.to(self.rows_table.device, torch.float32)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.mode == "rows":
            if INSTANCE_ROW not in features:
                raise KeyError(f"distill.instance: texts, but the batch has no {INSTANCE_ROW!r} column (the "
                               "instance-text rows are attached to in-memory splits only)")
            return self.rows_table[features[INSTANCE_ROW].clamp(max=self.rows_table.shape[0] - 1)]
        vectors = []
        for i, name in enumerate(self.names):
            ids = features[name]
            table = getattr(self, f"table_{i}")
            vec = table[ids.clamp(max=table.shape[0] - 1)]
            vectors.append(vec.mean(1) if vec.dim() == 3 else vec)  # multi-valued fields: mean over values
        return torch.cat(vectors, 1) if self.mode == "concat" else torch.stack(vectors).mean(0)


def teacher_config(student: ModelConfig, config: DistillConfig) -> ModelConfig:
    return config.teacher if config.teacher is not None else replace(student, dynamic_sparse=None)


def build_pseudo_siamese(fields, student_config: ModelConfig, config: DistillConfig, semantics: Any,
                         llactr_tables: dict[str, Any] | None = None) -> PseudoSiamese:
    """Teacher + student over ``fields`` with the sample's LLM vectors from ``semantics`` (SemanticTables).
    ``llactr_tables``: keyword arguments of CTRModel for LLaCTR plug-ins (field/feature semantics)."""
    instance = instance_semantics(config, semantics)
    # The student is built first: under the same seed it starts from exactly the weights the student-alone model
    # starts from (and sees the same batches), so "distilled vs alone" differs only by the distillation terms.
    student = CTRModel(fields, student_config, **(llactr_tables or {}),
                       **history_inputs(fields, student_config, semantics))
    teacher_cfg = teacher_config(student_config, config)  # e.g. the student's id history plus history.semantic
    teacher = CTRModel(fields, teacher_cfg, extra_dim=config.injection_units[-1], **(llactr_tables or {}),
                       **history_inputs(fields, teacher_cfg, semantics))
    return PseudoSiamese(teacher, student, instance, config)


def instance_semantics(config: DistillConfig, semantics: Any) -> InstanceSemantics:
    if config.instance == "texts":  # the table comes later: llmctr.train.ctr.instance_texts
        return InstanceSemantics(rows_dim=int(semantics.field.shape[1]))
    source = semantics.entities if config.instance == "entities" else semantics.features
    if not source:
        raise ValueError(f"distill.instance={config.instance!r} but the semantic tables have no {config.instance} "
                         "(entities come from the dataset YAML's `entities:` section)")
    if config.instance == "entities":
        return InstanceSemantics(entities={semantics.meta["entity_keys"][n]: t for n, t in source.items()})
    return InstanceSemantics(features=dict(source))


def injection_mlp(input_dim: int, units: list[int]) -> MLP:
    """ReLU layers then a linear output layer that starts at zero: the gain network begins exactly as the vanilla
    network (the injected vector is 0) and learns how much of the LLM representation to use. A ReLU output with
    PyTorch's default init instead floods the backbone's input with O(1) values beside O(1e-4) embeddings, and on
    ML-1M that teacher fitted worse than the plain backbone (valid AUC 0.8163 vs 0.8174, one seed)."""
    mlp = MLP(input_dim, units[:-1], output_dim=units[-1])
    init_dense_xavier(mlp)
    nn.init.zeros_(mlp[-1].weight)
    return mlp


class DistillOutput(NamedTuple):
    teacher: CTROutput
    student: CTROutput


class PseudoSiamese(nn.Module):
    """Teacher (``CTRModel`` with ``extra_dim`` = the injection MLP's width) and student (``CTRModel``) side by
    side; ``projection`` maps the student's representation to the teacher's width when they differ."""

    def __init__(self, teacher: CTRModel, student: CTRModel, instance: InstanceSemantics, config: DistillConfig):
        super().__init__()
        units = list(config.injection_units)
        if teacher.backbone.extra_dim != units[-1]:
            raise ValueError(f"teacher extra_dim {teacher.backbone.extra_dim} != injection width {units[-1]}")
        self.config = config
        self.teacher, self.student, self.instance = teacher, student, instance
        self.teacher_frozen = False  # freeze_teacher
        self.inject = injection_mlp(instance.output_dim, units)
        t_dim, s_dim = teacher.backbone.representation_dim, student.backbone.representation_dim
        # no projection without the MSE term: an unused parameter would stall DDP's gradient sync
        self.projection = (nn.Identity() if t_dim == s_dim or config.alpha == 0
                           else nn.Linear(s_dim, t_dim, bias=False))

    def freeze_teacher(self) -> None:
        """The gain network in eval mode from now on, whatever ``train()`` is called with (its weights are held by
        the training loop: llmctr.train.ctr.teacher_stop)."""
        self.teacher_frozen = True
        self.train(self.training)

    def train(self, mode: bool = True) -> PseudoSiamese:
        super().train(mode)
        if self.teacher_frozen:
            self.teacher.eval()
            self.inject.eval()
        return self

    def forward(self, features: dict[str, torch.Tensor]) -> DistillOutput:
        return DistillOutput(self.teacher_forward(features), self.student(features))

    def teacher_forward(self, features: dict[str, torch.Tensor]) -> CTROutput:
        return self.teacher(features, self.inject(self.instance(features)))

    def loss(self, out: DistillOutput, labels: torch.Tensor, groups: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Every term of the joint loss (``total`` is their weighted sum)."""
        c = self.config
        terms = {"teacher_bce": F.binary_cross_entropy_with_logits(out.teacher.logit, labels),
                 "student_bce": F.binary_cross_entropy_with_logits(out.student.logit, labels)}
        total = terms["teacher_bce"] + terms["student_bce"]
        if c.beta > 0:
            terms["clid"] = clid_loss(out.student.logit, out.teacher.logit, groups, c)
            total = total + c.beta * terms["clid"]
        if c.alpha > 0:
            target = out.teacher.representation.detach()
            terms["rep_mse"] = F.mse_loss(self.projection(out.student.representation), target)
            total = total + c.alpha * terms["rep_mse"]
        for aux in (out.teacher.aux_loss, out.student.aux_loss):
            if aux is not None:
                total = total + aux
        terms["total"] = total
        return terms
