"""The backbone zoo. Importing this package registers every backbone."""

from llmctr.models.backbones import deepfm  # noqa: F401
