"""Models: pure nn.Modules (embeddings, shared layers, the backbone zoo) and artifact I/O."""

from llmctr.models.ctr_model import CTRModel, CTROutput, ModelConfig
from llmctr.models.layers import FieldInput
from llmctr.models.registry import available, get_backbone, register

__all__ = ["CTRModel", "CTROutput", "ModelConfig", "FieldInput", "available", "get_backbone", "register"]
