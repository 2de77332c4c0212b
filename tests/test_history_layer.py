"""The history layer (llmctr.models.layers.history): masking, liked/disliked kept apart, gradients, every backbone
with history on, artifacts, config errors, and a planted signal only the history carries."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from planted import fit_and_auc, history_feature_map

from llmctr.config import ConfigError, parse_config
from llmctr.models import CTRModel, FieldInput, ModelConfig, available
from llmctr.models.artifact import load_artifact, save_artifact
from llmctr.models.layers import HistoryConfig, HistoryPooling
from llmctr.models.llactr import LLaCTRConfig

B, L, D = 16, 6, 8
FIELDS = [FieldInput("user", "categorical", 20), FieldInput("tags", "multi_categorical", 15),
          FieldInput("price", "numeric"), FieldInput("item", "categorical", 30),
          FieldInput("hist", "sequence", 30, of="item", max_len=L, with_label=True)]


def make_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    hist = torch.randint(2, 30, (B, L), generator=g)
    lengths = torch.randint(0, L + 1, (B, 1), generator=g)
    lengths[0] = 0  # one user without history
    hist = hist.masked_fill(torch.arange(L) >= lengths, 0)
    return {"user": torch.randint(0, 20, (B,), generator=g), "tags": torch.randint(0, 15, (B, 4), generator=g),
            "price": torch.rand(B, generator=g), "item": torch.randint(2, 30, (B,), generator=g),
            "hist": hist, "hist_label": torch.randint(0, 2, (B, L), generator=g) * (hist != 0)}


def history_model(name: str = "deepfm", fields=FIELDS, **history) -> CTRModel:
    torch.manual_seed(0)
    return CTRModel(fields, ModelConfig(name=name, embedding_dim=D, history=HistoryConfig(**history)))


def pooling_inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(B, L, generator=g) < 0.6
    mask[0] = False
    return (torch.randn(B, D, generator=g), torch.randn(B, L, D, generator=g), mask,
            torch.randint(0, 2, (B, L), generator=g))


@pytest.mark.parametrize("pooling", ["target_attention", "mean"])
@pytest.mark.parametrize("split", [True, False])
def test_padding_changes_nothing_and_empty_history_pools_to_zero(pooling, split):
    torch.manual_seed(0)
    layer = HistoryPooling(D, HistoryConfig(pooling=pooling), split=split)
    q, h, mask, labels = pooling_inputs()
    out = layer(q, h, mask, labels)
    noise = torch.randn(B, L, D) * 100
    other = layer(q, torch.where(mask.unsqueeze(-1), h, noise), mask, torch.where(mask, labels, 1 - labels))
    torch.testing.assert_close(out, other, rtol=0, atol=0)
    assert torch.isfinite(out).all()
    h.requires_grad_(True)
    empty = layer(q, h, torch.zeros_like(mask), labels)
    expected = layer.project.bias.expand(B, D) if split else torch.zeros(B, D)
    torch.testing.assert_close(empty, expected)
    empty.sum().backward()
    assert h.grad.abs().sum() == 0, "an empty history passes no gradient to its padding"
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters() if p.grad is not None)


def test_mean_pooling_is_the_masked_mean():
    layer = HistoryPooling(D, HistoryConfig(pooling="mean", split_by_label=False), split=False)
    q, h, mask, _ = pooling_inputs()
    m = mask.unsqueeze(-1).float()
    torch.testing.assert_close(layer(q, h, mask), (h * m).sum(1) / m.sum(1).clamp(min=1))


@pytest.mark.parametrize("pooling", ["target_attention", "mean"])
def test_liked_and_disliked_are_kept_apart(pooling):
    torch.manual_seed(0)
    q, h, mask, labels = pooling_inputs()
    split = HistoryPooling(D, HistoryConfig(pooling=pooling), split=True)
    swapped = split(q, h, mask, 1 - labels)
    assert not torch.allclose(split(q, h, mask, labels)[1:], swapped[1:])
    one_pool = HistoryPooling(D, HistoryConfig(pooling=pooling, split_by_label=False), split=False)
    torch.testing.assert_close(one_pool(q, h, mask, labels), one_pool(q, h, mask, 1 - labels))


def test_padding_inside_the_model_changes_nothing():
    model = history_model().eval()
    batch = make_batch()
    out = model(batch).logit
    with torch.no_grad():  # the item field's padding row (id 0), and labels at padding positions
        row = model.embedding.offsets[model.embedding.cat_names.index("item")]
        model.embedding.table.weight[row] = 5.0
    noisy = dict(batch, hist_label=torch.where(batch["hist"] == 0, 1, batch["hist_label"]))
    torch.testing.assert_close(model(noisy).logit, out)


def test_gradients_reach_history_rows_and_attention():
    model = history_model()
    batch = make_batch()
    batch["hist"][1:, 0] = 29  # an item that is never a candidate
    batch["item"] = batch["item"].clamp(max=28)
    F.binary_cross_entropy_with_logits(model(batch).logit, torch.rand(B).round()).backward()
    emb = model.embedding
    row = emb.offsets[emb.cat_names.index("item")] + 29
    assert emb.table.weight.grad[row].abs().sum() > 0, "the history item's shared embedding row learns"
    for name, p in model.history.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_stop_gradient_leaves_history_rows_untrained():
    model = history_model(stop_gradient=True)
    batch = make_batch()
    batch["hist"][1:, 0] = 29  # an item that is never a candidate: only the history could train its row
    batch["item"] = batch["item"].clamp(max=28)
    F.binary_cross_entropy_with_logits(model(batch).logit, torch.rand(B).round()).backward()
    emb = model.embedding
    offset = emb.offsets[emb.cat_names.index("item")]
    assert emb.table.weight.grad[offset + 29].abs().sum() == 0
    assert emb.table.weight.grad[offset + batch["item"][0]].abs().sum() > 0, "candidate rows still learn"
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.history.parameters())


@pytest.mark.parametrize("pooling", ["target_attention", "mean"])
def test_item_dropout_only_while_training(pooling):
    torch.manual_seed(0)
    layer = HistoryPooling(D, HistoryConfig(pooling=pooling, item_dropout=0.5), split=True)
    plain = HistoryPooling(D, HistoryConfig(pooling=pooling), split=True)
    plain.load_state_dict(layer.state_dict())
    q, h, mask, labels = pooling_inputs()
    layer.eval()
    plain.eval()
    torch.testing.assert_close(layer(q, h, mask, labels), plain(q, h, mask, labels), rtol=0, atol=0)
    layer.train()
    torch.manual_seed(1)
    first = layer(q, h, mask, labels)
    assert not torch.allclose(first[1:], plain(q, h, mask, labels)[1:]), "training drops history positions"
    assert not torch.allclose(first[1:], layer(q, h, mask, labels)[1:]), "a fresh draw each step"
    assert torch.isfinite(first).all()
    with pytest.raises(ConfigError, match="item_dropout"):
        parse_config(HistoryConfig, {"item_dropout": 1.0}, "history")


@pytest.mark.parametrize("name", available())
@pytest.mark.parametrize("pooling", ["target_attention", "mean"])
def test_every_backbone_gains_history(name, pooling):
    model = history_model(name, pooling=pooling)
    assert model.backbone.num_fields == 5 and model.embedding.num_fields == 4
    out = model(make_batch())
    assert out.logit.shape == (B,) and torch.isfinite(out.logit).all()
    F.binary_cross_entropy_with_logits(out.logit, torch.rand(B).round()).backward()
    assert model.embedding.table.weight.grad.abs().sum() > 0
    plain = CTRModel(FIELDS, ModelConfig(name=name, embedding_dim=D))  # sequence fields ignored
    assert plain.backbone.num_fields == 4
    assert plain(make_batch()).logit.shape == (B,)


def test_history_without_labels_pools_once():
    fields = [*FIELDS[:4], FieldInput("hist", "sequence", 30, of="item", max_len=L)]
    model = history_model(fields=fields)
    assert model.history.project is None
    batch = make_batch()
    del batch["hist_label"]
    assert model(batch).logit.shape == (B,)


def test_llactr_sees_only_the_static_fields():
    torch.manual_seed(0)
    config = ModelConfig(name="fm", embedding_dim=D, history=HistoryConfig(),
                         llactr=LLaCTRConfig(semantic_dim=3))
    static = [f for f in FIELDS if f.kind != "sequence"]  # the semantic tables describe the row's own fields
    model = CTRModel(FIELDS, config, field_semantics=torch.randn(len(static), 3))
    assert model.llactr.field_names == ["user", "tags", "price", "item"]
    assert model(make_batch()).logit.shape == (B,)


def test_config_errors():
    with pytest.raises(ValueError, match="no input field is a sequence.*user"):
        history_model(fields=FIELDS[:4])
    with pytest.raises(ValueError, match="not a sequence field"):
        history_model(field="user")
    with pytest.raises(ValueError, match="not a categorical input field"):
        history_model(fields=[*FIELDS[:3], FieldInput("hist", "sequence", 30, of="item", max_len=L)])
    with pytest.raises(ConfigError):
        parse_config(ModelConfig, {"name": "deepfm", "history": {"pooling": "max"}})
    with pytest.raises(ConfigError):
        parse_config(ModelConfig, {"name": "deepfm", "history": {"poolin": "mean"}})


def test_artifact_roundtrip(tmp_path):
    fmap = history_feature_map()
    fields = FieldInput.from_feature_map(fmap)
    assert fields[2] == FieldInput("hist", "sequence", 10, of="item", max_len=4, with_label=True)
    config = parse_config(ModelConfig, {"name": "dcnv2", "embedding_dim": 4,
                                        "history": {"attention_units": [8], "pooling": "target_attention"}})
    torch.manual_seed(0)
    model = CTRModel(fields, config).eval()
    path = save_artifact(tmp_path, "m", model.state_dict(), config, fmap, {})
    loaded, _, _ = load_artifact(path)
    assert loaded.config.history == config.history
    batch = {"user": torch.tensor([2, 3, 4]), "item": torch.tensor([2, 5, 9]),
             "hist": torch.tensor([[5, 3, 0, 0], [0, 0, 0, 0], [2, 3, 4, 9]]),
             "hist_label": torch.tensor([[1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 0, 1]])}
    torch.testing.assert_close(loaded(batch).logit, model(batch).logit, rtol=0, atol=0)


def planted_history(n: int, seed: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Items 2..41; click = the candidate is among the user's liked history items. Half the rows get the
    candidate planted at a liked position, a quarter at a disliked one (no click: the label matters); the static
    fields are noise."""
    g = torch.Generator().manual_seed(seed)
    hist = torch.randint(2, 42, (n, 10), generator=g)
    lengths = torch.randint(1, 11, (n, 1), generator=g)
    valid = torch.arange(10) < lengths
    hist = hist * valid
    labels = torch.randint(0, 2, (n, 10), generator=g) * valid
    item = torch.randint(2, 42, (n,), generator=g)
    pos = (torch.rand(n, generator=g) * lengths.squeeze(1)).long()
    plant = torch.rand(n, generator=g)
    rows = torch.nonzero(plant < 0.75).squeeze(1)
    hist[rows, pos[rows]] = item[rows]
    labels[rows, pos[rows]] = (plant[rows] < 0.5).long()
    y = ((hist == item.unsqueeze(1)) & (labels == 1)).any(1).float()
    return {"user": torch.randint(2, 50, (n,), generator=g), "item": item, "hist": hist, "hist_label": labels}, y


def planted_auc(history: HistoryConfig | None) -> float:
    fields = [FieldInput("user", "categorical", 50), FieldInput("item", "categorical", 42),
              FieldInput("hist", "sequence", 42, of="item", max_len=10, with_label=True)]
    x, y = planted_history(5000)
    n_train = 4000
    torch.manual_seed(0)
    model = CTRModel(fields, ModelConfig(name="deepfm", embedding_dim=16, params={"hidden_units": [64, 32]},
                                         history=history))
    return fit_and_auc(model, x, y, n_train, epochs=5)


def test_learns_a_signal_only_the_history_carries():
    with_history = planted_auc(HistoryConfig(attention_units=[32]))
    without = planted_auc(None)
    assert with_history > 0.7, f"test AUC {with_history:.3f} with history"
    assert without < 0.6, f"test AUC {without:.3f} without history"


def test_attention_by_parts_equals_the_mlp_on_the_concatenation():
    torch.manual_seed(0)
    layer = HistoryPooling(D, HistoryConfig(), split=True)
    q, h, _, _ = pooling_inputs()
    k = q.unsqueeze(1).expand_as(h)
    expected = layer.attention(torch.cat([k, h, k - h, k * h], dim=-1)).squeeze(-1)
    torch.testing.assert_close(layer.scores(q, h), expected, rtol=1e-5, atol=1e-5)


def test_max_len_pools_only_the_most_recent_entries():
    model = history_model(max_len=3).eval()
    batch = make_batch()
    older = dict(batch, hist=batch["hist"].clone(), hist_label=batch["hist_label"].clone())
    older["hist"][:, 3:] = torch.randint(2, 30, (B, L - 3))  # change only what lies beyond the 3 most recent
    older["hist_label"][:, 3:] = 1 - older["hist_label"][:, 3:]
    torch.testing.assert_close(model(older).logit, model(batch).logit)
    older["hist"][:, 2] = 29
    assert not torch.allclose(model(older).logit, model(batch).logit)


def test_elec_teacher_and_student_both_read_the_history():
    from llmctr.models.distill import DistillConfig, InstanceSemantics, PseudoSiamese, teacher_config

    torch.manual_seed(0)
    student_config = ModelConfig(name="dcnv2", embedding_dim=D, history=HistoryConfig(max_len=4, item_dropout=0.5))
    cfg = DistillConfig(alpha=0.1, beta=0.1, tau=1.0, injection_units=(16, 8))
    teacher = CTRModel(FIELDS, teacher_config(student_config, cfg), extra_dim=8)
    student = CTRModel(FIELDS, student_config)
    model = PseudoSiamese(teacher, student, InstanceSemantics(entities={"item": torch.randn(30, 6)}), cfg).eval()
    assert teacher.history is not None and student.history is not None
    batch = make_batch()
    out = model(batch)
    changed = dict(batch, hist=batch["hist"].roll(1, dims=0), hist_label=batch["hist_label"].roll(1, dims=0))
    moved = model(changed)
    assert not torch.allclose(out.student.logit, moved.student.logit)
    assert not torch.allclose(out.teacher.logit, moved.teacher.logit)
