"""llmctr: train and serve LLM-enhanced CTR models on Ray."""

__version__ = "0.1.0"
