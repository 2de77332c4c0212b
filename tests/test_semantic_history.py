"""Semantic history (llmctr.models.layers.semantic_history): the cosines, padding, a frozen table the artifact
carries, every backbone, config errors, and a planted signal only the items' LLM vectors carry."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from planted import fit_and_auc, history_feature_map

from llmctr.config import ConfigError, parse_config
from llmctr.models import CTRModel, FieldInput, ModelConfig, available
from llmctr.models.artifact import build_model, load_artifact, save_artifact
from llmctr.models.ctr_model import history_inputs
from llmctr.models.layers import HistoryConfig, SemanticHistoryConfig

B, L, D, S, ITEMS = 12, 6, 8, 10, 30
FIELDS = [FieldInput("user", "categorical", 20), FieldInput("item", "categorical", ITEMS),
          FieldInput("hist", "sequence", ITEMS, of="item", max_len=L, with_label=True)]


def table(seed: int = 0) -> torch.Tensor:
    t = torch.randn(ITEMS, S, generator=torch.Generator().manual_seed(seed))
    t[0] = 0.0  # padding
    return t


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    hist = torch.randint(2, ITEMS, (B, L), generator=g)
    lengths = torch.randint(0, L + 1, (B, 1), generator=g)
    lengths[0] = 0
    hist = hist.masked_fill(torch.arange(L) >= lengths, 0)
    return {"user": torch.randint(0, 20, (B,), generator=g), "item": torch.randint(2, ITEMS, (B,), generator=g),
            "hist": hist, "hist_label": torch.randint(0, 2, (B, L), generator=g) * (hist != 0)}


def model(name: str = "deepfm", fields=FIELDS, **semantic) -> CTRModel:
    torch.manual_seed(0)
    config = ModelConfig(name=name, embedding_dim=D, history=HistoryConfig(
        attention_units=[8], semantic=SemanticHistoryConfig(**semantic)))
    return CTRModel(fields, config, item_semantics=table())


def test_cosines_are_those_of_the_candidate_with_the_liked_and_disliked_means():
    layer = model().eval().semantic_history
    x = batch()
    mask = x["hist"] != 0
    got = layer.cosines(layer.table[x["item"]], x["hist"], mask, x["hist_label"])
    t = table()
    for b in range(B):
        for col, part in enumerate([mask[b] & (x["hist_label"][b] == 1), mask[b] & (x["hist_label"][b] == 0)]):
            if not part.any():
                assert got[b, col] == 0.0
                continue
            mean = F.normalize(t[x["hist"][b][part]], dim=-1).mean(0)
            expected = F.cosine_similarity(t[x["item"][b]], mean, dim=0)
            torch.testing.assert_close(got[b, col], expected, rtol=1e-5, atol=1e-5)


def test_padding_changes_nothing_and_the_table_is_frozen():
    m = model().eval()
    x = batch()
    other = dict(x, hist_label=torch.where(x["hist"] == 0, 1, x["hist_label"]))  # labels under padding
    torch.testing.assert_close(m(other).logit, m(x).logit, rtol=0, atol=0)
    assert "semantic_history.table" in m.state_dict()
    assert all(p is not m.semantic_history.table for p in m.parameters())
    m.train()
    m(x).logit.sum().backward()
    assert m.semantic_history.project.weight.grad.abs().sum() > 0
    assert m.semantic_history.cosine.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", available())
def test_every_backbone_gains_semantic_history(name):
    m = model(name, candidate=True)
    assert m.semantic_history.num_fields == 3
    out = m(batch())
    assert out.logit.shape == (B,) and torch.isfinite(out.logit).all()


def test_the_artifact_carries_the_vectors(tmp_path):
    fmap = history_feature_map()
    config = parse_config(ModelConfig, {"name": "fm", "embedding_dim": 4,
                                        "history": {"attention_units": [8], "semantic": {}}})
    vectors = torch.randn(10, S)
    tables = SimpleNamespace(meta={"entity_keys": {"user": "user", "movie": "item"}},
                             entities={"movie": vectors, "user": torch.randn(7, S)})
    torch.manual_seed(0)
    trained = build_model(fmap, config, semantics=tables).eval()
    assert config.history.semantic.dim == S  # set from the tables, so the saved config rebuilds without them
    path = save_artifact(tmp_path, "m", trained.state_dict(), config, fmap, {})
    loaded, _, _ = load_artifact(path)
    x = {"user": torch.tensor([2, 3]), "item": torch.tensor([2, 9]),
         "hist": torch.tensor([[5, 3, 0, 0], [2, 3, 4, 9]]), "hist_label": torch.tensor([[1, 0, 0, 0], [1, 1, 0, 1]])}
    torch.testing.assert_close(loaded(x).logit, trained(x).logit, rtol=0, atol=0)
    torch.testing.assert_close(loaded.semantic_history.table, F.normalize(vectors, dim=-1))


def test_config_errors():
    from llmctr.train.ctr.config import ExperimentConfig

    with pytest.raises(ConfigError, match="semantics"):
        parse_config(ExperimentConfig, {"name": "x", "dataset": "d", "model": {
            "name": "fm", "history": {"semantic": {}}}}, "experiment")
    config = ModelConfig(name="fm", embedding_dim=D, history=HistoryConfig(semantic=SemanticHistoryConfig()))
    with pytest.raises(ValueError, match="item vectors"):
        CTRModel(FIELDS, config)  # first build without the tables
    tables = SimpleNamespace(meta={"entity_keys": {"user": "user"}}, entities={"user": torch.randn(20, S)})
    with pytest.raises(ValueError, match="keyed by the history's item field 'item'"):
        history_inputs(FIELDS, config, tables)
    config.history.semantic.entity = "user"
    with pytest.raises(ValueError, match="keyed by 'user'"):
        history_inputs(FIELDS, config, tables)
    with pytest.raises(ValueError, match="one row per id"):
        CTRModel(FIELDS, ModelConfig(name="fm", embedding_dim=D, history=HistoryConfig(
            semantic=SemanticHistoryConfig())), item_semantics=torch.randn(ITEMS + 1, S))


def planted(n: int, seed: int, items: range, centres: torch.Tensor):
    """Items fall in 4 topics (their vectors: the topic's centre plus noise); click = the candidate's topic is the
    topic of the user's liked history items. ``items``: the ids drawn (train and test use disjoint ones)."""
    g = torch.Generator().manual_seed(seed)
    topic_of = torch.arange(200) % 4
    hist = torch.tensor(list(items))[torch.randint(0, len(items), (n, 8), generator=g)]
    liked_topic = torch.randint(0, 4, (n,), generator=g)
    labels = (topic_of[hist] == liked_topic.unsqueeze(1)).long()
    item = torch.tensor(list(items))[torch.randint(0, len(items), (n,), generator=g)]
    y = (topic_of[item] == liked_topic).float()
    return {"user": torch.randint(2, 50, (n,), generator=g), "item": item, "hist": hist, "hist_label": labels}, y


def test_learns_a_signal_only_the_item_vectors_carry_on_items_unseen_in_training():
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(4, S, generator=g) * 3
    vectors = centres[torch.arange(200) % 4] + torch.randn(200, S, generator=g)
    vectors[0] = 0.0
    train_x, train_y = planted(4000, 0, range(2, 100), centres)
    test_x, test_y = planted(1000, 1, range(100, 200), centres)  # candidates and histories never seen in training
    x = {k: torch.cat([train_x[k], test_x[k]]) for k in train_x}
    y = torch.cat([train_y, test_y])
    fields = [FieldInput("user", "categorical", 50), FieldInput("item", "categorical", 200),
              FieldInput("hist", "sequence", 200, of="item", max_len=8, with_label=True)]

    def fitted(semantic: bool) -> float:
        torch.manual_seed(0)
        history = HistoryConfig(attention_units=[16], semantic=SemanticHistoryConfig() if semantic else None)
        m = CTRModel(fields, ModelConfig(name="deepfm", embedding_dim=16, params={"hidden_units": [32]},
                                         history=history), item_semantics=vectors if semantic else None)
        return fit_and_auc(m, x, y, 4000, epochs=4)

    with_vectors, ids_only = fitted(True), fitted(False)
    assert with_vectors > 0.8, f"test AUC {with_vectors:.3f} with the item vectors"
    assert ids_only < 0.6, f"test AUC {ids_only:.3f} with id history only"


def test_elec_teacher_reads_the_semantic_history_its_student_does_not():
    from llmctr.models.distill import DistillConfig, build_pseudo_siamese

    student_config = ModelConfig(name="dcnv2", embedding_dim=D, history=HistoryConfig(attention_units=[8]))
    teacher_config = ModelConfig(name="dcnv2", embedding_dim=D, history=HistoryConfig(
        attention_units=[8], semantic=SemanticHistoryConfig()))
    tables = SimpleNamespace(meta={"entity_keys": {"user": "user", "movie": "item"}},
                             entities={"movie": table(), "user": torch.randn(20, S)})
    torch.manual_seed(0)
    pair = build_pseudo_siamese(FIELDS, student_config, DistillConfig(injection_units=(16, 8), teacher=teacher_config),
                                tables)
    assert pair.teacher.semantic_history is not None and pair.student.semantic_history is None
    out = pair(batch())
    assert out.teacher.logit.shape == out.student.logit.shape == (B,)
    torch.testing.assert_close(pair.teacher.semantic_history.table, F.normalize(table(), dim=-1))


def test_the_projected_table_is_kept_while_inferring_and_follows_new_weights():
    m = model().eval()
    x = batch()
    with torch.inference_mode():
        first = m(x).logit
        kept = m.semantic_history._cached[1]
        assert m(x).logit.equal(first) and m.semantic_history._cached[1] is kept
    other = model()  # other weights (seed 0 as well: perturb them)
    with torch.no_grad():
        other.semantic_history.project.weight.mul_(2.0)
    m.load_state_dict(other.state_dict())
    with torch.inference_mode():
        again = m(x).logit
    assert m.semantic_history._cached[1] is not kept and not again.equal(first)
    expected = m.semantic_history.project(m.semantic_history.table).detach()
    torch.testing.assert_close(m.semantic_history._cached[1], expected)


def test_a_model_built_under_inference_mode_scores():
    with torch.inference_mode():  # as a scorer that loads its artifact inside inference mode
        m = model().eval()
        first = m(batch()).logit
        assert m(batch()).logit.equal(first)
