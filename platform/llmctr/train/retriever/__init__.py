"""The retriever's training: LightGCN on the train split's user-item graph as a Ray Train job, exported as the
artifact ``llmctr.models.retriever.Retriever`` loads."""

from llmctr.train.retriever.config import RetrieverConfig, RetrieverTrainConfig, load_retriever_config, resolve_fields
from llmctr.train.retriever.fit import RetrieverResult, export_vectors, fit_retriever

__all__ = ["RetrieverConfig", "RetrieverResult", "RetrieverTrainConfig", "export_vectors", "fit_retriever",
           "load_retriever_config", "resolve_fields"]
