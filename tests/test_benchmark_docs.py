"""docs/benchmarks.md's generated tables are what the result files say (benchmarks/docs.py)."""

import pytest

from benchmarks import docs
from benchmarks.lib import docfmt


def test_generated_tables_match_the_results():
    text = docs.DOC.read_text()
    _, stale = docs.render(text)
    assert not stale, f"regenerate with: python -m benchmarks.docs (stale: {stale})"
    present = {m.group("name") for m in docs.BLOCK.finditer(text)}
    assert present == set(docs.RENDERERS), f"blocks in the doc {present} vs renderers {set(docs.RENDERERS)}"


def test_a_changed_result_makes_its_block_stale(monkeypatch):
    text = docs.DOC.read_text()
    real = docfmt.load

    def edited(name):
        out = real(name)
        if name == "history_ml1m":
            out["rows"][0]["history_auc"] += 0.01
        return out

    monkeypatch.setattr(docfmt, "load", edited)
    _, stale = docs.render(text)
    assert stale == ["history_ml1m"]


def test_every_table_in_the_doc_is_generated():
    """A markdown table outside the generated blocks is a hand-copied number that can drift from its result."""
    text = docs.BLOCK.sub("", docs.DOC.read_text())
    by_hand = [line for line in text.splitlines() if line.lstrip().startswith("|")]
    assert not by_hand, f"tables written by hand in docs/benchmarks.md: {by_hand[:3]}"


def test_llactr_block_renders_the_rows_the_weight_choice_and_the_ablations(monkeypatch):
    from benchmarks.lib import doc_models

    real = docfmt.load
    result = {"rows": [{"model": "fm", "llactr_arm": "llactr/kl0.5_fm0.1", "baseline_auc": 0.85,
                        "treatment_auc": 0.851, "diff": 0.001, "diff_se": 0.0002, "verdict": "met",
                        "slices": {"users_unseen_in_train": {"diff": -0.002, "diff_se": 0.001}}}],
              "selection": {"fm": {"model": "fm", "seed": 1, "chosen": "llactr/kl0.5_fm0.1",
                                   "valid_auc": {"llactr/kl0.1_fm0.1": 0.81, "llactr/kl0.5_fm0.1": 0.82}}},
              "ablation_model": "fm", "ablations": [{"variant": "without FRE", "auc": 0.8505, "llactr_auc": 0.851,
                                                     "diff_vs_llactr": -0.0005, "diff_se": 0.0001}],
              "protocol": {"seeds": [1, 2], "max_epochs": 8, "patience": 2},
              "provenance": {"git_commit": "abc1234def", "dirty": False, "date": "2026-12-05", "packages": {},
                             "machine": {"cpus": 2}}}
    monkeypatch.setattr(docfmt, "load", lambda name: result if name == "llactr_ml1m_grid" else real(name))
    out = doc_models.llactr_ml1m_grid()
    assert "| fm | llactr/kl0.5_fm0.1 | 0.8500 | 0.8510 | +0.0010 ± 0.0002 | met | – | −0.0020 ± 0.0010 | – |" in out
    assert "| model | kl0.1_fm0.1 | kl0.5_fm0.1 |" in out and "| fm | 0.81000 | **0.82000** |" in out
    assert "| without FRE | 0.8505 | 0.8510 | −0.0005 ± 0.0001 |" in out and "commit `abc1234`" in out


def test_every_result_records_its_provenance_and_a_clean_commit():
    """A committed result says how it was made: command line, a commit with no uncommitted changes, packages."""
    for path in sorted(docfmt.RESULTS.glob("*.json")):
        prov = docfmt.load(path.stem).get("provenance")
        assert prov is not None, f"{path.name} has no provenance"
        assert prov["git_commit"] and prov["dirty"] is False, f"{path.name}: commit {prov['git_commit']!r}, dirty"
        assert "argv" in prov and prov["packages"].get("torch"), f"{path.name}: no command line or versions"


def test_distill_block_renders_each_variant_against_the_student_alone(monkeypatch):
    from benchmarks.distill_ml1m import paired
    from benchmarks.lib import doc_models

    runs = {"student_alone": [{"test_auc": 0.850}, {"test_auc": 0.852}],
            "elec": [{"test_auc": 0.851, "test_teacher_auc": 0.849}, {"test_auc": 0.854, "test_teacher_auc": 0.850}]}
    gain, teacher = paired(runs, "elec"), paired(runs, "elec", "test_teacher_auc")
    assert gain["per_seed"] == pytest.approx([0.001, 0.002]) and teacher["diff"] == pytest.approx(-0.0015)
    result = {"experiment": "ml1m_dcnv2_elec", "student_alone_auc": 0.851, "teacher_auc": 0.8495,
              "teacher_gain": teacher, "protocol": {"seeds": [1, 2], "max_epochs": 8, "patience": 2},
              "rows": [{"variant": "student_alone", "test_auc": 0.851, "runs": runs["student_alone"]},
                       {"variant": "elec", "test_auc": 0.8525, "test_teacher_auc": 0.8495, "vs_student_alone": gain,
                        "runs": runs["elec"]}],
              "inference_only_sparsity": [{"mass": 1.0, "test_auc": 0.85, "active_fraction": 1.0, "mac_fraction": 0.5},
                                          {"mass": 0.9, "test_auc": 0.84, "active_fraction": 0.3, "mac_fraction": 0.4}],
              "inference_per_1000": {"threads": 2, "student_ms": 7.0, "student_alone_ms": 7.5, "student_params": 10,
                                     "student_alone_params": 10, "teacher_ms_precomputed_llm": 17.0,
                                     "llm_encode_ms": 9000.0},
              "reused_runs": 3,
              "provenance": {"git_commit": "abc1234def", "dirty": False, "date": "2026-12-05", "packages": {},
                             "machine": {"cpus": 2}}}
    real = docfmt.load
    monkeypatch.setattr(docfmt, "load", lambda name: result if name == "distill_ml1m" else real(name))
    out = doc_models.distill_ml1m()
    assert "| ELEC (CLID + MSE) | 0.8525 | 0.8495 | +0.0015 ± 0.0005 | met |" in out
    assert "| the ELEC teacher itself | – | 0.8495 | −0.0015 ± 0.0005 | missed |" in out
    assert "| 1 (no mask) | 0.85000 | all | 50 % |" in out and "| 0.9 | 0.84000 | 30 % | 40 % |" in out
    assert "distilled student 7.0 ms, student alone 7.5 ms" in out and "9.0 s for the encoder" in out
    assert "3 of the 4 runs were read from artifacts" in out


def test_instance_text_block_renders_the_arm_its_slices_and_the_encoding_time(monkeypatch):
    from benchmarks.lib import doc_models

    sl = {k: {"diff": 0.001 * i, "diff_se": 0.0005} for i, (k, _) in enumerate(docfmt.SLICES, 1)}
    result = {"elec": {"rows": [{"model": "fm", "arm": "elec/ta:sem/texts", "teacher_test_auc": 0.87,
                                 "treatment_auc": 0.861, "baseline_auc": 0.86, "diff": 0.001, "diff_se": 0.0003,
                                 "verdict": "met", "chosen_on_validation": True, "slices": sl}]},
              "instance_texts": {"rows": 100000, "distinct_texts": 90000, "encoded": 80000, "render_seconds": 2.0,
                                 "encode_seconds": 4000.0, "actors": 2, "example": "Toy Story"},
              "protocol": {"seeds": [1, 2], "max_epochs": 8, "patience": 2},
              "provenance": {"git_commit": "abc1234def", "dirty": False, "date": "2026-12-05", "packages": {},
                             "machine": {"cpus": 2}}}
    monkeypatch.setattr(docfmt, "load", lambda name: result)
    out = doc_models.llm_signal_ml1m_instance_texts()
    assert "| fm texts | 0.8700 | 0.8610 | 0.8600 | +0.0010 ± 0.0003 | met | yes |" in out
    assert "| fm texts | +0.0010 ± 0.0005 | +0.0020 ± 0.0005 | +0.0030 ± 0.0005 |" in out
    assert "| encoding | 4,000 s (20 texts/s, 2 actors) |" in out and "commit `abc1234`" in out


def test_a_standard_error_below_the_last_digit_is_not_printed_as_zero():
    assert docfmt.diff(-0.0007, 0.00004) == "−0.0007 ± < 0.0001"
    assert docfmt.diff(0.0015, 0.0005) == "+0.0015 ± 0.0005"
