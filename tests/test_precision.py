"""train.precision: bf16 autocast of the training forward pass (weights, loss and optimiser stay fp32)."""

import pytest
import torch

from llmctr.train.ctr import precision
from llmctr.train.ctr.loop import train_epoch

CPU = torch.device("cpu")


def test_bf16_context_runs_matmuls_in_bf16_and_keeps_weights_fp32():
    lin = torch.nn.Linear(8, 4)
    x = torch.randn(16, 8)
    with precision.autocast("bf16", CPU):
        y = lin(x)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(y, torch.ones_like(y))
    assert y.dtype == torch.bfloat16
    assert loss.dtype == torch.float32  # autocast's fp32 list: the loss is not computed in bf16
    loss.backward()
    assert lin.weight.dtype == lin.weight.grad.dtype == torch.float32
    with precision.autocast("fp32", CPU):
        assert lin(x).dtype == torch.float32


@pytest.mark.parametrize("native", [True, False])
def test_auto_picks_bf16_only_where_native(monkeypatch, native):
    monkeypatch.setattr(precision, "native_bf16", lambda device: native)
    assert precision.resolve_precision("auto", CPU) == ("bf16" if native else "fp32")
    assert precision.resolve_precision("fp32", CPU) == "fp32"
    assert precision.resolve_precision("bf16", CPU) == "bf16"  # explicit: honoured even when emulated


class _Objective:
    def __init__(self):
        self.dtypes = []

    def loss(self, model, batch):
        logit = model(batch["x"]).squeeze(-1)
        self.dtypes.append(logit.dtype)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logit.float(), batch["label"])
        return loss, {}


def test_train_epoch_forward_context_learns_in_bf16():
    """The loop's step under bf16 autocast: forward in bf16, and the model still learns a planted rule."""
    torch.manual_seed(0)
    x = torch.randn(4096, 8)
    label = (x[:, 0] + 0.5 * x[:, 1] > 0).float()
    batches = [{"x": x[i:i + 256], "label": label[i:i + 256]} for i in range(0, 4096, 256)]
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    objective = _Objective()
    first, *_ = train_epoch(model, objective, optimizer, None, batches, lambda: precision.autocast("bf16", CPU))
    for _ in range(3):
        last, *_ = train_epoch(model, objective, optimizer, None, batches,
                               lambda: precision.autocast("bf16", CPU))
    assert set(objective.dtypes) == {torch.bfloat16}
    assert last < 0.5 * first
    with torch.no_grad():
        accuracy = ((model(x).squeeze(-1) > 0).float() == label).float().mean()
    assert accuracy > 0.95
