"""A replica dies under steady traffic (SIGKILL of its process). With two student replicas no request fails (the
Router sends the call again, serve/limits.py); with two Router replicas at most 1 % fails (HAProxy sends a
request whose connection closed unanswered to the other, runtime.FAST_INGRESS_ENV, but not one whose answer had
begun); with the only student replica gone, whatever fails is a 503 with Retry-After, never a 500.
benchmarks/serve_chaos.py measures the same."""

import pandas as pd
import pytest

from benchmarks.lib.chaos import kill_one, replica_pids, steady_load, wait_replicas
from llmctr.data import FeatureMap
from llmctr.data.records import raw_records

PORT = 8127
URL = f"http://127.0.0.1:{PORT}"


@pytest.fixture(scope="module")
def records(prepared_synthetic):
    fmap = FeatureMap.load(prepared_synthetic / "feature_map.json")
    return raw_records(pd.read_parquet(prepared_synthetic / "test").head(200), fmap)


@pytest.mark.parametrize("victim,replicas", [
    # the default suite kills a Router replica (the student runs inside it by default); the student as a deployment
    # of its own (autoscaled.yaml) is killed in the slow suite
    pytest.param("DistilledScorer", 2, marks=pytest.mark.slow),
    ("Router", 2),
    pytest.param("DistilledScorer", 1, marks=pytest.mark.slow)])
def test_a_killed_replica_fails_no_request(trained_synthetic, records, victim, replicas):
    """The DistilledScorer cases run the student as its own deployment; the Router case with the student inside
    the Routers (the default)."""
    import httpx
    from ray import serve

    from llmctr.serve.client import wait_healthy
    from llmctr.serve.deploy import deploy

    # The request timeout leaves room for Serve to restart a lone replica; the Router gets as many replicas.
    deploy(trained_synthetic.artifact, port=PORT, num_replicas=replicas,
           student_placement="deployment" if victim == "DistilledScorer" else "router",
           router_config={"limits": {"request_timeout_s": 20, "retries": 3, "retry_backoff_s": 0.2}})
    try:
        wait_healthy(URL)
        assert len(replica_pids(victim)) == replicas
        killed = []
        traffic = steady_load(URL, records, seconds=10, clients=4,
                              events=[(3, "kill", lambda: killed.append(kill_one(victim)))])
        assert len(traffic.status) > 20, traffic.counts()
        if victim == "DistilledScorer" and replicas == 2:
            assert traffic.failed() == {}, traffic.counts()
        elif victim == "Router":
            # HAProxy resends what the dead Router left unanswered, but not everything: a request whose answer had
            # begun (HAProxy's 502, which Serve's error page turns into 500), or a kept-alive client connection
            # HAProxy closes when it reloads its backends, still fails: 0-2 per kill in 1,000-3,500 requests
            # (benchmarks/results/serve_chaos*.json), 1 of 553 here once. Bounded, not zero.
            assert sum(traffic.failed().values()) <= 0.01 * len(traffic.status), traffic.counts()
        else:
            assert set(traffic.failed()) <= {"503"}, traffic.counts()
        wait_replicas(victim, replicas, not_pid=killed[0])
        assert httpx.post(f"{URL}/v1/score", json={"records": records[:3]}).status_code == 200
    finally:
        serve.shutdown()
