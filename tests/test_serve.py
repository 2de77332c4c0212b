"""The scoring graph (student only) over real HTTP on localhost, including bad bodies."""

import httpx
import numpy as np
import pandas as pd
import pytest

from llmctr.data import FeatureMap
from llmctr.data.feature_map import raw_records
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
