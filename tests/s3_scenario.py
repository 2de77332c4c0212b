"""Run as a subprocess by tests/test_storage.py: a local S3 endpoint (moto) and a fresh local Ray whose workers
inherit the endpoint settings; prepare → train → artifact → score, all through ``s3://`` locations.
Prints one JSON line with what it saw."""

from __future__ import annotations

import json
import os
import sys


def main(raw_dir: str) -> None:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(AWS_ENDPOINT_URL=f"http://{host}:{port}", AWS_ACCESS_KEY_ID="test",
                      AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1", RAY_AUTH_MODE="disabled")
    import boto3
    import ray

    boto3.client("s3").create_bucket(Bucket="llmctr")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    from llmctr import storage
    from llmctr.data import prepare
    from llmctr.data.records import raw_records
    from llmctr.serve.scorer import Scorer
    from llmctr.train import fit, load_experiment

    root = "s3://llmctr/team"
    data, manifest = prepare("synthetic", data_dir=raw_dir, artifacts=root, engine="ray")
    again, _ = prepare("synthetic", data_dir=raw_dir, artifacts=root)  # up to date: skipped
    # the in-process engine writes the same splits to the bucket (a version folder and CURRENT of its own)
    local, local_manifest = prepare("synthetic", data_dir=raw_dir, out_dir=f"{root}/data_local", engine="local")
    exp = load_experiment("synthetic_deepfm")
    exp.train.epochs, exp.train.batch_size, exp.train.engine = 1, 1024, "ray"  # Ray Train's checkpoints on s3
    result = fit(exp, data, artifacts=root)
    scorer = Scorer.load(storage.join(root, "models", exp.name))  # the LATEST version, downloaded
    import pandas as pd
    import pyarrow.fs as pafs

    fs, path = pafs.FileSystem.from_uri(str(storage.join(storage.follow_pointer(data, "CURRENT"), "test")))
    # the first 20 test rows, over as many part files as hold them (Ray Data may write small parts)
    parts = sorted(i.path for i in fs.get_file_info(pafs.FileSelector(path)) if i.path.endswith(".parquet"))
    frames = []
    for part in parts:
        frames.append(pd.read_parquet(fs.open_input_file(part)))
        if sum(map(len, frames)) >= 20:
            break
    frame = pd.concat(frames, ignore_index=True)
    probs = scorer.score(raw_records(frame.head(20), scorer.fmap))
    print(json.dumps({
        "data": str(data), "rows": manifest.rows, "current": storage.read_text(storage.join(data, "CURRENT")).strip(),
        "artifact": str(result.artifact), "latest": storage.read_text(storage.join(root, "models", exp.name,
                                                                                "LATEST")).strip(),
        "runs": storage.read_text(storage.join(root, "runs.jsonl")).count("\n"),
        "ray_results": storage.exists(storage.join(root, "ray_results")),
        "test_auc": result.metrics["test_auc"], "scored": len(probs),
        "probs_ok": bool(((probs > 0) & (probs < 1)).all()), "same_data_again": str(again) == str(data),
        "local_engine_same_rows": local_manifest.rows == manifest.rows and local_manifest.engine == "local"
        and storage.exists(storage.join(local, "CURRENT")),
    }))
    ray.shutdown()
    server.stop()


if __name__ == "__main__":
    main(sys.argv[1])
