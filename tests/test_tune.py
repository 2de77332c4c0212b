"""Ray Tune over experiment settings: setting paths, config errors, and a 2-trial ASHA search on synthetic data."""

import json
from pathlib import Path

import pytest
import yaml

from llmctr.config import ConfigError, parse_config
from llmctr.train import load_experiment
from llmctr.tune import SearchConfig, load_search, run_search, with_settings


def test_settings_apply_by_dotted_path_and_are_validated():
    base = load_experiment("synthetic_deepfm")
    exp = with_settings(base, {"train.lr": 0.02, "model.params.hidden_units": [8]})
    assert exp.train.lr == 0.02 and exp.model.params["hidden_units"] == [8]
    assert base.train.lr != 0.02, "the base experiment is not modified"
    with pytest.raises(ConfigError, match="lr"):
        with_settings(base, {"train.lr": "fast"})
    with pytest.raises(ConfigError):
        with_settings(base, {"train.no_such_setting": 1})
    with pytest.raises(ConfigError, match="not a section"):
        with_settings(base, {"train.lr.x": 1})


def test_search_config_errors():
    with pytest.raises(ConfigError, match="low < high"):
        parse_config(SearchConfig, {"name": "s", "experiment": "synthetic_deepfm",
                                    "space": {"train.lr": {"kind": "uniform", "values": [1, 0.5]}}})
    with pytest.raises(ConfigError, match="unknown search"):
        load_search("no_such_search")


def test_two_trial_asha_search_of_distillation_weights(ray_local, prepared_synthetic, tmp_path):
    """ASHA over two Ray Train trials of the ELEC experiment with sampled alpha, beta, tau."""
    search = load_search("synthetic_deepfm_elec")
    search.num_samples = 2
    search.overrides["train.epochs"] = 2
    result = run_search(search, prepared_synthetic, artifacts=tmp_path)
    folder = Path(result.folder)
    rows = json.loads((folder / "results.json").read_text())["trials"]
    assert len(rows) == 2 and len({r["settings"]["distill.alpha"] for r in rows}) == 2
    for row in rows:
        assert 1 <= row["epochs_run"] <= 2 and 0.0 < row["best_valid_auc"] <= 1.0
        assert row["best_valid_auc"] == pytest.approx(max(row["curve"]))
    best = max(rows, key=lambda r: r["best_valid_auc"])
    assert result.best["settings"] == best["settings"] and best["completed"] and "test_auc" in best
    tuned = yaml.safe_load((folder / "best_experiment.yaml").read_text())
    assert tuned["distill"]["beta"] == pytest.approx(best["settings"]["distill.beta"])
    assert tuned["distill"]["tau"] == best["settings"]["distill.tau"] and tuned["train"]["epochs"] == 2
    assert "test_teacher_auc" in best, "each trial trains the teacher beside the student"
    assert (folder / "search.png").stat().st_size > 0
