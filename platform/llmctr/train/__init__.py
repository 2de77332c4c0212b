"""Training stage: Ray Train TorchTrainer over prepared parquet splits → versioned model artifacts."""

from llmctr.train.config import ExperimentConfig, TrainConfig, load_experiment
from llmctr.train.trainer import TrainResult, fit

__all__ = ["ExperimentConfig", "TrainConfig", "TrainResult", "fit", "load_experiment"]
