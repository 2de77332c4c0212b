"""Training stage: Ray Train jobs over prepared parquet splits → versioned artifacts. One folder per product
(``ctr/`` CTR models, ``retriever/`` LightGCN, ``llm_head/`` the early-exit LLM head), SSFT's job in ``ssft.py``,
and the scaffold they share: ``job.py`` (workers, run config, restore, report), ``checkpoint.py``, ``feed.py``,
``metrics.py``."""

from llmctr.train.ctr import ExperimentConfig, TrainConfig, TrainResult, fit, load_experiment

__all__ = ["ExperimentConfig", "TrainConfig", "TrainResult", "fit", "load_experiment"]
