"""The scoring graph's LLM path for a trained student: the LightGCN retriever, then the early-exit LLM head that
corrects that student's logit with the retriever's neighbours as context (used by ``llmctr pipeline`` and the
demo)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from llmctr import storage
from llmctr.models.llm_head_config import EarlyExitConfig, RetrieverSource, load_llm_head_config
from llmctr.train.llm_head import EarlyExitResult, fit_early_exit
from llmctr.train.retriever import RetrieverConfig, RetrieverResult, fit_retriever, load_retriever_config

log = logging.getLogger(__name__)


@dataclass
class LLMPath:
    retriever: RetrieverResult | None
    head: EarlyExitResult | None


def fit_llm_path(student: storage.Location | str, data_dir: str | Path,
                    retriever: str | RetrieverConfig | None, head: str | EarlyExitConfig | None,
                    artifacts: str | Path | None = None, head_rows: int | None = None,
                    retriever_epochs: int | None = None) -> LLMPath:
    """Train the retriever (when given) and the LLM head (when given) on the prepared dataset ``data_dir``; the head
    corrects ``student`` and reads the new retriever's neighbours (else its config's context). ``head_rows``: fit
    the head on a sample of that many rows (and calibrate on half as many, at least 500)."""
    fitted_retriever = None
    if retriever is not None:
        rconf = load_retriever_config(retriever) if isinstance(retriever, str) else retriever
        if retriever_epochs:
            rconf.train.epochs = retriever_epochs
        fitted_retriever = fit_retriever(rconf, data_dir, artifacts=artifacts)
    fitted_head = None
    if head is not None:
        hconf = load_llm_head_config(head) if isinstance(head, str) else head
        hconf.student = str(student)
        if fitted_retriever is not None:
            hconf.retriever = RetrieverSource(path=str(fitted_retriever.artifact))
        if head_rows:
            hconf.train = replace(hconf.train, sample=head_rows, valid_sample=max(head_rows // 2, 500))
        fitted_head = fit_early_exit(hconf, data_dir, artifacts=artifacts)
    return LLMPath(fitted_retriever, fitted_head)
