"""Training the early-exit LLM head of the scoring graph's LLM path (the head itself, as a model and an artifact:
``llmctr.models.llm_head``)."""

from llmctr.models.llm_head_config import EarlyExitConfig, load_llm_head_config
from llmctr.train.llm_head.fit import EarlyExitResult, fit_early_exit

__all__ = ["EarlyExitConfig", "EarlyExitResult", "fit_early_exit", "load_llm_head_config"]
