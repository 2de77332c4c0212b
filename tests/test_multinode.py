"""Training across the nodes of a local multi-node Ray cluster, and surviving the loss of one."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmctr.runtime import FAST_INGRESS_ENV

SCRIPT = Path(__file__).with_name("multinode.py")


def _run(scenario: str, tmp_path: Path, timeout: int) -> dict:
    out = tmp_path / "result.json"
    # Several "nodes" on one host would each start an HAProxy on the same HTTP port: these scenarios keep Serve's
    # Python proxy (one per node, as before).
    env = {k: v for k, v in os.environ.items() if k not in FAST_INGRESS_ENV}
    env["LLMCTR_SERVE_FAST_INGRESS"] = "0"
    proc = subprocess.run([sys.executable, str(SCRIPT), scenario, str(out)], capture_output=True, text=True,
                          timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


@pytest.mark.slow  # the default suite kills a worker process on one node (tests/test_train.py)
def test_workers_spread_across_nodes_and_a_killed_node_resumes_from_checkpoint(tmp_path):
    """8,000 rows, 3 epochs, 2 workers placed with SPREAD on a head and 2 worker nodes; the node of one worker is
    killed while the run is held after epoch 2."""
    result = _run("kill_resume_small", tmp_path, timeout=1200)
    assert len(result["busy"]) == 2, result  # the two workers on two nodes
    assert set(result["busy"]) <= set(result["worker_node_ids"]) | {result["head_node_id"]}, result
    assert result["held_checkpoints"] == 2, result
    assert result["resumes"] >= 1 and result["epochs_run"] == result["epochs"] == 3, result
    assert result["resumed_test_auc"] > 0.6, result


@pytest.mark.slow
def test_killed_node_resumes_from_checkpoint(tmp_path):
    result = _run("kill_resume", tmp_path, timeout=1200)
    print(json.dumps(result))
    assert result["held_checkpoints"] == 2, result
    assert result["resumes"] >= 1, result
    assert result["epochs_run"] == 4
    assert abs(result["resumed_test_auc"] - result["clean_test_auc"]) <= 0.002, result


@pytest.mark.slow
def test_serve_survives_losing_a_replica_node(tmp_path):
    result = _run("serve_failover", tmp_path, timeout=900)
    assert result["replica_nodes"] == 2 and result["victim_hosted_replica"], result
    assert result["statuses"] and set(result["statuses"]) == {200}, result
    assert result["replicas_after"] == 2, result
