"""Layers shared by every backbone: written once, composed by each model file."""

from llmctr.models.layers.attention import MultiHeadSelfAttention
from llmctr.models.layers.cross import CrossNetV2
from llmctr.models.layers.embedding import FeatureEmbedding, FieldInput
from llmctr.models.layers.extra import ExtraHead
from llmctr.models.layers.history import HistoryConfig, HistoryPooling
from llmctr.models.layers.interaction import FactorizationMachine
from llmctr.models.layers.mlp import MLP
from llmctr.models.layers.pairwise import FieldPairs, bi_interaction
from llmctr.models.layers.semantic_history import SemanticHistory, SemanticHistoryConfig

__all__ = ["MLP", "CrossNetV2", "ExtraHead", "FactorizationMachine", "FeatureEmbedding", "FieldInput",
           "FieldPairs", "HistoryConfig", "HistoryPooling", "MultiHeadSelfAttention", "SemanticHistory",
           "SemanticHistoryConfig", "bi_interaction"]
