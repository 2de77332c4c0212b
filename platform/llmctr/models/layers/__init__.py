"""Layers shared by every backbone: written once, composed by each model file."""

from llmctr.models.layers.embedding import FeatureEmbedding, FieldInput
from llmctr.models.layers.interaction import FactorizationMachine
from llmctr.models.layers.mlp import MLP

__all__ = ["FeatureEmbedding", "FieldInput", "FactorizationMachine", "MLP"]
