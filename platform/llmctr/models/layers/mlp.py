from __future__ import annotations

from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh, "prelu": nn.PReLU}


class MLP(nn.Sequential):
    """Linear → [BatchNorm] → activation → [Dropout] per hidden layer; ``output_dim`` adds a final Linear."""

    def __init__(self, input_dim: int, hidden_units: list[int], activation: str = "relu", dropout: float = 0.0,
                 batch_norm: bool = False, output_dim: int | None = None):
        layers: list[nn.Module] = []
        dims = [input_dim, *hidden_units]
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            layers.append(nn.Linear(d_in, d_out))
            if batch_norm:
                layers.append(nn.BatchNorm1d(d_out))
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        if output_dim is not None:
            layers.append(nn.Linear(dims[-1], output_dim))
        super().__init__(*layers)
        self.output_dim = output_dim if output_dim is not None else dims[-1]
