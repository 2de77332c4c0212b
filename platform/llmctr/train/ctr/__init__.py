"""Training CTR models (a backbone, LLaCTR's plug-ins, ELEC's teacher and student) on Ray Train."""

from llmctr.train.ctr.config import ExperimentConfig, TrainConfig, load_experiment
from llmctr.train.ctr.fit import TrainResult, fit

__all__ = ["ExperimentConfig", "TrainConfig", "TrainResult", "fit", "load_experiment"]
