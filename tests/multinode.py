"""Multi-node scenarios on a local ``ray.cluster_utils.Cluster`` (head + 2 worker nodes), run in a
subprocess by tests/test_multinode.py so that they never share a Ray connection with other tests.

    python tests/multinode.py kill_resume|kill_resume_small|serve_failover OUT_JSON
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import ray  # noqa: E402
from ports import free_port  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402
from ray.util.state import list_actors  # noqa: E402
from train_hold import checkpoint_folders, registered_epoch  # noqa: E402

from llmctr.data import load_dataset_config  # noqa: E402
from llmctr.data.pipeline import prepare_dataset  # noqa: E402
from llmctr.data.synthetic import write_synthetic  # noqa: E402
from llmctr.train import fit, load_experiment  # noqa: E402
from llmctr.train.job import HOLD_ENV  # noqa: E402


def start_cluster() -> tuple[Cluster, list]:
    # Logical CPUs (2 per node) over the machine's 2 cores: enough that the training workers' placement
    # group never leaves Ray Data without a whole CPU (the 2-CPU deadlock in stack-facts.md).
    # Own dashboard ports: the test session's Ray may hold the defaults, and without its dashboard this
    # cluster has no State API (the scenarios locate actors with it).
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "include_dashboard": True, "dashboard_port": free_port(),
        "dashboard_agent_listen_port": free_port()})
    workers = [cluster.add_node(num_cpus=2) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    return cluster, workers


def experiment(epochs: int):
    exp = load_experiment("synthetic_deepfm")
    exp.train.num_workers = 2
    exp.train.cpus_per_worker = 0.5
    exp.train.placement_strategy = "SPREAD"
    exp.train.epochs = epochs
    exp.train.early_stopping_patience = epochs
    exp.train.batch_size = 256
    return exp


def prepared(root: Path, rows: int) -> Path:
    """The synthetic log without its history field (its per-user Ray Data shuffle would cost more than these
    scenarios' training)."""
    write_synthetic(root / "raw", n_rows=rows, seed=7)
    out = root / "prepared"
    cfg = load_dataset_config("synthetic")
    cfg.fields = [f for f in cfg.fields if f.kind != "sequence"]
    prepare_dataset(cfg, root / "raw", out)
    return out


def train_workers(alive_only: bool = False) -> dict[str, str]:
    """actor id → node id of the Ray Train workers (of every run so far)."""
    filters = [("class_name", "=", "RayTrainWorker")] + ([("state", "=", "ALIVE")] if alive_only else [])
    return {a.actor_id: a.node_id for a in _actors(filters)}


def _actors(filters: list) -> list:
    # The address is explicit: pytest's own local cluster may be alive beside this one, and the State API's
    # auto-detection then picks whichever started last.
    address = ray.get_runtime_context().gcs_address
    return list_actors(address=address, filters=filters, detail=True, limit=1000)


def kill_resume(root: Path, rows: int = 40_000, epochs: int = 4, clean_run: bool = True) -> dict:
    """A run held after its second epoch's checkpoint (LLMCTR_TRAIN_HOLD_FILE), a node running one of its workers
    removed, the hold lifted: epochs 3.. are still to come, so the run must restart from that checkpoint. With
    ``clean_run`` the same run first trains undisturbed, for the AUC to compare with.

    The held run's workers are placed with the SPREAD strategy: the nodes they run on (``busy``) show the spread."""
    hold = root / "hold"
    os.environ[HOLD_ENV] = str(hold)  # before the cluster starts: its nodes' workers inherit it
    cluster, workers = start_cluster()
    try:
        data = prepared(root, rows)
        clean = fit(experiment(epochs), data, artifacts=root / "clean").metrics if clean_run else {}
        earlier = set(train_workers())
        storage = root / "storage"
        box: dict = {}
        hold.write_text("2")  # workers wait after reporting epoch 2
        thread = threading.Thread(target=lambda: box.update(
            result=fit(experiment(epochs), data, artifacts=root / "killed", storage_path=str(storage))))
        thread.start()
        deadline = time.time() + 600
        # Held after epoch 2, and epoch 2's checkpoint registered by Ray Train's controller (its snapshot file), not
        # only written: a kill between the two may restart from scratch, which is not what this scenario tests.
        while registered_epoch(storage) < 2 and time.time() < deadline:
            time.sleep(0.2)
        held_checkpoints = len(checkpoint_folders(storage))
        killed_at = time.time()
        busy = {node for actor, node in train_workers(alive_only=True).items() if actor not in earlier}
        victim = next(w for w in workers if w.node_id in busy)  # a worker node running this run's worker
        cluster.remove_node(victim, allow_graceful=False)
        cluster.add_node(num_cpus=2)
        hold.unlink()
        thread.join(timeout=900)
        resumed = box["result"].metrics
        return {"victim": victim.node_id, "busy": sorted(busy), "held_checkpoints": held_checkpoints,
                "worker_node_ids": [w.node_id for w in workers], "head_node_id": cluster.head_node.node_id,
                "clean_test_auc": clean.get("test_auc"), "resumed_test_auc": resumed["test_auc"],
                "resumes": resumed["resumes"], "epochs_run": resumed["epochs_run"], "epochs": epochs,
                "seconds_after_kill": time.time() - killed_at}
    finally:
        ray.shutdown()
        cluster.shutdown()


def kill_resume_small(root: Path) -> dict:
    return kill_resume(root, rows=8000, epochs=3, clean_run=False)


def _student_replicas() -> list:
    """Alive replicas running the graph's student: the Routers (the student runs inside them by default)."""
    return [a for a in _actors([("state", "=", "ALIVE")])
            if a.class_name.startswith("ServeReplica") and "Router" in a.class_name]


def serve_failover(root: Path) -> dict:
    """Two Router replicas (the student inside each) on two worker nodes; the node of one dies; requests keep being
    answered."""
    import httpx
    import pandas as pd
    from ray import serve

    from llmctr.data import FeatureMap
    from llmctr.data.records import raw_records
    from llmctr.models import ModelConfig
    from llmctr.models.artifact import build_model, save_artifact
    from llmctr.serve.client import wait_healthy
    from llmctr.serve.deploy import deploy

    cluster, workers = start_cluster()
    try:
        data = prepared(root, 4000)
        fmap = FeatureMap.load(data / "feature_map.json")
        config = ModelConfig(name="deepfm", embedding_dim=8, params={"hidden_units": [16]})
        artifact = save_artifact(root / "models", "m", build_model(fmap, config).state_dict(), config, fmap, {})
        records = raw_records(pd.read_parquet(data / "test").head(20), fmap)
        url = deploy(artifact, port=8125, num_replicas=2, max_replicas_per_node=1)
        wait_healthy(url)
        replicas = {a.node_id for a in _student_replicas()}
        victim = next(w for w in workers if w.node_id in replicas)
        cluster.remove_node(victim, allow_graceful=False)
        cluster.add_node(num_cpus=2)
        statuses = []
        with httpx.Client(base_url=url, timeout=30) as client:
            for _ in range(40):
                statuses.append(client.post("/v1/score", json={"records": records}).status_code)
                time.sleep(0.25)
        deadline = time.time() + 120
        while time.time() < deadline:  # the controller brings the second replica back on the new node
            alive = _student_replicas()
            if len(alive) == 2:
                break
            time.sleep(1)
        serve.shutdown()
        return {"replica_nodes": len(replicas), "statuses": statuses, "replicas_after": len(alive),
                "victim_hosted_replica": victim.node_id in replicas}
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    scenario, out = sys.argv[1], Path(sys.argv[2])
    with tempfile.TemporaryDirectory() as tmp:
        result = {"kill_resume": kill_resume, "kill_resume_small": kill_resume_small,
                  "serve_failover": serve_failover}[scenario](Path(tmp))
    out.write_text(json.dumps(result))
