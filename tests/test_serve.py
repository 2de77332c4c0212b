"""The scoring graph (student only) over real HTTP on localhost, including bad bodies."""

import httpx
import numpy as np
import pandas as pd
import pytest

from llmctr.data import FeatureMap
from llmctr.data.records import raw_records
from llmctr.serve.scorer import Scorer

PORT = 8123
ROUTER = {"max_records": 100, "limits": {"max_body_bytes": 40_000, "max_string_chars": 200}}


@pytest.fixture(scope="module")
def served(trained_synthetic, prepared_synthetic):
    from ray import serve

    from llmctr.serve.client import wait_healthy
    from llmctr.serve.deploy import deploy

    url = deploy(trained_synthetic.artifact, port=PORT, router_config=ROUTER)
    wait_healthy(url)
    fmap = FeatureMap.load(prepared_synthetic / "feature_map.json")
    records = raw_records(pd.read_parquet(prepared_synthetic / "test").head(60), fmap)
    yield url, records, trained_synthetic.artifact
    serve.shutdown()


def test_scores_match_offline_model(served):
    from llmctr.serve.client import score_over_http

    url, records, artifact = served
    run = score_over_http(url, records, per_request=25, progress=False)
    assert len(run.probabilities) == len(records)
    np.testing.assert_allclose(run.probabilities, Scorer.load(artifact).score(records), atol=1e-6)
    assert run.version == artifact.name


def test_cli_scores_a_parquet_split_a_batch_at_a_time(served, prepared_synthetic, tmp_path, capsys):
    """`llmctr score SPLIT` reads the split in batches (here 70 rows each, so requests span batch edges) and
    answers what the offline model does, row for row, for the first --n rows."""
    import json

    from llmctr.cli import main
    from llmctr.data.records import parquet_records

    url, _, artifact = served
    fmap = FeatureMap.load(prepared_synthetic / "feature_map.json")
    batches, total = parquet_records(prepared_synthetic / "test", fmap, limit=150, batch_rows=70)
    sizes = [len(b) for b in batches]
    assert sizes == [70, 70, 10] and total == 150
    out = tmp_path / "probs.txt"
    assert main(["score", str(prepared_synthetic / "test"), "--url", url, "--n", "150", "--per-request", "40",
                 "--output", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    got = np.loadtxt(out)
    records = raw_records(pd.read_parquet(prepared_synthetic / "test").head(150), fmap)
    assert summary["records"] == 150 and len(got) == 150
    np.testing.assert_allclose(got, Scorer.load(artifact).score(records), atol=1e-5)


def test_unknown_ids_are_scored_as_oov(served):
    url, records, _ = served
    rec = dict(records[0], user_id=10**9, item_category="never-seen", tags=["zz", "a"])
    resp = httpx.post(f"{url}/v1/score", json={"records": [rec]})
    assert resp.status_code == 200
    assert 0 < resp.json()["probabilities"][0] < 1


@pytest.mark.parametrize("body,status,needle", [
    ({}, 422, "records"),
    ({"records": []}, 422, "at least 1"),
    ({"records": "x"}, 422, "list"),
    ({"records": [{"user_id": 1}]}, 422, "missing field"),
])
def test_bad_bodies_get_4xx(served, body, status, needle):
    url, _, _ = served
    resp = httpx.post(f"{url}/v1/score", json=body)
    assert resp.status_code == status
    assert needle in resp.text


def test_wrong_types_and_too_many_records(served):
    url, records, _ = served
    resp = httpx.post(f"{url}/v1/score", json={"records": [dict(records[0], price="cheap")]})
    assert resp.status_code == 422 and "price" in resp.text
    resp = httpx.post(f"{url}/v1/score", json={"records": [dict(records[0], device={"a": 1})]})
    assert resp.status_code == 422 and "device" in resp.text
    resp = httpx.post(f"{url}/v1/score", json={"records": records[:1] * 101})
    assert resp.status_code == 413 and "max_records" in resp.text
    resp = httpx.post(f"{url}/v1/score", content=b"{not json", headers={"content-type": "application/json"})
    assert resp.status_code == 422


def test_health_and_openapi(served):
    url, _, artifact = served
    assert httpx.get(f"{url}/healthz").json()["version"] == artifact.name
    spec = httpx.get(f"{url}/openapi.json").json()
    assert "/v1/score" in spec["paths"]
    assert httpx.get(f"{url}/docs").status_code == 200


def test_limits_in_bytes_and_characters(served):
    url, records, _ = served
    resp = httpx.post(f"{url}/v1/score", json={"records": [dict(records[0], item_category="x" * 201)]})
    assert resp.status_code == 422 and "record 0 field 'item_category'" in resp.json()["detail"]
    big = {"records": [dict(records[0], tags=["x" * 200] * 5)] * 99}  # under max_records, over the bytes
    resp = httpx.post(f"{url}/v1/score", json=big)
    assert resp.status_code == 413 and "max_body_bytes 40000" in resp.json()["detail"]


def test_request_timeout_answers_504_and_reconfigures_in_place(served, trained_synthetic):
    from llmctr.serve.client import wait_healthy
    from llmctr.serve.deploy import deploy

    url, records, _ = served
    deploy(trained_synthetic.artifact, port=PORT, router_config={**ROUTER, "limits": {"request_timeout_s": 1e-6}})
    try:
        wait_healthy(url)
        resp = httpx.post(f"{url}/v1/score", json={"records": records[:5]})
        assert resp.status_code == 504 and "request_timeout_s" in resp.json()["detail"]
    finally:
        deploy(trained_synthetic.artifact, port=PORT, router_config=ROUTER)
    wait_healthy(url)
    assert httpx.post(f"{url}/v1/score", json={"records": records[:5]}).status_code == 200


def test_bearer_token_guards_writes_and_scoring_when_asked(served, trained_synthetic):
    from llmctr.serve.client import wait_healthy
    from llmctr.serve.deploy import deploy

    url, records, _ = served
    good, body = {"Authorization": "Bearer s3cret"}, {"records": records[:2]}
    events = {"events": [{"user": 1, "item": 2, "label": 1}]}
    deploy(trained_synthetic.artifact, port=PORT, router_config={**ROUTER, "auth": {"token": "s3cret"}})
    try:
        wait_healthy(url)
        assert httpx.post(f"{url}/v1/score", json=body).status_code == 200, "scoring stays open"
        assert httpx.post(f"{url}/v1/events", json=events).status_code == 401
        assert httpx.post(f"{url}/v1/events", json=events, headers=good).status_code == 404  # past auth: no store
        deploy(trained_synthetic.artifact, port=PORT,
               router_config={**ROUTER, "auth": {"token": "s3cret", "scoring": True}})
        wait_healthy(url)
        resp = httpx.post(f"{url}/v1/score", json=body)
        assert resp.status_code == 401 and resp.headers["www-authenticate"] == "Bearer"
        assert httpx.post(f"{url}/v1/score", json=body, headers=good).status_code == 200
    finally:
        deploy(trained_synthetic.artifact, port=PORT, router_config=ROUTER)
    wait_healthy(url)


def test_student_placements_answer_the_same(served, trained_synthetic):
    """By default the student's forward runs inside the Router (no DistilledScorer deployment); as its own
    deployment it answers the same probabilities, and the Router's student settings are refused there."""
    from ray import serve

    from llmctr.serve.client import score_over_http, wait_healthy
    from llmctr.serve.deploy import APP_NAME, deploy

    url, records, artifact = served
    offline = Scorer.load(artifact).score(records)
    assert set(serve.status().applications[APP_NAME].deployments) == {"Router"}
    deploy(artifact, port=PORT, router_config=ROUTER, student_placement="deployment")
    try:
        wait_healthy(url)
        assert set(serve.status().applications[APP_NAME].deployments) == {"Router", "DistilledScorer"}
        run = score_over_http(url, records, per_request=25, progress=False)
        np.testing.assert_allclose(run.probabilities, offline, atol=1e-6)
        with pytest.raises(RuntimeError, match="DistilledScorer.user_config"):
            deploy(artifact, port=PORT, router_config={**ROUTER, "student": {"threads": 2}},
                   student_placement="deployment")
    finally:
        deploy(artifact, port=PORT, router_config=ROUTER)
    wait_healthy(url)
    assert set(serve.status().applications[APP_NAME].deployments) == {"Router"}
    np.testing.assert_allclose(score_over_http(url, records, per_request=25, progress=False).probabilities,
                               offline, atol=1e-6)


def test_score_requests_batches_good_requests_and_fails_bad_ones_alone(trained_synthetic, prepared_synthetic):
    from llmctr.serve.student import score_requests

    scorer = Scorer.load(trained_synthetic.artifact)
    fmap = FeatureMap.load(prepared_synthetic / "feature_map.json")
    records = raw_records(pd.read_parquet(prepared_synthetic / "test").head(9), fmap)
    unseen = dict(records[8], user_id=10**9)
    out = score_requests(scorer, [records[:3], [{"user_id": 1}], records[3:8] + [unseen]], [("user_id",)] * 3)
    assert "missing field" in out[1]["error"]
    np.testing.assert_allclose(out[0]["logits"], scorer.logits(scorer.encode(records[:3])), atol=1e-6)
    np.testing.assert_allclose(out[2]["logits"], scorer.logits(scorer.encode(records[3:8] + [unseen])), atol=1e-6)
    assert out[2]["cold"].tolist() == [False] * 5 + [True] and out[0]["version"] == trained_synthetic.artifact.name


def test_graph_metrics_reach_rays_prometheus_export(served):
    """The router's counters go through ray.serve.metrics to Ray's own Prometheus export (the node's metrics
    agent), tagged by deployment and replica; /metrics names the replica whose registry it shows."""
    import re
    import time

    import ray

    url, records, _ = served
    for _ in range(3):
        assert httpx.post(f"{url}/v1/score", json={"records": records[:5]}).status_code == 200
    page = httpx.get(f"{url}/metrics").text
    assert re.search(r'llmctr_replica_info\{replica="\w+"\} 1\.0', page), page[-500:]
    export = f"http://127.0.0.1:{ray._private.worker.global_worker.node.metrics_export_port}/metrics"
    pattern = re.compile(r'^ray_llmctr_records_total\{(.*)\} ([0-9.e+]+)$', re.M)
    deadline, counted = time.time() + 90, 0.0
    while time.time() < deadline:
        series = [(tags, float(v)) for tags, v in pattern.findall(httpx.get(export, timeout=10).text)]
        counted = sum(v for tags, v in series if 'route="student"' in tags and 'deployment="Router"' in tags)
        if counted >= 15:
            break
        time.sleep(2)
    assert counted >= 15, series


def test_llm_head_replica_takes_the_gpu_it_is_given():
    from llmctr.serve.deployments import replica_device

    assert replica_device([], cuda_available=True) == "cpu"
    assert replica_device(["0"], cuda_available=True) == "cuda"
    assert replica_device(["0"], cuda_available=False) == "cpu"  # a CPU torch on a GPU node: warned, still runs


@pytest.mark.parametrize("kind,value,ok", [
    ("sequence", [1, "2", 3.0], True), ("sequence", [1, {"a": 1}], False), ("sequence", 5, False),
    ("sequence", None, True), ("sequence_label", [0, 1, 1], True), ("sequence_label", [0, 2], False),
    ("sequence_label", [[1]], False), ("multi_categorical", ["a", 1], True), ("multi_categorical", "a|b", True),
    ("multi_categorical", ["a", None], False), ("categorical", [1], False), ("numeric", True, False)])
def test_field_types_a_record_may_carry(kind, value, ok):
    assert Scorer._type_ok(kind, value) is ok
