"""The whole scoring graph over real HTTP: student → (unsure / cold-start) → retriever → early-exit LLM head, with
its deadline, fallback, metrics, retrieval endpoint, hot reload and a replica killed under traffic. Synthetic data,
a tiny BERT head; the answers are checked against the same pipeline run offline."""

import threading
import time
from contextlib import contextmanager
from dataclasses import replace

import httpx
import hypothesis.strategies as st
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from schema_strategy import from_schema

from llmctr.data import FeatureMap
from llmctr.data.records import raw_records
from llmctr.models.retriever import Retriever
from llmctr.semantics.rag import retrieve_neighbours
from llmctr.serve.routing import cold_start_mask
from llmctr.serve.scorer import Scorer

PORT = 8131
URL = f"http://127.0.0.1:{PORT}"
COLD = ["user_id", "item_id"]


@pytest.fixture(scope="module")
def parts(ray_local, trained_synthetic, trained_retriever, prepared_synthetic, tiny_bert, tmp_path_factory):
    """Student (the 2-worker DeepFM), the session's LightGCN retriever and a tiny-BERT early-exit head correcting the
    student."""
    from llmctr.models.llm_head_config import RetrieverSource, load_llm_head_config
    from llmctr.train.llm_head import fit_early_exit

    root = tmp_path_factory.mktemp("graph_artifacts")
    retriever = trained_retriever.artifact
    hconf = load_llm_head_config("synthetic_tiny")
    hconf.encoder = replace(hconf.encoder, model=tiny_bert, max_length=48)
    hconf.exit_layers, hconf.student = [1, 3], str(trained_synthetic.artifact)
    hconf.retriever = RetrieverSource(path=str(retriever))
    hconf.train = replace(hconf.train, sample=600, valid_sample=300, batch_size=64)
    head = fit_early_exit(hconf, prepared_synthetic, artifacts=root).artifact
    fmap = FeatureMap.load(prepared_synthetic / "feature_map.json")
    records = raw_records(pd.read_parquet(prepared_synthetic / "test").head(40), fmap)
    return {"student": trained_synthetic.artifact, "retriever": retriever, "head": head, "records": records}


def _deploy(parts, band=(0.0, 1.0), deadline_ms=10_000.0, student_config=None, **routing):
    from llmctr.serve.deploy import deploy

    return deploy(parts["student"], port=PORT, retriever_dir=parts["retriever"], head_dir=parts["head"],
                  router_config={"max_records": 100, "routing": {"band": list(band), "deadline_ms": deadline_ms,
                                                                 "cold_fields": COLD, **routing}},
                  student_config=student_config)


@contextmanager
def _variant(parts, **settings):
    """The graph redeployed with other settings for the block; the module's default graph again afterwards, pass or
    fail, so a failing test never leaves the next one a different graph."""
    _deploy(parts, **settings)
    try:
        yield
    finally:
        _deploy(parts)


@pytest.fixture(scope="module")
def graph(parts):
    from ray import serve

    from llmctr.serve.client import wait_healthy

    _deploy(parts)
    wait_healthy(URL, timeout=180)
    yield parts
    serve.shutdown()


def _score(records):
    resp = httpx.post(f"{URL}/v1/score", json={"records": records}, timeout=60)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_llm_route_answers_as_the_offline_pipeline(graph):
    from llmctr.models.llm_head import EarlyExitHead

    records = graph["records"]
    body = _score(records)  # band [0, 1]: every record takes the LLM path
    assert {r["route"] for r in body["results"]} == {"llm"}
    head = EarlyExitHead.load(graph["head"])
    assert {r["exit_depth"] for r in body["results"]} <= set(head.exit_layers)
    student = Scorer.load(graph["student"])
    neighbours = retrieve_neighbours(records, Retriever.load(graph["retriever"]), head.neighbours)
    probs, _, layers = head.score(records, student.logits(student.encode(records)), head.contexts_from(neighbours))
    np.testing.assert_allclose([r["probability"] for r in body["results"]], probs, atol=1e-5)
    assert [r["exit_depth"] for r in body["results"]] == layers.tolist()
    assert body["probabilities"] == [r["probability"] for r in body["results"]]


def test_student_route_and_cold_start(graph):
    with _variant(graph, band=(0.0, 0.0)):  # nobody is unsure: only cold-start records take the LLM path
        scorer = Scorer.load(graph["student"])
        cold = cold_start_mask(scorer.encode(graph["records"]), COLD)
        warm = [r for r, c in zip(graph["records"], cold) if not c][:10]
        body = _score(warm)
        assert all(r["route"] == "student" and r["exit_depth"] is None for r in body["results"])
        np.testing.assert_allclose(body["probabilities"], scorer.score(warm), atol=1e-6)
        unseen = [dict(warm[0], user_id=10**9), dict(warm[1], item_id=-5), warm[2]]
        assert [r["route"] for r in _score(unseen)["results"]] == ["llm", "llm", "student"]


def test_client_reports_routes_depths_and_latency_per_route(graph):
    from llmctr.serve.client import score_over_http

    scorer = Scorer.load(graph["student"])
    cold = cold_start_mask(scorer.encode(graph["records"]), COLD)
    warm = [r for r, c in zip(graph["records"], cold) if not c][:6]
    coldest = [dict(r, user_id=10**9 + i) for i, r in enumerate(warm[:2])]
    with _variant(graph, band=(0.0, 0.0)):  # only the unseen users take the LLM path
        run = score_over_http(URL, warm + coldest, per_request=2, progress=False)
        assert run.routes == ["student"] * 6 + ["llm"] * 2
        assert run.exit_depths[:6] == [None] * 6 and all(d in (1, 3) for d in run.exit_depths[6:])
        assert run.request_routes == ["student"] * 3 + ["llm"]
        assert run.percentile(50, "llm") == run.latencies_ms[3]
        assert np.isnan(run.percentile(50, "fallback"))
        np.testing.assert_allclose(run.probabilities[:6], scorer.score(warm), atol=1e-6)


def test_late_llm_path_falls_back_to_the_student_and_is_counted(graph):
    records = graph["records"][:12]
    with _variant(graph, band=(0.0, 1.0), deadline_ms=1.0):  # the LLM path can never answer within 1 ms
        student = Scorer.load(graph["student"]).score(records)
        for _ in range(3):
            body = _score(records)
            assert {r["route"] for r in body["results"]} == {"fallback"}
            np.testing.assert_allclose(body["probabilities"], student, atol=1e-6)
        metrics = httpx.get(f"{URL}/metrics").text
        fallback = next(line for line in metrics.splitlines()
                        if line.startswith('llmctr_fallback_total{reason="deadline"}'))
        assert float(fallback.split()[-1]) >= 36
        assert 'llmctr_route_latency_seconds_count{route="fallback"}' in metrics


def test_llm_path_past_its_cap_sheds_to_the_student_at_once(graph):
    """``max_llm_records``: of one request's routed records only the cap's worth (cold first, then the most unsure)
    take the LLM path; the others answer with the student's probability, marked fallback, counted as shed."""
    from llmctr.models.ctr_model import sigmoid
    from llmctr.serve.routing import admit

    records = graph["records"][:8]
    with _variant(graph, band=(0.0, 1.0), max_llm_records=3):
        scorer = Scorer.load(graph["student"])
        encoded = scorer.encode(records)
        student = sigmoid(scorer.logits(encoded))
        expected = admit(np.ones(len(records), bool), student, cold_start_mask(encoded, COLD), 3)
        body = _score(records)
        routes = [r["route"] for r in body["results"]]
        assert routes == ["llm" if e else "fallback" for e in expected]
        shed = [r["probability"] for r, e in zip(body["results"], expected) if not e]
        np.testing.assert_allclose(shed, student[~expected], atol=1e-6)
        metrics = httpx.get(f"{URL}/metrics").text
        line = next(x for x in metrics.splitlines() if x.startswith('llmctr_fallback_total{reason="shed"}'))
        assert float(line.split()[-1]) >= 5


def test_metrics_retrieve_and_health(graph):
    _score(graph["records"][:5])
    metrics = httpx.get(f"{URL}/metrics").text
    assert 'llmctr_records_total{route="llm"}' in metrics and "llmctr_exit_depth_bucket" in metrics
    record = graph["records"][0]
    body = httpx.post(f"{URL}/v1/retrieve", json={"user": record["user_id"], "item": record["item_id"], "k": 4}).json()
    assert 0 < len(body["items_for_user"]) <= 4 and 0 < len(body["similar_items"]) <= 4
    assert all(n["id"] != str(record["item_id"]) for n in body["similar_items"])
    assert body["retriever"] == graph["retriever"].name
    assert httpx.post(f"{URL}/v1/retrieve", json={"k": 4}).status_code == 422
    health = httpx.get(f"{URL}/healthz").json()
    assert (health["version"], health["retriever"], health["llm_head"]) == (
        graph["student"].name, graph["retriever"].name, graph["head"].name)
    assert health["llm_head_device"] == "cpu"  # no GPU given to its replica here


def test_http_reaches_the_router_through_haproxy(graph):
    """The suite runs with the fast ingress users get (conftest → llmctr.runtime.apply_fast_ingress_env): the graph's
    HTTP port is served by an HAProxy process, not by Serve's Python proxy actor."""
    import psutil

    assert httpx.get(f"{URL}/healthz").json()["ingress"] == "haproxy"
    listeners = {c.pid for c in psutil.net_connections("tcp") if c.status == "LISTEN" and c.laddr.port == PORT}
    assert listeners, f"nothing listens on {PORT}"
    names = set()
    for pid in filter(None, listeners):
        try:
            names.add(psutil.Process(pid).name())
        except psutil.NoSuchProcess:  # an HAProxy replaced by a reload exits between the two calls (CI, stop 26)
            continue
    assert names == {"haproxy"}


def _traffic(records, stop: threading.Event, out: list):
    with httpx.Client(base_url=URL, timeout=60) as client:
        while not stop.is_set():
            resp = client.post("/v1/score", json={"records": records})
            out.append((resp.status_code, resp.json().get("version") if resp.status_code == 200 else resp.text))


def test_hot_reload_of_the_student_under_traffic(graph, prepared_synthetic, tmp_path):
    from llmctr.models.artifact import load_artifact, save_artifact

    model, fmap, meta = load_artifact(graph["student"])
    new = save_artifact(tmp_path / "models", "student_v2", model.state_dict(), model.config, fmap, {})
    stop, seen = threading.Event(), []
    thread = threading.Thread(target=_traffic, args=(graph["records"][:8], stop, seen))
    thread.start()
    try:
        time.sleep(2)
        _deploy(graph, student_config={"model_dir": str(new)})
        deadline = time.time() + 60
        while time.time() < deadline and not (seen and seen[-1][1] == new.name):
            time.sleep(0.5)
        time.sleep(1)
    finally:
        stop.set()
        thread.join()
        _deploy(graph, student_config={"model_dir": str(graph["student"])})
    statuses = {s for s, _ in seen}
    assert statuses == {200}, [x for x in seen if x[0] != 200][:3]
    versions = [v for _, v in seen]
    assert versions[0] == graph["student"].name and versions[-1] == new.name


def test_killing_the_llm_head_replica_never_fails_a_request(graph):
    import ray

    stop, seen = threading.Event(), []
    thread = threading.Thread(target=_traffic, args=(graph["records"][:6], stop, seen))
    thread.start()
    try:
        time.sleep(1)
        victim = next(a for a in ray.util.list_named_actors(all_namespaces=True)
                      if a["namespace"] == "serve" and "LLMHeadDeployment" in a["name"])
        ray.kill(ray.get_actor(victim["name"], namespace="serve"), no_restart=True)
        time.sleep(8)
    finally:
        stop.set()
        thread.join()
    assert seen and {s for s, _ in seen} == {200}, [x for x in seen if x[0] != 200][:3]
    deadline = time.time() + 60  # Serve replaces the replica: the LLM path answers again
    while time.time() < deadline:
        if {r["route"] for r in _score(graph["records"][:3])["results"]} == {"llm"}:
            break
        time.sleep(1)
    else:
        pytest.fail("the LLM path did not come back after its replica was killed")


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                    | st.text(max_size=8), lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _request_schema(path: str) -> dict:
    """The request body schema of ``path`` from the live OpenAPI spec, with its components (for $ref)."""
    spec = httpx.get(f"{URL}/openapi.json").json()
    body = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    return {**body, "components": spec["components"]}


@pytest.mark.parametrize("path", ["/v1/score", "/v1/retrieve"])
def test_no_body_from_the_openapi_schema_gets_a_5xx(graph, path):
    @FUZZ
    @given(body=from_schema(_request_schema(path)) | JSON)
    def check(body):
        resp = httpx.post(f"{URL}{path}", json=body, timeout=60)
        assert resp.status_code < 500, (body, resp.status_code, resp.text[:300])

    check()


def test_no_mutated_record_gets_a_5xx(graph):
    fields = sorted(graph["records"][0])

    @FUZZ
    @given(index=st.integers(0, 9), changes=st.dictionaries(st.sampled_from([*fields, "extra"]), JSON, max_size=3),
           dropped=st.sets(st.sampled_from(fields), max_size=2))
    def check(index, changes, dropped):
        record = {k: v for k, v in {**graph["records"][index], **changes}.items() if k not in dropped}
        resp = httpx.post(f"{URL}/v1/score", json={"records": [record, graph["records"][index]]}, timeout=60)
        assert resp.status_code in (200, 422), (record, resp.status_code, resp.text[:300])
        if resp.status_code == 422:
            assert "record 0" in resp.text

    check()
