"""Every registered backbone: shapes, gradients, the extra-vector path, dense init, config errors, artifacts, and
learning a planted interaction."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from planted import fit_and_auc

from llmctr.config import ConfigError, parse_config
from llmctr.data.feature_map import FeatureMap, FieldMap
from llmctr.models import CTRModel, FieldInput, ModelConfig, available, get_backbone
from llmctr.models.artifact import load_artifact, save_artifact
from llmctr.models.backbones.base import Backbone

NAMES = available()
FIELDS = [FieldInput("user", "categorical", 20), FieldInput("tags", "multi_categorical", 15),
          FieldInput("price", "numeric"), FieldInput("item", "categorical", 30)]
B = 16


def make_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"user": torch.randint(0, 20, (B,), generator=g),
            "tags": torch.randint(0, 15, (B, 4), generator=g),
            "price": torch.rand(B, generator=g),
            "item": torch.randint(0, 30, (B,), generator=g)}


def make_model(name: str, extra_dim: int = 0, dim: int = 8, fields=FIELDS) -> CTRModel:
    return CTRModel(fields, ModelConfig(name=name, embedding_dim=dim), extra_dim=extra_dim)


def test_zoo_is_registered():
    assert {"deepfm", "fm", "fwfm", "fmfm", "dcnv2", "autoint", "finalmlp", "wukong"} <= set(NAMES)
    for name in NAMES:
        assert issubclass(get_backbone(name), Backbone)


@pytest.mark.parametrize("name", NAMES)
def test_forward_backward(name):
    torch.manual_seed(0)
    model = make_model(name)
    out = model(make_batch())
    assert out.logit.shape == (B,)
    assert out.representation.shape == (B, model.backbone.representation_dim)
    assert torch.isfinite(out.logit).all() and torch.isfinite(out.representation).all()
    F.binary_cross_entropy_with_logits(out.logit, torch.rand(B).round()).backward()
    emb = model.embedding
    for param in (emb.table.weight, emb.multi["tags"].weight, emb.numeric["price"]):
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert emb.multi["tags"].weight.grad[0].abs().sum() == 0, "the padding row gets no gradient"


@pytest.mark.parametrize("name", NAMES)
def test_extra_vector(name):
    torch.manual_seed(0)
    model = make_model(name, extra_dim=5).eval()
    batch = make_batch()
    extra = torch.randn(B, 5)
    out = model(batch, extra)
    assert out.logit.shape == (B,)
    assert out.representation.shape == (B, model.backbone.representation_dim)
    other = model(batch, torch.randn(B, 5))
    assert not torch.allclose(out.logit, other.logit)
    assert not torch.allclose(out.representation, other.representation)
    model.train()
    F.binary_cross_entropy_with_logits(model(batch, extra).logit, torch.rand(B).round()).backward()
    assert model.embedding.table.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_artifact_roundtrip(name, tmp_path):
    fmap = FeatureMap(dataset="t", fields=[
        FieldMap(name=n, kind="categorical", description="", source=n, vocab=list("abcdefg")) for n in "uvw"])
    torch.manual_seed(0)
    config = ModelConfig(name=name, embedding_dim=4)
    model = CTRModel(FieldInput.from_feature_map(fmap), config).eval()
    path = save_artifact(tmp_path, name, model.state_dict(), config, fmap, {"test_auc": 0.5})
    assert (tmp_path / name / "LATEST").read_text().strip() == path.name
    loaded, fmap2, meta = load_artifact(tmp_path / name)
    batch = {n: torch.tensor([2, 5, 0]) for n in "uvw"}
    torch.testing.assert_close(loaded(batch).logit, model(batch).logit)
    assert meta["metrics"]["test_auc"] == 0.5 and fmap2.field("u").vocab == fmap.field("u").vocab


def planted_data(n: int = 6000, seed: int = 0):
    """4 categorical fields of 10 values; clicks depend only on whether fields 0 and 1 agree in a hidden sign
    (an XOR: no single field carries any signal)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 10, (n, 4), generator=g)
    sign = torch.randint(0, 2, (2, 10), generator=g)
    agree = (sign[0][x[:, 0]] == sign[1][x[:, 1]]).float()
    y = torch.bernoulli(0.15 + 0.7 * agree, generator=g)
    return {f"f{i}": x[:, i] for i in range(4)}, y


PLANTED_FIELDS = [FieldInput(f"f{i}", "categorical", 10) for i in range(4)]


@pytest.mark.parametrize("name", NAMES)
def test_learns_planted_interaction(name):
    torch.manual_seed(0)
    x, y = planted_data()
    n_train = 5000
    model = make_model(name, fields=PLANTED_FIELDS)
    auc = fit_and_auc(model, x, y, n_train, epochs=4)
    assert auc > 0.7, f"{name}: test AUC {auc:.3f} on the planted interaction"


def test_unknown_model_raises():
    with pytest.raises(ConfigError, match="unknown model"):
        get_backbone("no_such_model")
    with pytest.raises(ConfigError, match="unknown model"):
        parse_config(ModelConfig, {"name": "no_such_model"})


@pytest.mark.parametrize("name", NAMES)
def test_bad_hyperparameter_name_raises(name):
    with pytest.raises(ConfigError, match="does not take"):
        parse_config(ModelConfig, {"name": name, "params": {"no_such_param": 1}})
    with pytest.raises(ValueError, match="does not take"):
        ModelConfig(name=name, params={"no_such_param": 1})


@pytest.mark.parametrize("name, params", [("dcnv2", {"structure": "sideways"}),
                                          ("fmfm", {"field_interaction_type": "cubed"}),
                                          ("finalmlp", {"fs1_context": [9]}),
                                          ("finalmlp", {"mlp1_hidden_units": [30], "num_heads": 4}),
                                          ("autoint", {"attention_dim": 30, "num_heads": 4})])
def test_bad_hyperparameter_value_raises(name, params):
    with pytest.raises(ValueError):
        CTRModel(FIELDS, ModelConfig(name=name, embedding_dim=8, params=params))


@pytest.mark.parametrize("name, params", [("dcnv2", {"structure": "stacked", "hidden_units": [32]}),
                                          ("dcnv2", {"structure": "crossnet_only"}),
                                          ("autoint", {"hidden_units": []}),
                                          ("finalmlp", {"use_fs": False}),
                                          ("finalmlp", {"fs1_context": [0], "fs2_context": [1, 3]}),
                                          ("fmfm", {"field_interaction_type": "vectorized"})])
@pytest.mark.parametrize("extra_dim", [0, 5])
def test_variants(name, params, extra_dim):
    model = CTRModel(FIELDS, ModelConfig(name=name, embedding_dim=8, params=params), extra_dim=extra_dim)
    out = model(make_batch(), torch.randn(B, 5) if extra_dim else None)
    assert out.logit.shape == (B,)
    assert out.representation.shape == (B, model.backbone.representation_dim)


def test_dense_layers_start_xavier_normal_with_zero_bias():
    config = {"name": "dcnv2", "embedding_dim": 8, "params": {"hidden_units": [64, 64]}}
    torch.manual_seed(0)
    xavier = CTRModel(FIELDS, parse_config(ModelConfig, config))
    torch.manual_seed(0)
    default = CTRModel(FIELDS, parse_config(ModelConfig, {**config, "dense_init": "torch_default"}))
    linears = [m for m in xavier.backbone.modules() if isinstance(m, torch.nn.Linear)]
    assert linears
    for m in linears:
        fan_out, fan_in = m.weight.shape
        assert m.weight.std().item() == pytest.approx((2.0 / (fan_in + fan_out)) ** 0.5, rel=0.25)
        assert m.bias is None or m.bias.abs().sum() == 0
    default_biases = [m.bias for m in default.backbone.modules()
                      if isinstance(m, torch.nn.Linear) and m.bias is not None]
    assert any(b.abs().sum() > 0 for b in default_biases), "torch_default keeps PyTorch's own init"
    with pytest.raises(ConfigError):
        parse_config(ModelConfig, {"name": "fm", "dense_init": "uniform"})


def test_incompatible_artifact_fails_with_a_clear_error(tmp_path):
    import json

    fmap = FeatureMap(dataset="t", fields=[
        FieldMap(name="user", kind="categorical", description="", source="user", vocab=list("abc"))])
    config = ModelConfig(name="deepfm", embedding_dim=4, params={"hidden_units": [8]})
    path = save_artifact(tmp_path, "m", CTRModel(FieldInput.from_feature_map(fmap), config).state_dict(),
                         config, fmap, {})
    meta = json.loads((path / "model_config.json").read_text())
    meta["model"]["embedding_dim"] = 8
    (path / "model_config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="does not match"):
        load_artifact(path)
