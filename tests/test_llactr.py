"""LLaCTR's FRE/FIE plug-ins: the KL term's minimum, gradients, FIE's logit term, every backbone wrapped,
and an artifact round trip without the semantic tables."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from llmctr.data.feature_map import FeatureMap, FieldMap
from llmctr.models import CTRModel, FieldInput, ModelConfig, available
from llmctr.models.artifact import build_model, load_artifact, save_artifact
from llmctr.models.llactr import LLaCTRConfig

FIELDS = [FieldInput("user", "categorical", 20), FieldInput("tags", "multi_categorical", 15),
          FieldInput("price", "numeric"), FieldInput("item", "categorical", 30)]
S, B, D = 12, 16, 8


def make_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"user": torch.randint(0, 20, (B,), generator=g), "tags": torch.randint(0, 15, (B, 4), generator=g),
            "price": torch.rand(B, generator=g), "item": torch.randint(0, 30, (B,), generator=g)}


def field_semantics(seed: int = 0) -> torch.Tensor:
    return torch.randn(len(FIELDS), S, generator=torch.Generator().manual_seed(seed))


def make_model(name: str = "fm", fre: bool = True, fie: bool = True, target: str = "field", **kw) -> CTRModel:
    cfg = ModelConfig(name=name, embedding_dim=D,
                      llactr=LLaCTRConfig(fre=fre, fie=fie, fre_target=target, semantic_dim=S, **kw))
    features = {"user": torch.randn(20, S), "item": torch.randn(30, S), "tags": torch.randn(15, S)}
    return CTRModel(FIELDS, cfg, field_semantics=field_semantics(), feature_semantics=features)


def test_fre_kl_is_zero_when_the_embeddings_match_the_adapted_semantics():
    torch.manual_seed(0)
    model = make_model(fie=False, lambda_kl=1.0).train()
    plugin = model.llactr
    batch = make_batch()
    target = plugin.fre_adaptor(plugin.field_semantics).detach()  # [F, D]
    # a shift per vector leaves a softmax unchanged: the KL stays at its minimum 0
    matched = target.unsqueeze(0).expand(B, -1, -1) + torch.randn(B, len(FIELDS), 1)
    assert plugin.kl_loss(matched, batch).item() == pytest.approx(0.0, abs=1e-5)
    other = matched + torch.randn_like(matched)
    assert plugin.kl_loss(other, batch).item() > 1e-3
    assert model(batch).aux_loss.item() > 0
    assert model.eval()(batch).aux_loss is None, "the KL term is a training loss only"


def test_fre_gradients_reach_embeddings_and_adaptor():
    torch.manual_seed(0)
    model = make_model(fie=False).train()
    out = model(make_batch())
    out.aux_loss.backward()
    assert model.llactr.fre_adaptor.weight.grad.abs().sum() > 0
    emb = model.embedding
    for p in (emb.table.weight, emb.multi["tags"].weight, emb.numeric["price"]):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_fre_feature_target_uses_each_feature_semantic_vector():
    torch.manual_seed(0)
    model = make_model(fie=False, target="feature").train()
    batch = make_batch()
    targets = model.llactr.fre_targets(batch, B)
    assert targets.shape == (B, len(FIELDS), S)
    assert torch.allclose(targets[:, 0], model.llactr.feature_semantics_0[batch["user"]])
    assert torch.allclose(targets[:, 2], model.llactr.field_semantics[2].expand(B, -1)), "numeric: field vector"
    assert not any(k.startswith("llactr.feature_semantics") for k in model.state_dict()), "training-only buffers"


def test_fie_changes_the_logit_and_gets_gradients():
    torch.manual_seed(0)
    plain = CTRModel(FIELDS, ModelConfig(name="fm", embedding_dim=D))
    model = make_model(fre=False)
    model.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():
        model.embedding.table.weight.normal_()
        plain.embedding.table.weight.copy_(model.embedding.table.weight)
    batch = make_batch()
    out = model(batch)
    emb = model.embedding(batch)
    weights = model.llactr.pair_weights()
    pairs = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    expected = model.llactr.config.lambda_fm * sum(weights[p] * (emb[:, i] * emb[:, j]).sum(-1)
                                                   for p, (i, j) in enumerate(pairs))
    assert expected.abs().sum() > 0
    assert torch.allclose(out.logit - plain(batch).logit, expected, atol=1e-5), "logit = base + sum m'_kl <e_k, e_l>"
    F.binary_cross_entropy_with_logits(out.logit, torch.rand(B).round()).backward()
    assert model.llactr.fie_adaptor.weight.grad.abs().sum() > 0
    assert model.embedding.table.weight.grad.abs().sum() > 0


def test_fie_weights_start_at_the_field_cosine_similarities():
    model = make_model(fre=False)
    h = F.normalize(field_semantics(), dim=-1)
    assert torch.allclose(model.llactr.pair_weights()[0], h[0] @ h[1], atol=1e-6)


@pytest.mark.parametrize("name", available())
def test_every_backbone_runs_with_the_plugins(name):
    torch.manual_seed(0)
    model = make_model(name).train()
    out = model(make_batch())
    assert out.logit.shape == (B,) and torch.isfinite(out.logit).all()
    loss = F.binary_cross_entropy_with_logits(out.logit, torch.rand(B).round()) + out.aux_loss
    loss.backward()
    assert model.llactr.fie_adaptor.weight.grad.abs().sum() > 0
    assert model.llactr.fre_adaptor.weight.grad.abs().sum() > 0
    assert model.embedding.table.weight.grad.abs().sum() > 0


def _fmap() -> FeatureMap:
    return FeatureMap(dataset="t", fields=[
        FieldMap("user", "categorical", "user id", "user", vocab=[f"u{i}" for i in range(19)]),
        FieldMap("item", "categorical", "item id", "item", vocab=[f"i{i}" for i in range(7)])])


def test_artifact_rebuilds_without_the_semantic_tables(tmp_path):
    fmap = _fmap()
    names = [f.name for f in fmap.input_fields]
    tables = SimpleNamespace(fields=list(reversed(names)), field=np.random.rand(len(names), S).astype(np.float32),
                             features={n: np.random.rand(f.vocab_size, S).astype(np.float32)
                                       for n, f in zip(names, fmap.input_fields)})
    cfg = ModelConfig(name="deepfm", embedding_dim=D, llactr=LLaCTRConfig())
    model = build_model(fmap, cfg, semantics=tables).eval()
    assert cfg.llactr.semantic_dim == S
    assert torch.allclose(model.llactr.field_semantics[0], torch.as_tensor(tables.field[1])), "ordered by field"
    folder = save_artifact(tmp_path, "m", model.state_dict(), cfg, fmap, {})
    loaded, _, _ = load_artifact(folder)
    batch = {"user": torch.tensor([1, 2, 3]), "item": torch.tensor([0, 4, 8])}
    assert torch.allclose(loaded(batch).logit, model(batch).logit)
    with pytest.raises(ValueError, match="no semantic tables"):
        build_model(fmap, ModelConfig(name="fm", llactr=LLaCTRConfig()))


@pytest.mark.slow
def test_fit_llactr_experiment_end_to_end(ray_local, prepared_synthetic, tmp_path):
    """SSFT (tiny) → semantic tables → Ray Train with FRE+FIE → an artifact the serve Scorer loads without tables."""
    from llmctr.config import parse_config
    from llmctr.demo import sample_records
    from llmctr.serve.scorer import Scorer
    from llmctr.train import fit, load_experiment
    from llmctr.train.ctr.config import ExperimentConfig

    base = load_experiment("synthetic_deepfm")
    data = {"name": "synthetic_deepfm_llactr", "dataset": "synthetic",
            "model": {"name": "deepfm", "embedding_dim": 8, "params": base.model.params,
                      "llactr": {"lambda_kl": 0.1, "lambda_fm": 0.1}},
            "train": {"epochs": 1, "batch_size": 512, "lr": 1e-2},
            "semantics": {"encoder": {"max_length": 32, "device": "cpu"},
                          "ssft": {"features_per_field": 6, "epochs": 1, "batch_size": 16, "max_length": 48}}}
    exp = parse_config(ExperimentConfig, data)
    result = fit(exp, prepared_synthetic, artifacts=tmp_path)
    m = result.metrics
    assert m["test_auc"] > 0.55
    assert m["ssft_seconds"] > 0 and m["ssft_loss_after"] is not None
    scorer = Scorer.load(result.artifact)
    assert scorer.model.llactr is not None and scorer.model.config.llactr.semantic_dim > 0
    assert not any("feature_semantics" in k for k in scorer.model.state_dict())
    records, _ = sample_records(prepared_synthetic / "test", scorer.fmap, 20)
    probs = scorer.score(records)
    assert probs.shape == (20,) and np.isfinite(probs).all() and probs.std() > 0


def test_entity_target_describes_key_fields_by_their_entity_text():
    """``fre_target: entity``: the key field of each entity (here ``item``) takes its FRE target from the entity
    table (the item's own description), the other categorical fields from their feature tables."""
    fmap = _fmap()
    names = [f.name for f in fmap.input_fields]
    rng = np.random.default_rng(0)
    features = {n: rng.random((f.vocab_size, S), dtype=np.float32) for n, f in zip(names, fmap.input_fields)}
    entity = rng.random((fmap.field("item").vocab_size, S), dtype=np.float32)
    tables = SimpleNamespace(fields=names, field=rng.random((len(names), S), dtype=np.float32), features=features,
                             entities={"movie": entity}, meta={"entity_keys": {"movie": "item"}})
    batch = {"user": torch.tensor([1, 2, 3]), "item": torch.tensor([0, 4, 8])}
    for target, item_table in (("entity", entity), ("feature", features["item"])):
        cfg = ModelConfig(name="fm", embedding_dim=D, llactr=LLaCTRConfig(fie=False, fre_target=target))
        plugin = build_model(fmap, cfg, semantics=tables).train().llactr
        got = plugin.fre_targets(batch, 3)
        assert torch.allclose(got[:, names.index("item")], torch.as_tensor(item_table)[batch["item"]]), target
        assert torch.allclose(got[:, names.index("user")], torch.as_tensor(features["user"])[batch["user"]])
