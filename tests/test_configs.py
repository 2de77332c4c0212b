"""Every YAML the repository ships parses into its typed config (a renamed option or a bad value fails here, not in
a user's first run), and every experiment's dataset exists."""

from pathlib import Path

import pytest

from llmctr.data import load_dataset_config
from llmctr.models.llm_head_config import load_llm_head_config
from llmctr.train import load_experiment
from llmctr.train.retriever.config import load_retriever_config
from llmctr.tune.search import load_search

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
LOADERS = {"datasets": load_dataset_config, "experiments": load_experiment, "retrievers": load_retriever_config,
           "llm_heads": load_llm_head_config, "searches": load_search}
FILES = sorted((kind, path) for kind in LOADERS for path in (CONFIGS / kind).glob("*.yaml"))


@pytest.mark.parametrize(("kind", "path"), FILES, ids=[f"{k}/{p.stem}" for k, p in FILES])
def test_shipped_config_parses(kind, path):
    config = LOADERS[kind](path)
    assert config.name == path.stem
    if kind == "experiments":
        assert (CONFIGS / "datasets" / f"{config.dataset}.yaml").is_file(), config.dataset


def test_every_kind_of_config_is_covered():
    assert {p.name for p in CONFIGS.iterdir() if p.is_dir()} == set(LOADERS)
