"""A real `ray start --head` on localhost and `ray job submit` of jobs/train.py."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from ports import free_port

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.slow
def test_ray_job_submit_train(prepared_synthetic, tmp_path):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    dash, gcs = free_port(), free_port()
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--num-cpus", "2", "--port", str(gcs),
         "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash), "--include-dashboard", "true",
         # the test session's own Ray already holds the default agent port
         "--dashboard-agent-listen-port", str(free_port())],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"{address}/api/version", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        else:
            pytest.fail("ray head did not come up")
        artifacts = tmp_path / "artifacts"
        submit = [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", str(REPO), "--",
                  sys.executable, "jobs/train.py", "--config", "configs/experiments/synthetic_deepfm.yaml",
                  "--data", str(prepared_synthetic), "--artifacts", str(artifacts), "--epochs", "2"]
        for _ in range(20):  # the head's job agent starts a little after its HTTP server
            job = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=600)
            logs = job.stdout + job.stderr
            if "No available agent" not in logs:
                break
            time.sleep(3)
        assert job.returncode == 0, logs[-4000:]
        assert "succeeded" in logs
        artifact = next((artifacts / "models" / "synthetic_deepfm").glob("v*"))
        assert str(artifact) in logs, "the job's log names the artifact it wrote"
        assert json.loads((artifact / "metrics.json").read_text())["test_auc"] > 0.6
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=60)
        _forget_cluster(gcs)


def _forget_cluster(gcs_port: int) -> None:
    """`ray start` records its address in Ray's temp dir (ray_current_cluster) and a killed head leaves it there:
    a later `serve run` or `ray.init()` without an address would wait for that dead cluster forever."""
    from ray._common.utils import get_ray_address_file

    path = Path(get_ray_address_file(None))
    if path.is_file() and path.read_text().strip().endswith(f":{gcs_port}"):
        path.unlink()
