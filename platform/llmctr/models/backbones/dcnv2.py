"""DCNv2 (Wang et al., 2021): a full-rank cross network x_{l+1} = x_0 ⊙ (W_l x_l + b_l) + x_l over the
flattened embeddings (+ extra), combined with a DNN.

``structure``: ``"parallel"`` (default) y = w·[cross(x0); DNN(x0)]; ``"stacked"`` y = w·DNN(cross(x0));
``"crossnet_only"`` y = w·cross(x0). Representation: the vector fed to the output layer.
"""

from __future__ import annotations

import torch

from llmctr.config import ConfigError
from llmctr.models.backbones.base import Backbone
from llmctr.models.layers import MLP, CrossNetV2
from llmctr.models.registry import register

STRUCTURES = ("parallel", "stacked", "crossnet_only")


@register("dcnv2")
class DCNv2(Backbone):
    def __init__(self, num_fields: int, embedding_dim: int, extra_dim: int = 0,
                 structure: str = "parallel", num_cross_layers: int = 3,
                 hidden_units: list[int] = (400, 400, 400), activation: str = "relu", dropout: float = 0.0,
                 batch_norm: bool = False):
        super().__init__(num_fields, embedding_dim, extra_dim)
        if structure not in STRUCTURES:
            raise ConfigError(f"dcnv2: structure must be one of {STRUCTURES}, got {structure!r}")
        self.structure = structure
        input_dim = num_fields * embedding_dim + extra_dim
        self.cross = CrossNetV2(input_dim, num_cross_layers)
        self.dnn = None
        if structure != "crossnet_only":
            self.dnn = MLP(input_dim, list(hidden_units), activation, dropout, batch_norm)
        dnn_dim = self.dnn.output_dim if self.dnn is not None else 0
        self.representation_dim = {"parallel": input_dim + dnn_dim, "stacked": dnn_dim,
                                   "crossnet_only": input_dim}[structure]
        self.head = torch.nn.Linear(self.representation_dim, 1)

    def forward(self, emb: torch.Tensor, extra: torch.Tensor | None = None):
        x0 = self.flat_input(emb, extra)
        cross = self.cross(x0)
        if self.structure == "parallel":
            rep = torch.cat([cross, self.dnn(x0)], dim=1)
        elif self.structure == "stacked":
            rep = self.dnn(cross)
        else:
            rep = cross
        return self.head(rep).squeeze(-1), rep
