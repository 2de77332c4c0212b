"""The backbone zoo. Importing this package registers every backbone."""

from llmctr.models.backbones import (  # noqa: F401
    autoint,
    dcnv2,
    deepfm,
    finalmlp,
    fm,
    fmfm,
    fwfm,
    wukong,
)
