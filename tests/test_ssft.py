"""SSFT: examples from the feature map, a LoRA step on MiniLM lowers the contrastive loss, the saved adapter
changes the encodings after reload, and the Ray Train job caches its adapter."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from llmctr.data import FeatureMap, load_dataset_config
from llmctr.data.feature_map import FieldMap
from llmctr.semantics.encoders import EncoderConfig, HFEncoder
from llmctr.semantics.ssft import (
    SSFTConfig,
    add_lora,
    evaluate_loss,
    ssft_examples,
    ssft_report,
    train_adapter,
)
from llmctr.train.ssft import run_ssft


def _fmap() -> FeatureMap:
    return FeatureMap(dataset="synthetic", fields=[
        FieldMap("user_group", "categorical", "", "user_group", vocab=[f"g{i}" for i in range(5)]),
        FieldMap("item_category", "categorical", "", "item_category", vocab=["shoes", "books", "toys", "games"]),
        FieldMap("device", "categorical", "", "device", vocab=["mobile", "desktop", "tablet"]),
        FieldMap("price", "numeric", "", "price")])


def test_examples_sample_up_to_n_features_per_field():
    cfg = SSFTConfig(features_per_field=3)
    prompts, labels, fields = ssft_examples(load_dataset_config("synthetic"), _fmap(), cfg)
    assert len(fields) == 4 and fields[2].startswith("The device")
    assert labels.count(0) == 3 and labels.count(1) == 3 and labels.count(2) == 3 and 3 not in labels
    assert all(p.endswith("candidate fields are: user group, item category, device, price.") for p in prompts)
    assert any("The feature is: tablet." in p for p in prompts) and not any("device is" in p for p in prompts)
    assert ssft_examples(load_dataset_config("synthetic"), _fmap(), cfg)[0] == prompts, "seeded sampling"


def test_ssft_step_lowers_the_loss_and_the_adapter_changes_encodings(tmp_path):
    cfg = SSFTConfig(features_per_field=4, epochs=3, batch_size=8, lr=2e-3, lora_dropout=0.0, max_length=48)
    prompts, labels, fields = ssft_examples(load_dataset_config("synthetic"), _fmap(), cfg)
    enc_cfg = EncoderConfig(max_length=48, device="cpu")
    encoder = HFEncoder(enc_cfg)
    texts = fields + prompts[:3]
    before_vectors = encoder.encode(texts)
    add_lora(encoder, cfg)
    trainable = sum(p.numel() for p in encoder.model.parameters() if p.requires_grad)
    assert 0 < trainable < 200_000, "only the LoRA weights train"
    before = evaluate_loss(encoder, prompts, labels, fields, cfg)
    train_adapter(encoder, prompts, labels, fields, cfg)
    after = evaluate_loss(encoder, prompts, labels, fields, cfg)
    assert after < before
    encoder.model.save_pretrained(str(tmp_path / "adapter"), safe_serialization=True)
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    reloaded = HFEncoder(replace(enc_cfg, adapter=str(tmp_path / "adapter")))
    assert reloaded.key != HFEncoder(enc_cfg).key
    after_vectors = reloaded.encode(texts)
    assert not np.allclose(before_vectors, after_vectors, atol=1e-4)


@pytest.mark.slow
def test_run_ssft_as_a_ray_job_is_cached(prepared_synthetic, tmp_path):
    cfg = SSFTConfig(features_per_field=8, epochs=1, batch_size=16, max_length=48)
    dataset = load_dataset_config("synthetic")
    enc = EncoderConfig(max_length=48, device="cpu")
    adapter = run_ssft(prepared_synthetic, dataset, enc, cfg, tmp_path)
    assert (adapter / "adapter_config.json").is_file()
    report = ssft_report(adapter)
    assert report["examples"] > 0 and len(report["loss_history"]) == 1 and report["loss_after"] > 0
    mtime = (adapter / "adapter_model.safetensors").stat().st_mtime
    assert run_ssft(prepared_synthetic, dataset, enc, cfg, tmp_path) == adapter
    assert (adapter / "adapter_model.safetensors").stat().st_mtime == mtime, "reused, not retrained"
    other = run_ssft(prepared_synthetic, dataset, enc, replace(cfg, lora_r=4), tmp_path)
    assert other != adapter
