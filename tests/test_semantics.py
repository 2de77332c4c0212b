"""Semantic layer: texts from the dataset YAML, and the HF encoders (MiniLM and a tiny decoder-only Llama)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from llmctr.data import load_dataset_config
from llmctr.semantics.encoders import EncoderConfig, HFEncoder, build_encoder, encoder_key, mean_pool
from llmctr.semantics.text import feature_text, field_text, sample_text


@pytest.fixture(scope="module")
def ml1m_fields():
    return {f.name: f for f in load_dataset_config("ml1m").fields}


def test_feature_texts_use_descriptions_and_value_labels(ml1m_fields):
    assert feature_text(ml1m_fields["age"], "25") == "The user's age group is 25-34."
    assert feature_text(ml1m_fields["age"], 25) == "The user's age group is 25-34."
    assert feature_text(ml1m_fields["occupation"], 12) == "The user's occupation is programmer."
    assert feature_text(ml1m_fields["gender"], "F") == "The user's gender is female."
    assert feature_text(ml1m_fields["genres"], "Comedy|Romance") == "The movie's genres are Comedy, Romance."
    assert feature_text(ml1m_fields["genres"], ["Drama"]) == "The movie's genres are Drama."
    # unknown / missing values, and values without a label, as they are
    assert feature_text(ml1m_fields["age"], None) == "The user's age group is unknown."
    assert feature_text(ml1m_fields["age"], float("nan")) == "The user's age group is unknown."
    assert feature_text(ml1m_fields["age"], "99") == "The user's age group is 99."
    assert field_text(ml1m_fields["title"]) == "The movie's title and release year."


def test_sample_text_in_field_order(ml1m_fields):
    fields = [ml1m_fields[n] for n in ("gender", "age", "occupation", "genres")]
    text = sample_text({"age": "35", "gender": "M", "genres": "Action", "ignored": 1}, fields)
    assert text == ("The user's gender is male. The user's age group is 35-44. "
                    "The user's occupation is unknown. The movie's genres are Action.")


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    out = mean_pool(hidden, torch.tensor([[1, 1, 0]]))
    assert torch.allclose(out, torch.tensor([[2.0, 3.0]]))


@pytest.fixture(scope="module")
def minilm():
    return HFEncoder(EncoderConfig())


def test_minilm_shape_dtype_norm_and_meaning(minilm):
    texts = ["The movie's genres are Horror.", "The movie's genres are Horror, Thriller.",
             "The user's occupation is lawyer.", "The user's occupation is attorney."]
    vec = minilm.encode(texts)
    assert vec.shape == (4, 384) and vec.dtype == np.float32 and minilm.dim == 384
    np.testing.assert_allclose(np.linalg.norm(vec, axis=1), 1.0, atol=1e-5)
    sim = vec @ vec.T
    assert sim[0, 1] > sim[0, 2] and sim[0, 1] > sim[0, 3]
    assert sim[2, 3] > sim[2, 0] and sim[2, 3] > sim[2, 1]


def test_minilm_batching_and_padding_do_not_change_vectors(minilm):
    texts = ["a", "a much longer sentence about a movie with many genres and a long title", "mid length text"]
    small = HFEncoder(EncoderConfig(batch_size=1))
    np.testing.assert_allclose(minilm.encode(texts), small.encode(texts), atol=1e-5)


def test_pooled_is_differentiable(minilm):
    vec = minilm.pooled(minilm.tokenize(["hello", "world"]))
    assert vec.requires_grad and vec.shape == (2, 384)
    vec.sum().backward()
    assert any(p.grad is not None for p in minilm.model.parameters())
    minilm.model.zero_grad(set_to_none=True)


def test_decoder_only_llama(tiny_llama):
    enc = build_encoder(EncoderConfig(model=tiny_llama, normalize=False))
    assert type(enc.model).__name__ == "LlamaModel" and enc.dim == 64
    assert enc.tokenizer.pad_token is not None
    vec = enc.encode(["hello world", "a longer text than the first one", "x"])
    assert vec.shape == (3, 64) and vec.dtype == np.float32
    assert not np.allclose(np.linalg.norm(vec, axis=1), 1.0)
    # each text alone gives its vector in the padded batch (right padding is masked out)
    np.testing.assert_allclose(enc.encode(["x"])[0], vec[2], atol=1e-5)
    other = build_encoder(EncoderConfig(model=tiny_llama, layer=1, normalize=True)).encode(["hello world"])
    np.testing.assert_allclose(np.linalg.norm(other, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(other[0], vec[0] / np.linalg.norm(vec[0]), atol=1e-3)


def test_encoder_key_tracks_what_changes_vectors(tiny_llama, tmp_path):
    base = EncoderConfig(model=tiny_llama)
    assert encoder_key(base) == encoder_key(EncoderConfig(model=tiny_llama, batch_size=7, device="cpu"))
    for change in ({"layer": 1}, {"max_length": 32}, {"normalize": False}, {"dtype": "bfloat16"}):
        assert encoder_key(EncoderConfig(model=tiny_llama, **change)) != encoder_key(base), change
    assert encoder_key(EncoderConfig()) != encoder_key(base)
    with pytest.raises(FileNotFoundError, match="adapter"):
        encoder_key(EncoderConfig(model=tiny_llama, adapter=str(tmp_path / "nope")))


def test_lora_adapter_is_merged_and_keyed(tiny_llama, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    torch.manual_seed(1)
    peft_model = get_peft_model(AutoModel.from_pretrained(tiny_llama),
                                LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    plain = HFEncoder(EncoderConfig(model=tiny_llama))
    tuned = HFEncoder(EncoderConfig(model=tiny_llama, adapter=str(tmp_path / "adapter")))
    assert tuned.key != plain.key
    assert not any("lora" in name for name, _ in tuned.model.named_parameters())
    texts = ["hello world", "goodbye"]
    assert not np.allclose(tuned.encode(texts), plain.encode(texts), atol=1e-4)
    with torch.inference_mode():
        expected = mean_pool(peft_model(**tuned.tokenize(texts)).last_hidden_state,
                             tuned.tokenize(texts)["attention_mask"])
    np.testing.assert_allclose(tuned.encode(texts), torch.nn.functional.normalize(expected, dim=-1).numpy(),
                               atol=1e-4)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm installed")
def test_vllm_backend_without_vllm_says_how_to_install():
    with pytest.raises(ImportError, match=r"llmctr\[gpu\]"):
        build_encoder(EncoderConfig(backend="vllm"))


def test_bad_model_path_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="cannot load encoder model"):
        HFEncoder(EncoderConfig(model=str(tmp_path / "empty")))


def test_vllm_code_path_with_a_stand_in_engine(tiny_llama, monkeypatch):
    """vLLM cannot be installed beside the CPU stack: a stand-in module checks what the backend asks of it
    (pooling runner, mean pooling, truncated token prompts) and how it assembles the vectors."""
    import sys
    import types

    from transformers import AutoTokenizer

    seen = {}

    class PoolerConfig:
        def __init__(self, **kw):
            seen["pooler"] = kw

    class LLM:
        def __init__(self, **kw):
            seen["llm"] = kw
            self.llm_engine = types.SimpleNamespace(model_config=types.SimpleNamespace(get_hidden_size=lambda: 3))

        def get_tokenizer(self):
            return AutoTokenizer.from_pretrained(tiny_llama)

        def embed(self, prompts, use_tqdm=True):
            seen["prompts"] = prompts
            out = types.SimpleNamespace
            return [out(outputs=out(embedding=[float(len(p["prompt_token_ids"]))] * 3)) for p in prompts]

    fake = types.ModuleType("vllm")
    fake.LLM = LLM
    fake_config = types.ModuleType("vllm.config")
    fake_config.PoolerConfig = PoolerConfig
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setitem(sys.modules, "vllm.config", fake_config)
    enc = build_encoder(EncoderConfig(backend="vllm", model=tiny_llama, max_length=5, dtype="bfloat16"))
    vec = enc.encode(["one", "a text much longer than five tokens for sure"])
    assert vec.shape == (2, 3) and vec.dtype == np.float32 and vec[1, 0] == 5
    assert seen["pooler"] == {"pooling_type": "MEAN", "normalize": True}
    assert seen["llm"]["runner"] == "pooling" and seen["llm"]["dtype"] == "bfloat16"
    assert enc.key != encoder_key(EncoderConfig(model=tiny_llama, max_length=5, dtype="bfloat16"))
    with pytest.raises(ValueError, match="last layer"):
        build_encoder(EncoderConfig(backend="vllm", model=tiny_llama, layer=1))
