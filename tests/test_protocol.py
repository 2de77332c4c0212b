"""The benchmark protocol: paired differences with their standard error, verdicts against a bar, selection on
validation only, and provenance that refuses a dirty tree."""

from __future__ import annotations

import json
import math
import subprocess

import pytest

from benchmarks.lib.protocol import (
    Protocol,
    choose_on_validation,
    paired_difference,
    provenance,
    verdict,
    write,
)


def test_paired_difference_pairs_by_seed():
    d = paired_difference([0.85, 0.86, 0.84], [0.84, 0.84, 0.84])
    assert d.diff == pytest.approx(0.01) and d.n == 3
    assert d.se == pytest.approx(0.01 / math.sqrt(3))  # per-seed diffs 0.01, 0.02, 0.0: sd 0.01
    assert d.per_seed == pytest.approx([0.01, 0.02, 0.0])
    with pytest.raises(ValueError, match="same seeds"):
        paired_difference([0.8, 0.9], [0.8])
    assert math.isnan(paired_difference([0.8], [0.7]).se)


@pytest.mark.parametrize("diff, se, bar, expected", [
    (0.005, 0.001, 0.0, "met"), (-0.005, 0.001, 0.0, "missed"), (0.001, 0.001, 0.0, "inconclusive"),
    (-0.0005, 0.0002, -0.001, "met"), (-0.0015, 0.0001, -0.001, "missed"), (0.01, float("nan"), 0.0, "inconclusive"),
])
def test_verdict_needs_two_standard_errors(diff, se, bar, expected):
    assert verdict(diff, se, bar) == expected


def test_choice_reads_validation_not_test():
    candidates = {"xavier": {"valid_auc": 0.85, "test_auc": 0.80}, "default": {"valid_auc": 0.84, "test_auc": 0.90}}
    assert choose_on_validation(candidates) == "xavier"


def test_seeds_are_declared_and_distinct():
    assert len(Protocol().seeds) == 5
    with pytest.raises(ValueError):
        Protocol(seeds=(1, 1))


def _repo(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "a.txt").write_text("1")
    for cmd in (["add", "a.txt"], ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "x"]):
        subprocess.run(["git", *cmd], cwd=tmp_path, check=True)
    return tmp_path


def test_provenance_refuses_a_dirty_tree_unless_allowed(tmp_path):
    repo = _repo(tmp_path)
    clean = provenance(argv=["--seeds", "1"], cwd=repo)
    assert not clean["dirty"] and len(clean["git_commit"]) == 40 and clean["command"].endswith("--seeds 1")
    assert clean["argv"][-2:] == ["--seeds", "1"]
    assert "torch" in clean["packages"] and "ray" in clean["packages"] and clean["machine"]["cpus"]
    (repo / "a.txt").write_text("2")
    with pytest.raises(SystemExit, match="uncommitted"):
        provenance(argv=[], cwd=repo)
    assert provenance(allow_dirty=True, argv=[], cwd=repo)["dirty"] is True


def test_write_records_payload_provenance_and_protocol(tmp_path):
    path = write("x", {"rows": [1]}, {"git_commit": "abc"}, Protocol(seeds=(1, 2)), folder=tmp_path)
    body = json.loads(path.read_text())
    assert body["rows"] == [1] and body["provenance"]["git_commit"] == "abc" and body["protocol"]["seeds"] == [1, 2]


def test_a_served_benchmark_arm_writes_its_model_under_a_name_of_its_own():
    """A benchmark arm trained into the shared artifacts root must not become the LATEST of the plain experiment's
    models folder (llmctr serve --experiment ml1m_fm would serve it)."""
    from benchmarks.lib.ml1m_runs import experiment, served_experiment

    plain = experiment("fm", "base").name
    names = {served_experiment("fm", arm).name for arm in ("base", "target_attention")}
    assert plain == "ml1m_fm" and plain not in names and len(names) == 2
    assert all(n.startswith("bench_ml1m_fm_") for n in names)


def test_elec_arm_options_set_the_list_size_and_the_distillation_weights():
    from benchmarks.lib.ml1m_runs import experiment

    plain = experiment("fm", "elec/target_attention:20:sem")
    packed = experiment("fm", "elec/target_attention:20:sem/lists8")
    clid_only = experiment("fm", "elec/target_attention:20:sem/alpha0")
    assert plain.distill.alpha > 0 and plain.train.list_size is None
    assert packed.train.list_size == 8 and packed.distill.alpha == plain.distill.alpha
    assert clid_only.distill.alpha == 0 and clid_only.distill.beta == plain.distill.beta
    assert clid_only.model.history.semantic is None and clid_only.distill.teacher.history.semantic is not None
    with pytest.raises(ValueError, match="unknown ELEC option"):
        experiment("fm", "elec/target_attention:20:sem/beta9")


def _zoo_result(models: list[str], commit: str = "abc", **settings) -> dict:
    rows = [{"model": m, "verdict": "met", "speedup": 2.0} for m in models]
    return {"dataset": "ml1m", "auc_bar": -0.001, "settings": {"max_epochs": 8, **settings}, "measurement": {},
            "rows_per_split": {}, "fields": [], "protocol": {"seeds": [1, 2]}, "rows": rows,
            "runs": [{"model": m} for m in models], "elapsed_seconds": 10.0, "estimated_upper_seconds": 20.0,
            "provenance": {"git_commit": commit, "dirty": False, "packages": {}, "machine": {},
                           "command": f"run {models}", "argv": models, "date": f"2026-12-0{len(models)}"}}


def test_zoo_merge_joins_models_measured_at_one_commit_in_zoo_order():
    from benchmarks.lib.zoo_report import merge

    order = ["deepfm", "fm", "finalmlp", "wukong"]
    payload, prov = merge([_zoo_result(["deepfm", "wukong", "wukong (tuned)"]), _zoo_result(["finalmlp"])], order)
    assert [r["model"] for r in payload["rows"]] == ["deepfm", "finalmlp", "wukong", "wukong (tuned)"]
    assert payload["summary"]["auc_verdicts"]["met"] == [r["model"] for r in payload["rows"]]
    assert payload["elapsed_seconds"] == 20.0 and len(payload["runs"]) == 4
    assert prov["git_commit"] == "abc" and len(prov["parts"]) == 2 and prov["date"] == "2026-12-03"
    with pytest.raises(ValueError, match="git_commit"):
        merge([_zoo_result(["deepfm"]), _zoo_result(["finalmlp"], commit="def")], order)
    with pytest.raises(ValueError, match="settings"):
        merge([_zoo_result(["deepfm"]), _zoo_result(["finalmlp"], patience=3)], order)
    with pytest.raises(ValueError, match="twice"):
        merge([_zoo_result(["deepfm"]), _zoo_result(["deepfm"])], order)
    other_cpus = _zoo_result(["finalmlp"])
    other_cpus["provenance"]["machine"] = {"cpus": 4}
    with pytest.raises(ValueError, match="machine 'cpus'"):
        merge([_zoo_result(["deepfm"]), other_cpus], order)


@pytest.mark.parametrize("has_flag", [False, True])
def test_parse_with_provenance_adds_allow_dirty_once_and_records_the_command(monkeypatch, has_flag):
    import argparse

    from benchmarks.lib.protocol import parse_with_provenance

    parser = argparse.ArgumentParser()
    parser.add_argument("--k", type=int)
    if has_flag:
        parser.add_argument("--allow-dirty", action="store_true")
    monkeypatch.setattr("sys.argv", ["bench", "--k", "3", "--allow-dirty"])
    args, prov = parse_with_provenance(parser)
    assert args.k == 3 and args.allow_dirty and prov["argv"] == ["--k", "3", "--allow-dirty"]


def test_llactr_arm_options_switch_parts_off_and_set_the_weights():
    from benchmarks.lib.ml1m_runs import experiment

    full = experiment("fm", "llactr")
    assert full.name == "ml1m_fm_llactr" and full.model.llactr.fre and full.semantics.ssft is not None
    assert experiment("fm", "base").model.llactr is None
    assert experiment("fm", "llactr/noft").semantics.ssft is None
    assert not experiment("fm", "llactr/nofre").model.llactr.fre and experiment("fm", "llactr/nofre").model.llactr.fie
    assert not experiment("fm", "llactr/nofie").model.llactr.fie
    assert experiment("fm", "llactr/fre-entity").model.llactr.fre_target == "entity"
    weighted = experiment("fm", "llactr/ssft40/kl0.5_fm0.2")
    assert (weighted.model.llactr.lambda_kl, weighted.model.llactr.lambda_fm) == (0.5, 0.2)
    assert weighted.semantics.ssft.features_per_field == 40
    with pytest.raises(ValueError, match="unknown LLaCTR option"):
        experiment("fm", "llactr/kl0.5")


def test_distill_benchmark_reuses_only_an_artifact_of_exactly_the_same_run(tmp_path, monkeypatch):
    """An interrupted distill_ml1m resumes from the artifacts its runs wrote; a different seed is trained again."""
    from benchmarks.distill_ml1m import trained_before, variant_experiment
    from benchmarks.lib.protocol import Protocol
    from llmctr.config import dump_config
    from llmctr.train import load_experiment

    monkeypatch.setenv("LLMCTR_ARTIFACTS", str(tmp_path))
    protocol = Protocol(seeds=(7, 8), max_epochs=3, patience=1)
    base = load_experiment("ml1m_dcnv2_elec")
    exp = variant_experiment(base, "elec", 7, protocol, 0.9)
    for version, seed in (("v1", 7), ("v2", 8)):
        folder = tmp_path / "models" / exp.name / version
        folder.mkdir(parents=True)
        recorded = dump_config(variant_experiment(base, "elec", seed, protocol, 0.9))
        (folder / "metrics.json").write_text(json.dumps({"test_auc": 0.5 + seed / 100, "experiment": recorded}))
    found = trained_before(exp)
    assert found is not None and found[0].name == "v1" and found[1]["test_auc"] == pytest.approx(0.57)
    assert trained_before(variant_experiment(base, "no_clid", 7, protocol, 0.9)) is None  # other settings
    assert trained_before(variant_experiment(base, "elec", 9, protocol, 0.9)) is None


def test_cached_runs_count_only_under_the_epoch_budget_they_were_trained_with():
    from benchmarks.lib.ml1m_runs import same_budget
    from benchmarks.lib.protocol import Protocol

    default, longer = Protocol(), Protocol(max_epochs=16, patience=2)
    old_row = {"model": "fm", "arm": "base", "seed": 1}  # cached before the budget was recorded
    assert same_budget(old_row, default) and not same_budget(old_row, longer)
    row = {**old_row, "max_epochs": 16, "patience": 2}
    assert same_budget(row, longer) and not same_budget(row, default)
    assert not same_budget({**row, "patience": 3}, longer)
