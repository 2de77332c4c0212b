"""Dynamic sparsity for the MLPs of any backbone: per sample, keep only the hidden units that carry most of the
layer's importance, so easy samples use fewer units (and multiply-adds) than hard ones.

Importance of hidden unit j for one sample: |h_j| * ||W_next[:, j]|| (its activation times the norm of the
weights that read it; the last hidden layer of an MLP, whose reader sits outside it, uses |h_j|). Units are
kept, most important first, until they hold ``mass`` of the sample's total importance (at least ``min_keep``
of the layer): a nucleus ("top-p") rule, so k adapts to the sample — a sample whose importance is spread
out (uncertain) keeps many units; one dominated by a few units keeps few.

``sparsify(backbone, config)`` wraps every activation of every ``layers.MLP`` in place (no new parameters, so
dense and sparse models share state dicts). ``SparsityMeter`` counts kept units and the Linear layers'
multiply-adds actually needed (inputs that are zero need no column of the weight).
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from pydantic import Field
from pydantic.dataclasses import dataclass
from torch import nn

from llmctr.config import STRICT
from llmctr.models.layers import MLP


@dataclass(config=STRICT)
class SparseConfig:
    mass: float = Field(0.9, gt=0.0, le=1.0)  # share of a sample's importance its kept units must hold
    min_keep: float = Field(0.05, ge=0.0, le=1.0)  # floor on the kept share of a layer's units
    train: bool = False  # also mask while training (the network adapts to its masks); else only at inference


class ImportanceMask(nn.Module):
    """Activation followed by the per-sample nucleus mask over its units."""

    def __init__(self, activation: nn.Module, reader: nn.Linear | None, config: SparseConfig):
        super().__init__()
        self.activation = activation
        self.reader = [reader]  # a list: not registered as a child (it belongs to the MLP already)
        self.config = config
        self.enabled = True
        self.recording = False  # set by SparsityMeter: count units that pass (non-zero after the mask)
        self.passed = 0.0
        self.seen = 0.0
        self.train(activation.training)  # sparsifying an eval-mode model keeps it in eval mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.activation(x)
        if self.enabled and (self.config.train or not self.training):
            h = h * self.mask(h)
        if self.recording:
            self.passed += float((h != 0).sum())
            self.seen += h.numel()
        return h

    def mask(self, h: torch.Tensor) -> torch.Tensor:
        reader = self.reader[0]
        weight = reader.weight.detach().norm(dim=0) if reader is not None else h.new_ones(h.shape[-1])
        importance = h.detach().abs() * weight
        ordered, order = importance.sort(dim=-1, descending=True)
        before = ordered.cumsum(-1) - ordered  # importance held by the units ranked above each one
        keep = before < self.config.mass * ordered.sum(-1, keepdim=True)
        keep[..., : max(1, math.ceil(self.config.min_keep * h.shape[-1]))] = True
        return torch.zeros_like(keep).scatter(-1, order, keep)


def sparsify(module: nn.Module, config: SparseConfig) -> list[ImportanceMask]:
    """Wrap the hidden activations of every ``MLP`` inside ``module``; return the masks."""
    masks = []
    for mlp in [m for m in module.modules() if isinstance(m, MLP)]:
        layers = list(mlp)
        for i, layer in enumerate(layers):
            if isinstance(layer, (nn.Linear, nn.BatchNorm1d, nn.Dropout, ImportanceMask)):
                continue
            reader = next((nxt for nxt in layers[i + 1:] if isinstance(nxt, nn.Linear)), None)
            mask = ImportanceMask(layer, reader, config)
            mlp[i] = mask
            masks.append(mask)
    return masks


def sparse_masks(module: nn.Module) -> list[ImportanceMask]:
    return [m for m in module.modules() if isinstance(m, ImportanceMask)]


@contextmanager
def dense(module: nn.Module):
    """Temporarily switch the masks off (the dense network with the same weights)."""
    masks = sparse_masks(module)
    for m in masks:
        m.enabled = False
    try:
        yield module
    finally:
        for m in masks:
            m.enabled = True


class SparsityMeter:
    """While active, counts the share of hidden units that pass (non-zero after activation and mask) over all
    masked layers, and the multiply-adds every MLP Linear needs given which of its inputs are non-zero, against
    the dense count. Works with the masks off too (``dense``): then it measures the ReLU's own sparsity."""

    def __init__(self, module: nn.Module):
        self.masks = sparse_masks(module)
        self.linears = [m for mlp in module.modules() if isinstance(mlp, MLP) for m in mlp if isinstance(m, nn.Linear)]
        self.macs = 0.0
        self.dense_macs = 0.0
        self.passed = 0.0
        self.seen = 0.0
        self._hooks = []

    def _count(self, layer: nn.Linear, inputs, _output) -> None:
        x = inputs[0]
        self.macs += float((x != 0).sum()) * layer.out_features
        self.dense_macs += float(x.numel()) * layer.out_features

    def __enter__(self) -> SparsityMeter:
        for m in self.masks:
            m.recording, m.passed, m.seen = True, 0.0, 0.0
        self._hooks = [lin.register_forward_hook(self._count) for lin in self.linears]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._hooks:
            h.remove()
        for m in self.masks:
            m.recording = False
            self.passed += m.passed
            self.seen += m.seen

    @property
    def active_fraction(self) -> float:
        return self.passed / self.seen if self.seen else float("nan")

    @property
    def mac_fraction(self) -> float:
        return self.macs / self.dense_macs if self.dense_macs else float("nan")
