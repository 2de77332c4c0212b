"""Tune stage: Ray Tune searches over experiment settings (distillation weights, LLaCTR's lambdas, lr ...)."""

from llmctr.tune.search import ParamSpec, SearchConfig, SearchResult, load_search, run_search, with_settings

__all__ = ["ParamSpec", "SearchConfig", "SearchResult", "load_search", "run_search", "with_settings"]
