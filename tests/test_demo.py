"""`llmctr demo` end to end on the synthetic log (slow: trains every part of the graph, with MiniLM as the LLM)."""

import pytest


@pytest.mark.slow
def test_demo_runs_the_whole_graph_on_synthetic_data(ray_local, tmp_path):
    from llmctr.demo import DemoOptions, run_demo

    opts = DemoOptions(n_records=60, per_request=4, port=8133, epochs=2, head_rows=300, band=(0.3, 0.7))
    report = run_demo("synthetic", data_dir=str(tmp_path / "raw"), artifacts=str(tmp_path / "art"), opts=opts)
    lines = dict(report.lines)
    assert report.dataset == "synthetic"
    assert "60 test records over HTTP in 15 requests" in lines["served"]
    mix = lines["route mix"]
    assert mix.startswith("student") and "llm" in mix, mix
    for key in ("student artifact", "retriever / head", "training curve"):
        assert str(tmp_path / "art") in lines[key]
    assert "routed vs" in lines["served AUC"]
    from llmctr.runtime import ingress_mode

    assert f"({ingress_mode()} ingress)" in lines["HTTP latency"]  # what /healthz of the served graph reported


@pytest.mark.slow
def test_pipeline_trains_the_llm_path_for_its_student(ray_local, synthetic_source, tmp_path, capsys):
    import json
    from pathlib import Path

    from llmctr.cli import main

    art = tmp_path / "art"
    assert main(["pipeline", "synthetic_deepfm", "--data-dir", str(synthetic_source.parent), "--epochs", "1",
                 "--retriever", "synthetic_lightgcn", "--llm-head", "synthetic_tiny", "--head-rows", "200",
                 "--no-deploy", "--artifacts", str(art)]) == 0
    out = capsys.readouterr().out
    result = json.loads(out[out.index("{"):])
    for key in ("student", "retriever", "llm_head"):
        assert Path(result[key]).is_relative_to(art), result
    head = json.loads((Path(result["llm_head"]) / "head.json").read_text())
    assert head["metrics"]["student"] == result["student"]
    assert result["retriever"] in head["metrics"]["context_source"]
    assert "url" not in result
