import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
# The Serve ingress users get from init_ray (HAProxy in front of the ingress replicas): every local Ray of the
# suite, and the `serve run` / `ray start` subprocesses, inherit it.
from llmctr.runtime import apply_fast_ingress_env  # noqa: E402

apply_fast_ingress_env(local=True)

# Workers of the session's Ray read this (before it starts, so they inherit it); the file exists only while a test
# holds a training run after an epoch (tests/train_hold.py), to kill a worker at a known point.
TRAIN_HOLD_FILE = Path(tempfile.gettempdir()) / f"llmctr-train-hold-{os.getpid()}"
os.environ["LLMCTR_TRAIN_HOLD_FILE"] = str(TRAIN_HOLD_FILE)

REPO = Path(__file__).resolve().parents[1]
SHARED_ML1M = REPO.parent / "shared" / "data" / "ml-1m"


@pytest.fixture(scope="session")
def ray_local():
    import ray

    if not ray.is_initialized():
        # The dashboard serves the State API, which Ray Train's placement-group cleaner needs when Tune stops a trial.
        ray.init(address="local", num_cpus=2, include_dashboard=True, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def synthetic_source(tmp_path_factory) -> Path:
    """A small synthetic click log with one planted bad line of each kind."""
    from llmctr.data.synthetic import write_synthetic

    folder = tmp_path_factory.mktemp("raw") / "synthetic"
    write_synthetic(folder, n_rows=12_000, seed=1, bad_rows=True)
    return folder


@pytest.fixture(scope="session")
def prepared_synthetic(ray_local, synthetic_source, tmp_path_factory) -> Path:
    from llmctr.data import load_dataset_config
    from llmctr.data.pipeline import prepare_dataset

    out = tmp_path_factory.mktemp("prepared") / "synthetic"
    prepare_dataset(load_dataset_config("synthetic"), synthetic_source, out, engine="ray")  # on Ray Data: the
    return out  # in-process engine is checked against this output (test_data_pipeline)


@pytest.fixture(scope="session")
def ml1m_slice(tmp_path_factory) -> Path:
    """The first 20,000 ratings of the shared ML-1M copy plus users/movies (never committed)."""
    if not SHARED_ML1M.is_dir():
        pytest.skip("shared ML-1M copy not present")
    folder = tmp_path_factory.mktemp("ml1m_slice")
    with open(SHARED_ML1M / "ratings_users1-2999.dat", "rb") as src, open(folder / "ratings.dat", "wb") as dst:
        for i, line in enumerate(src):
            if i >= 20_000:
                break
            dst.write(line)
    for name in ("users.dat", "movies.dat"):
        shutil.copy(SHARED_ML1M / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def trained_synthetic(ray_local, prepared_synthetic, tmp_path_factory):
    """DeepFM trained with Ray Train, 2 workers (DDP over gloo), on the synthetic split."""
    from llmctr.train import fit, load_experiment

    exp = load_experiment("synthetic_deepfm")
    exp.train.num_workers = 2
    exp.train.epochs = 3
    exp.train.batch_size = 256
    exp.train.lr = 1e-2
    return fit(exp, prepared_synthetic, artifacts=tmp_path_factory.mktemp("artifacts"))


@pytest.fixture(scope="session")
def trained_retriever(ray_local, prepared_synthetic, tmp_path_factory):
    """LightGCN trained with Ray Train, 2 workers, 3 epochs, on the synthetic split (the retriever tests and the
    serving graph's retriever)."""
    from llmctr.train.retriever import fit_retriever, load_retriever_config

    config = load_retriever_config("synthetic_lightgcn")
    config.train.epochs, config.train.num_workers = 3, 2
    return fit_retriever(config, prepared_synthetic, artifacts=tmp_path_factory.mktemp("retriever_artifacts"))


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> str:
    """A tiny random decoder-only LlamaForCausalLM (hidden 64, 2 layers) with MiniLM's tokenizer, saved offline."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from llmctr.semantics.encoders import default_model_path

    folder = tmp_path_factory.mktemp("tiny_llama")
    tokenizer = AutoTokenizer.from_pretrained(default_model_path())
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    """A tiny random BertModel (hidden 32, 3 layers) with MiniLM's tokenizer, saved offline."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from llmctr.semantics.encoders import default_model_path

    folder = tmp_path_factory.mktemp("tiny_bert")
    tokenizer = AutoTokenizer.from_pretrained(default_model_path())
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=128)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def untrained_student(prepared_synthetic, tmp_path_factory):
    """A (random) FM student saved as a model artifact on the synthetic feature map."""
    import torch

    from llmctr.data import FeatureMap
    from llmctr.models.artifact import build_model, cpu_state, save_artifact
    from llmctr.models.ctr_model import ModelConfig

    fmap = FeatureMap.load(prepared_synthetic / "feature_map.json")
    torch.manual_seed(0)
    config = ModelConfig(name="fm", embedding_dim=4)
    root = tmp_path_factory.mktemp("artifacts")
    return save_artifact(root / "models", "student", cpu_state(build_model(fmap, config)), config, fmap, {})
