"""The early-exit LLM head: residual heads start as the student, the joint loss, exit behaviour (full depth,
first head, rows that leave skip later layers), threshold calibration, the RAG text, a planted signal learnt,
and the Ray Train job end to end with the artifact's round trip."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from llmctr.config import ConfigError, parse_config
from llmctr.models.early_exit import early_exit_predict, exit_confidence
from llmctr.models.llm_head import build_exit_model
from llmctr.models.llm_head_config import EarlyExitConfig, LoraSettings, load_llm_head_config
from llmctr.semantics.encoders import EncoderConfig, mean_pool
from llmctr.train.llm_head.calibration import calibrate_thresholds, simulate_exit
from llmctr.train.llm_head.rows import TEXT
from llmctr.train.llm_head.worker import joint_exit_loss, train_epoch

TEXTS = ["The shopper's segment is g1. The product's category is shoes.", "short",
         "The product's category is books and the shopper liked many books before, again and again.",
         "The device the shopper used is mobile.", "g7 c3", "The hour of day of the visit is 13."]


def _config(model: str, exit_layers: list[int], lora: bool = False, **overrides) -> EarlyExitConfig:
    return EarlyExitConfig(name="t", dataset="synthetic", exit_layers=exit_layers,
                           encoder=EncoderConfig(model=model, max_length=32, device="cpu"),
                           lora=LoraSettings(r=2, alpha=4, dropout=0.0) if lora else None, head_hidden=16,
                           dropout=0.0, **overrides)


@pytest.fixture(params=["bert", "llama"])
def family(request, tiny_bert, tiny_llama):
    """(model with random non-zero heads, encoder, tokens of TEXTS) for each supported layer stack."""
    path, exits = (tiny_bert, [1, 2, 3]) if request.param == "bert" else (tiny_llama, [1, 2])
    torch.manual_seed(1)
    model, encoder = build_exit_model(_config(path, exits, lora=True))
    for head in model.heads:
        torch.nn.init.normal_(head.net[-1].weight, std=2.0)
    return model.eval(), encoder, encoder.tokenize(TEXTS)


def test_untrained_heads_answer_exactly_as_the_student(tiny_bert, tiny_llama):
    base = torch.tensor([-2.0, 0.0, 0.7, 3.5, -0.1, 1.0])
    for path, exits in ((tiny_bert, [1, 3]), (tiny_llama, [1, 2])):
        model, encoder = build_exit_model(_config(path, exits, lora=True))
        with torch.no_grad():
            logits = model.eval()(**encoder.tokenize(TEXTS), base_logit=base)
            plain = model(**encoder.tokenize(TEXTS))
        assert logits.shape == (6, len(exits))
        assert torch.equal(logits, base.unsqueeze(1).expand(6, len(exits)))
        assert torch.equal(plain, torch.zeros(6, len(exits)))


def test_layer_by_layer_pooling_matches_hugging_face(family):
    model, encoder, tokens = family
    with torch.no_grad():
        hidden = model.transformer(**tokens, output_hidden_states=True).hidden_states
        logits = model(**tokens)
    # a decoder's last hidden state comes out of its final norm in Hugging Face; exits read the layer's output
    checked = model.exit_layers if hasattr(model.stack.t, "encoder") else model.exit_layers[:-1]
    for k, layer in enumerate(checked):
        expected = model.heads[k](mean_pool(hidden[layer], tokens["attention_mask"]))
        torch.testing.assert_close(logits[:, k], expected, atol=1e-5, rtol=1e-5)


def test_joint_loss_weighs_heads_by_depth():
    cfg = _config("unused", [2, 6])
    assert cfg.loss_weights() == [0.25, 0.75]
    assert _config("unused", [2, 4, 6], head_weights=[1, 1, 2]).loss_weights() == [0.25, 0.25, 0.5]
    loss = joint_exit_loss(torch.tensor([[0.0, 2.0]]), torch.tensor([1.0]), torch.tensor(cfg.loss_weights()))
    # BCE(0, 1) = log 2, BCE(2, 1) = log(1 + e^-2)
    assert loss.item() == pytest.approx(0.25 * math.log(2) + 0.75 * math.log(1 + math.exp(-2)), rel=1e-6)


def test_config_errors_name_the_problem(tiny_bert):
    with pytest.raises(ConfigError, match="head_weights must be 3"):
        parse_config(EarlyExitConfig, {"name": "x", "dataset": "ml1m", "exit_layers": [2, 4, 6],
                                       "head_weights": [1, 2]}, "x.yaml")
    with pytest.raises(ConfigError, match="x.yaml.*exit_layrs"):
        parse_config(EarlyExitConfig, {"name": "x", "dataset": "ml1m", "exit_layrs": [2]}, "x.yaml")
    with pytest.raises(ValueError, match=r"within 1\.\.3"):
        build_exit_model(_config(tiny_bert, [2, 4]))
    assert load_llm_head_config("ml1m_minilm").student == "ml1m_dcnv2_elec"


def test_never_exiting_is_full_depth_and_zero_thresholds_exit_at_the_first_head(family):
    model, _, tokens = family
    with torch.no_grad():
        full = torch.sigmoid(model(**tokens)).numpy()
    last = len(model.exit_layers) - 1
    res = early_exit_predict(model, **tokens, thresholds=[1.0] * (last + 1))
    np.testing.assert_allclose(res.probs, full[:, -1], atol=1e-6)
    assert (res.exit_head == last).all() and (res.layers_run == model.exit_layers[-1]).all()
    res = early_exit_predict(model, **tokens, thresholds=[0.0] * (last + 1))
    np.testing.assert_allclose(res.probs, full[:, 0], atol=1e-6)
    assert (res.exit_head == 0).all() and (res.layers_run == model.exit_layers[0]).all()


def test_rows_that_exit_skip_the_later_layers(family):
    model, _, tokens = family
    with torch.no_grad():
        full = torch.sigmoid(model(**tokens)).numpy()
    thresholds = [float(np.median(exit_confidence(full[:, k]))) for k in range(full.shape[1])]
    rows_seen = [0] * len(model.stack.layers)
    hooks = [layer.register_forward_hook(lambda mod, args, out, i=i: rows_seen.__setitem__(
        i, rows_seen[i] + args[0].shape[0])) for i, layer in enumerate(model.stack.layers)]
    try:
        res = early_exit_predict(model, **tokens, thresholds=thresholds)
    finally:
        for hook in hooks:
            hook.remove()
    expected_probs, expected_heads = simulate_exit(full, thresholds)  # the calibration's rule is the model's
    np.testing.assert_array_equal(res.exit_head, expected_heads)
    np.testing.assert_allclose(res.probs, expected_probs, atol=1e-5)
    assert 0 < (res.exit_head == 0).sum() < len(TEXTS), "the median threshold sends some rows out at head 0"
    for index in range(len(rows_seen)):
        still_running = int((res.layers_run > index).sum())
        assert rows_seen[index] == still_running, f"layer {index + 1} ran {rows_seen[index]} rows"


def _constructed_case(n: int = 4000, seed: int = 0):
    """Easy rows: every head sure and right (head 0 at 0.97/0.03, full depth at ~0.98/0.02); hard rows: the full
    head weakly right (0.3..0.7), the early heads unsure and wrong. Exiting the easy rows at head 0 keeps the AUC
    exactly; any hard row exiting early loses AUC."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    easy = rng.random(n) < 0.5
    sign = 2 * y - 1
    full = np.where(easy, 0.5 + sign * (0.48 + rng.uniform(0, 0.015, n)), 0.5 + sign * rng.uniform(0.0, 0.2, n))
    head0 = np.where(easy, 0.5 + sign * 0.47, 0.5 - 0.2 * (full - 0.5))
    head1 = np.where(easy, head0, 0.5 - 0.9 * (full - 0.5))
    return np.stack([head0, head1, full], 1), y, easy


def test_calibration_picks_the_cheapest_thresholds_within_the_target():
    probs, y, easy = _constructed_case()
    cal = calibrate_thresholds(probs, y, [2, 4, 6], target_auc_loss=0.001)
    assert cal.chosen.auc >= cal.full_depth.auc - 0.001
    assert cal.chosen.mean_layers == pytest.approx(2 * easy.mean() + 6 * (1 - easy.mean()))  # easy out at 2
    _, heads = simulate_exit(probs, cal.chosen.thresholds)
    np.testing.assert_array_equal(heads, np.where(easy, 0, 2))
    summary = cal.summary()
    assert summary["valid_depth_cut"] == pytest.approx(1 - cal.chosen.mean_layers / 6)
    assert len(summary["shared_sweep"]) == 21 and summary["thresholds"][-1] == 1.0
    loose = calibrate_thresholds(probs, y, [2, 4, 6], target_auc_loss=1.0)
    assert loose.chosen.mean_layers == 2.0, "with no AUC constraint every row leaves at the first head"


def test_fit_rows_come_from_the_chosen_split_and_never_overlap_calibration():
    from llmctr.train.llm_head.rows import fit_and_calibration_rows

    train = pd.DataFrame({"x": np.arange(100)})
    valid = pd.DataFrame({"x": np.arange(1000, 1040)})
    cfg = _config("unused", [1])
    cfg.train = replace(cfg.train, sample=30, valid_sample=10)
    fit, calibration, source = fit_and_calibration_rows(cfg, train, valid)
    assert len(fit) == 30 and fit["x"].lt(100).all() and source == 100 and len(calibration) == 10
    assert fit["x"].is_monotonic_increasing, "the sample keeps the split's (time) order"
    cfg.train = replace(cfg.train, fit_split="valid", sample=None)
    fit, calibration, source = fit_and_calibration_rows(cfg, train, valid)
    assert source == 30 and len(fit) == 30 and fit["x"].ge(1000).all()
    assert not set(fit["x"]) & set(calibration["x"])
    cfg.train = replace(cfg.train, valid_sample=None)
    with pytest.raises(ValueError, match="no validation rows are left"):
        fit_and_calibration_rows(cfg, train, valid)


def test_heads_learn_a_planted_signal(tiny_bert):
    """Click iff the product is in a liked category or the shopper in a keen segment (plus noise): the heads,
    reading only the text, must rank held-out rows well."""
    rng = np.random.default_rng(0)
    cats, segs = ["shoes", "books", "toys", "games"], ["gold", "silver", "bronze"]
    c, s = rng.integers(0, 4, 1200), rng.integers(0, 3, 1200)
    p = 1 / (1 + np.exp(-(3.0 * np.isin(c, [0, 2]) + 2.0 * (s == 0) - 2.5)))
    y = (rng.random(1200) < p).astype(np.float32)
    texts = np.array([f"The shopper's segment is {segs[j]}. The product's category is {cats[i]}." for i, j in
                      zip(c, s)], dtype=object)
    cfg = _config(tiny_bert, [1, 3], lora=True)
    torch.manual_seed(0)
    model, encoder = build_exit_model(cfg)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    train = {TEXT: texts[:1000], "base_logit": np.zeros(1000, np.float32), "label": y[:1000]}
    for epoch in range(3):
        train_epoch(model, encoder, train, optimizer, torch.tensor(cfg.loss_weights()), cfg, False, epoch, False)
    with torch.no_grad():
        held_out = torch.sigmoid(model.eval()(**encoder.tokenize(list(texts[1000:])))).numpy()
    from sklearn.metrics import roc_auc_score

    truth = roc_auc_score(y[1000:], p[1000:])
    for k in range(2):
        assert roc_auc_score(y[1000:], held_out[:, k]) > truth - 0.05, f"head {k} did not learn the signal"


def test_ray_train_job_end_to_end(ray_local, prepared_synthetic, untrained_student, tiny_bert, tmp_path):
    from llmctr.models.llm_head import EarlyExitHead
    from llmctr.train.llm_head import fit_early_exit

    cfg = load_llm_head_config("synthetic_tiny")
    cfg.encoder = replace(cfg.encoder, model=tiny_bert, max_length=48)
    cfg.exit_layers, cfg.student = [1, 3], str(untrained_student)
    cfg.train = replace(cfg.train, sample=600, valid_sample=300, batch_size=64)
    result = fit_early_exit(cfg, prepared_synthetic, artifacts=tmp_path)

    folder = tmp_path / "llm_heads" / "synthetic_tiny"
    assert (folder / "LATEST").read_text().strip() == result.artifact.name
    for name in ("weights.safetensors", "head.json", "context_items.json", "calibration.png", "history.json"):
        assert (result.artifact / name).is_file(), name
    meta = json.loads((result.artifact / "head.json").read_text())
    m = result.metrics
    assert m["train_is_sample"] and m["train_rows"] == 600 and m["valid_rows"] == 300 and m["epochs_run"] == 1
    assert m["context_source"] == "recent train interactions" and meta["residual"]
    assert len(meta["thresholds"]) == 2 and m["valid_auc_early_exit"] >= m["valid_auc_full_depth"] - 0.001
    assert result.valid[TEXT].str.contains("The user (?:liked|disliked|has no history)").all()

    head = EarlyExitHead.load(folder)  # LATEST
    assert head.version == result.artifact.name and head.context_spec()["items"]
    contexts = head.contexts(result.valid_records, result.retriever)
    assert head.texts(result.valid_records, contexts) == list(result.valid[TEXT])
    base = result.valid["base_logit"].to_numpy()
    with pytest.raises(ValueError, match="base_logits"):
        head.score(result.valid_records, None, contexts)
    probs, heads, layers = head.score(result.valid_records, base, contexts, thresholds=[1.0, 1.0])
    np.testing.assert_allclose(probs, result.valid_head_probs[:, -1], atol=1e-4)
    assert (layers == 3).all() and (heads == 1).all()
    probs, heads, layers = head.score(result.valid_records, base, contexts)
    expected, expected_heads = simulate_exit(result.valid_head_probs, head.thresholds)
    same = heads == expected_heads
    assert same.mean() > 0.98, "exits at the calibrated thresholds as in calibration (up to ties at a threshold)"
    np.testing.assert_allclose(probs[same], expected[same], atol=1e-4)
    np.testing.assert_array_equal(layers, np.asarray(cfg.exit_layers)[heads])
    head.thresholds = [0.0, 1.0]
    assert (head.score(result.valid_records[:5], base[:5], contexts[:5])[2] == 1).all()
    with pytest.raises(ValueError, match="1 thresholds for 2 exit heads"):
        head.thresholds = [0.5]


def test_load_names_what_is_missing(tmp_path):
    from llmctr.models.llm_head import EarlyExitHead

    with pytest.raises(FileNotFoundError, match="no LLM head artifact"):
        EarlyExitHead.load(tmp_path)


def test_cli_applies_its_options_to_the_config(monkeypatch, tmp_path, capsys):
    import llmctr.runtime
    import llmctr.train.llm_head as job
    from llmctr.cli import main

    seen = {}

    def fake_fit(config, data_dir, artifacts):
        seen.update(config=config, data=str(data_dir))
        return job.EarlyExitResult(tmp_path / "v1", {"valid_auc": 0.7}, np.zeros((0, 3)), pd.DataFrame(), [], None)

    monkeypatch.setattr(job, "fit_early_exit", fake_fit)
    monkeypatch.setattr(llmctr.runtime, "init_ray", lambda address=None: None)
    assert main(["llm-head", "train", "ml1m_minilm", "--sample", "0", "--epochs", "2", "--fit-split", "train",
                 "--student", "", "--data", str(tmp_path)]) == 0
    cfg = seen["config"]
    assert cfg.train.sample is None and cfg.train.epochs == 2 and cfg.train.fit_split == "train"
    assert cfg.student is None and seen["data"] == str(tmp_path)
    assert json.loads(capsys.readouterr().out) == {"artifact": str(tmp_path / "v1"), "valid_auc": 0.7}
