"""DeepFM (Guo et al., 2017): y = w0 + sum_i w_i + FM(E) + DNN(E)."""

from __future__ import annotations

import torch

from llmctr.models.backbones.base import Backbone
from llmctr.models.layers import MLP, FactorizationMachine
from llmctr.models.registry import register


@register("deepfm")
class DeepFM(Backbone):
    first_order = True

    def __init__(self, num_fields: int, embedding_dim: int, extra_dim: int = 0,
                 hidden_units: list[int] = (256, 128), activation: str = "relu", dropout: float = 0.0,
                 batch_norm: bool = False):
        super().__init__(num_fields, embedding_dim, extra_dim)
        self.fm = FactorizationMachine()
        self.dnn = MLP(num_fields * embedding_dim + extra_dim, list(hidden_units), activation, dropout, batch_norm)
        self.head = torch.nn.Linear(self.dnn.output_dim, 1)
        self.representation_dim = self.dnn.output_dim

    def forward(self, emb: torch.Tensor, extra: torch.Tensor | None = None):
        rep = self.dnn(self.flat_input(emb, extra))
        return self.fm(emb) + self.head(rep).squeeze(-1), rep
