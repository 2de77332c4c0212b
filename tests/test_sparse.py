"""Dynamic-sparse MLPs: the nucleus mask by hand, adaptivity per sample, unchanged state dicts, the meter."""

import pytest
import torch
from torch import nn

from llmctr.config import ConfigError, parse_config
from llmctr.models import CTRModel, FieldInput, ModelConfig
from llmctr.models.sparse import ImportanceMask, SparseConfig, SparsityMeter, dense, sparse_masks

FIELDS = [FieldInput("user", "categorical", 50), FieldInput("item", "categorical", 80),
          FieldInput("price", "numeric")]


def _batch(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"user": torch.randint(0, 50, (n,), generator=g), "item": torch.randint(0, 80, (n,), generator=g),
            "price": torch.randn(n, generator=g)}


def test_nucleus_mask_by_hand():
    mask = ImportanceMask(nn.ReLU(), None, SparseConfig(mass=0.7, min_keep=0.0)).eval()
    h = torch.tensor([[4.0, 1.0, 3.0, 2.0]])  # total 10: 4 + 3 = 7 reaches 0.7 of it
    assert mask(h).tolist() == [[4.0, 0.0, 3.0, 0.0]]
    mask.config = SparseConfig(mass=0.71, min_keep=0.0)
    assert mask(h).tolist() == [[4.0, 0.0, 3.0, 2.0]]
    reader = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        reader.weight.copy_(torch.tensor([[0.0, 10.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.1]]))
    weighted = ImportanceMask(nn.ReLU(), reader, SparseConfig(mass=0.5, min_keep=0.0)).eval()
    assert weighted(h).tolist() == [[0.0, 1.0, 0.0, 0.0]], "importance = activation x the reader's column norm"


def test_units_kept_adapt_to_the_sample():
    mask = ImportanceMask(nn.Identity(), None, SparseConfig(mass=0.9, min_keep=0.0)).eval()
    peaked = torch.tensor([[10.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]])
    spread = torch.ones(1, 8)
    assert (mask(peaked) != 0).sum() == 1 and (mask(spread) != 0).sum() == 8
    floor = ImportanceMask(nn.Identity(), None, SparseConfig(mass=0.1, min_keep=0.5)).eval()
    assert (floor(spread) != 0).sum() == 4, "min_keep is a floor on the kept share"


def test_sparse_model_shares_the_dense_state_dict_and_masks_only_at_inference():
    torch.manual_seed(0)
    config = ModelConfig(name="dcnv2", embedding_dim=8, params={"hidden_units": [64, 32]},
                         dynamic_sparse=SparseConfig(mass=0.8))
    sparse_model = CTRModel(FIELDS, config)
    dense_model = CTRModel(FIELDS, ModelConfig(name="dcnv2", embedding_dim=8, params={"hidden_units": [64, 32]}))
    assert sparse_model.state_dict().keys() == dense_model.state_dict().keys()
    dense_model.load_state_dict(sparse_model.state_dict())
    batch = _batch()
    assert len(sparse_masks(sparse_model)) == 2
    assert torch.allclose(sparse_model.train()(batch).logit, dense_model.train()(batch).logit), "train: dense"
    with torch.no_grad():
        sparse_out = sparse_model.eval()(batch).logit
        assert not torch.allclose(sparse_out, dense_model.eval()(batch).logit)
        with dense(sparse_model):
            assert torch.allclose(sparse_model(batch).logit, dense_model(batch).logit)
    with pytest.raises(ConfigError):
        parse_config(ModelConfig, {"name": "deepfm", "dynamic_sparse": {"mass": 1.5}})


def test_meter_counts_kept_units_and_multiply_adds():
    torch.manual_seed(0)
    model = CTRModel(FIELDS, ModelConfig(name="deepfm", embedding_dim=8, params={"hidden_units": [128, 64]},
                                         dynamic_sparse=SparseConfig(mass=0.6))).eval()
    batch = _batch(256)
    with torch.no_grad():
        with SparsityMeter(model) as sparse_meter:
            model(batch)
        with dense(model), SparsityMeter(model) as relu_meter:
            model(batch)
    assert 0 < sparse_meter.active_fraction < relu_meter.active_fraction <= 1
    assert sparse_meter.mac_fraction < relu_meter.mac_fraction <= 1
    # the first Linear reads the dense embeddings: its multiply-adds are never saved
    first = model.backbone.dnn[0]
    assert sparse_meter.macs >= 256 * first.in_features * first.out_features
