import pytest
import torch

from llmctr.config import ConfigError, parse_config
from llmctr.data.feature_map import FeatureMap, FieldMap
from llmctr.models import CTRModel, FieldInput, ModelConfig
from llmctr.models.artifact import load_artifact, save_artifact

FIELDS = [FieldInput("user", "categorical", 12), FieldInput("item", "categorical", 9),
          FieldInput("tags", "multi_categorical", 6), FieldInput("price", "numeric")]


def _batch(n=8):
    g = torch.Generator().manual_seed(0)
    return {"user": torch.randint(0, 12, (n,), generator=g), "item": torch.randint(0, 9, (n,), generator=g),
            "tags": torch.randint(0, 6, (n, 3), generator=g), "price": torch.randn(n, generator=g)}


def test_deepfm_forward_backward_shapes():
    model = CTRModel(FIELDS, ModelConfig(name="deepfm", embedding_dim=8, params={"hidden_units": [32, 16]}))
    out = model(_batch())
    assert out.logit.shape == (8,)
    assert out.representation.shape == (8, 16) and model.backbone.representation_dim == 16
    out.logit.sum().backward()
    assert model.embedding.table.weight.grad.abs().sum() > 0
    assert model.embedding.multi["tags"].weight.grad[0].abs().sum() == 0, "padding row gets no gradient"
    assert model.embedding.numeric["price"].grad.abs().sum() > 0


def test_extra_vector_is_used():
    model = CTRModel(FIELDS, ModelConfig(name="deepfm", embedding_dim=8), extra_dim=5)
    batch = _batch()
    a = model(batch, torch.zeros(8, 5)).logit
    b = model(batch, torch.ones(8, 5)).logit
    assert not torch.allclose(a, b)


def test_dense_layers_start_xavier_normal_with_zero_bias():
    torch.manual_seed(0)
    xavier = CTRModel(FIELDS, ModelConfig(name="dcnv2", embedding_dim=8, params={"hidden_units": [64, 64]}))
    torch.manual_seed(0)
    default = CTRModel(FIELDS, ModelConfig(name="dcnv2", embedding_dim=8, params={"hidden_units": [64, 64]},
                                           dense_init="torch_default"))
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


def test_model_config_errors():
    with pytest.raises(ConfigError, match="unknown model"):
        parse_config(ModelConfig, {"name": "nope"})
    with pytest.raises(ConfigError, match="does not take"):
        parse_config(ModelConfig, {"name": "deepfm", "params": {"hiden_units": [1]}})


def test_artifact_roundtrip(tmp_path):
    fmap = FeatureMap(dataset="t", fields=[
        FieldMap(name="user", kind="categorical", description="", source="user", vocab=list("abcdefghij")),
        FieldMap(name="item", kind="categorical", description="", source="item", vocab=list("abcdefg")),
    ])
    config = ModelConfig(name="deepfm", embedding_dim=4, params={"hidden_units": [8]})
    model = CTRModel(FieldInput.from_feature_map(fmap), config)
    path = save_artifact(tmp_path, "m", model.state_dict(), config, fmap, {"test_auc": 0.5})
    assert (tmp_path / "m" / "LATEST").read_text().strip() == path.name
    loaded, fmap2, meta = load_artifact(tmp_path / "m")
    batch = {"user": torch.tensor([2, 5]), "item": torch.tensor([3, 1])}
    torch.testing.assert_close(loaded(batch).logit, model.eval()(batch).logit)
    assert meta["metrics"]["test_auc"] == 0.5 and fmap2.field("user").vocab == fmap.field("user").vocab


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
