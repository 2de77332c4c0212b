"""What a lost replica costs the scoring graph: steady load (4 clients, 5 records per request) while one replica of
each deployment in turn is killed with SIGKILL; per kill, requests sent and failed (by status), p99 latency from the
kill until the deployment is back to full strength, and the seconds that took.

    python -m benchmarks.serve_chaos                       # the synthetic student (trained if missing), 2 replicas
    python -m benchmarks.serve_chaos --student artifacts/models/ml1m_deepfm --data artifacts/data/ml1m

Writes ``benchmarks/results/serve_chaos.json`` (``serve_chaos_deployment.json`` with ``--student-placement
deployment``; ``kills``: ``{deployment, replicas, sent, failed, p99_ms, recovery_s}``) with the ingress it ran
behind. The Router retries a call whose student or history-store replica
died (serve/limits.py); a Router replica's own death is up to the ingress in front of it.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from benchmarks.lib import protocol as proto
from benchmarks.lib.chaos import kill_one, replica_pids, steady_load, wait_replicas
from llmctr import storage

log = logging.getLogger("serve_chaos")


def student_and_records(args) -> tuple[Path, list[dict]]:
    from llmctr.data import FeatureMap, prepare
    from llmctr.data.records import raw_records
    from llmctr.models.artifact import resolve_artifact
    from llmctr.train import fit, load_experiment

    root = Path(storage.artifacts_root())
    data = Path(args.data) if args.data else prepare("synthetic", artifacts=root)[0]
    student = Path(args.student) if args.student else root / "models" / "synthetic_deepfm"
    if not (student / "LATEST").is_file():
        student = Path(fit(load_experiment("synthetic_deepfm"), data, artifacts=root).artifact).parent
    fmap = FeatureMap.load(data / "feature_map.json")
    records = raw_records(pd.read_parquet(data / "test").head(500), fmap)
    return Path(resolve_artifact(student)), records


def one_kill(url: str, deployment: str, replicas: int, records: list[dict], seconds: float, at: float) -> dict:
    """Load for ``seconds``; at ``at`` s one replica of ``deployment`` is killed and a watcher waits for the
    deployment to be back to ``replicas`` live replicas (none of them the killed one)."""
    import threading
    import time

    t0 = time.perf_counter()
    done: dict[str, float] = {}

    def kill() -> None:
        pid = kill_one(deployment)

        def watch() -> None:
            wait_replicas(deployment, replicas, not_pid=pid)
            done["recovered"] = time.perf_counter() - t0

        watcher.append(threading.Thread(target=watch, daemon=True))
        watcher[0].start()

    watcher: list[threading.Thread] = []
    traffic = steady_load(url, records, seconds=seconds, events=[(at, "kill", kill)])
    watcher[0].join()
    killed_at = traffic.events["kill"]
    recovered = done["recovered"]
    return {"deployment": deployment, "replicas": replicas, "sent": len(traffic.status),
            "failed": sum(traffic.failed().values()), "failed_by_status": traffic.failed(),
            "p99_ms": traffic.p99_ms(killed_at, recovered), "p99_ms_before_kill": traffic.p99_ms(0, killed_at),
            "recovery_s": recovered - killed_at}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--student", help="student artifact folder (default: the synthetic DeepFM, trained if missing)")
    parser.add_argument("--data", help="prepared dataset whose test rows are sent (default: synthetic)")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--kill-at", type=float, default=4)
    parser.add_argument("--port", type=int, default=8161)
    parser.add_argument("--student-placement", choices=("router", "deployment"), default="router",
                        help="the student inside the Routers (what llmctr ships) or as the DistilledScorer deployment "
                             "(then its replicas are killed too)")
    args, prov = proto.parse_with_provenance(parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    from ray import serve

    from llmctr.runtime import ingress_mode, init_ray
    from llmctr.serve.client import wait_healthy
    from llmctr.serve.deploy import deploy

    init_ray()
    student, records = student_and_records(args)
    url = deploy(student, port=args.port, num_replicas=args.replicas, student_placement=args.student_placement)
    kills = []
    try:
        wait_healthy(url, timeout=300)
        deployments = (["DistilledScorer"] if args.student_placement == "deployment" else []) + ["Router"] + (
            ["HistoryStoreDeployment"] if replica_pids("HistoryStoreDeployment") else [])
        for deployment in deployments:
            replicas = len(replica_pids(deployment))
            kills.append(one_kill(url, deployment, replicas, records, args.seconds, args.kill_at))
            log.info("%s", kills[-1])
    finally:
        serve.shutdown()
    name = "serve_chaos" if args.student_placement == "router" else "serve_chaos_deployment"
    path = proto.write(name, {"kills": kills, "student": f"{student.parent.name}/{student.name}",
                                       "ingress": ingress_mode(), "clients": 4, "per_request": 5,
                                       "student_placement": args.student_placement,
                                       "seconds": args.seconds, "kill_at_s": args.kill_at}, prov)
    print(path)


if __name__ == "__main__":
    main()
