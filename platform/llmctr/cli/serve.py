"""`llmctr serve` and `llmctr score`: Ray Serve deployment and an HTTP client."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from llmctr.cli.common import add_common
from llmctr.serve.routing import inflight_cap


def cmd_serve(args) -> int:
    from ray import serve

    from llmctr import storage
    from llmctr.runtime import init_ray
    from llmctr.serve.deploy import default_cold_fields, deploy
    from llmctr.storage import artifacts_root

    init_ray(args.address)
    if args.model:
        model = args.model
    else:
        name = args.experiment
        if Path(name).suffix:  # an experiment YAML: its models live under its name
            from llmctr.train import load_experiment

            name = load_experiment(name).name
        model = storage.join(artifacts_root(args.artifacts), "models", name)
    routing = {"band": args.band} if args.band else {}
    if args.deadline_ms:
        routing["deadline_ms"] = args.deadline_ms
    if args.cold_fields:
        routing["cold_fields"] = args.cold_fields
    elif args.head:  # records with unseen entity ids take the LLM path, as serve_configs/local.yaml has it
        routing["cold_fields"] = default_cold_fields(model)
    if args.max_llm_inflight is not None:
        routing["max_llm_inflight"] = args.max_llm_inflight
    url = deploy(model, host=args.host, port=args.port, num_replicas=args.replicas, retriever_dir=args.retriever,
                 head_dir=args.head, router_config={"routing": routing} if routing else None,
                 student_placement=args.student_placement)
    parts = " + ".join(p for p in (args.retriever and "retriever", args.head and "LLM head") if p)
    print(f"serving {model}{' with ' + parts if parts else ''} at {url}/v1/score (docs: {url}/docs); "
          "Ctrl-C to stop", flush=True)
    if args.no_block:
        return 0
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.shutdown()
    return 0


def cmd_score(args) -> int:
    from llmctr.serve.client import score_stream

    path = Path(args.input)
    if path.suffix == ".jsonl":
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()][: args.n]
        batches, total = [records], len(records)
    else:  # a prepared parquet split, read a batch at a time: a split of any size is never held whole
        from llmctr.data import FeatureMap
        from llmctr.data.records import parquet_records

        fmap = FeatureMap.load(Path(args.feature_map) if args.feature_map else path.parent / "feature_map.json")
        batches, total = parquet_records(path, fmap, limit=args.n)
    t0 = time.perf_counter()
    run = score_stream(args.url, batches, args.per_request, total=total)
    seconds = time.perf_counter() - t0
    if args.output:
        Path(args.output).write_text("\n".join(f"{p:.6f}" for p in run.probabilities) + "\n")
    print(json.dumps({"records": len(run.probabilities), "version": run.version, "seconds": seconds,
                      "p50_ms": run.percentile(50), "p95_ms": run.percentile(95),
                      "first": run.probabilities[:5].tolist()}, indent=1))
    return 0


def register(sub) -> None:
    p = sub.add_parser("serve", help="deploy the scoring graph on Ray Serve (student; + retriever and LLM head)")
    p.add_argument("--model", help="model folder (with LATEST) or version folder")
    p.add_argument("--experiment", default="ml1m_deepfm", help="serve ARTIFACTS/models/EXPERIMENT if no --model")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--retriever", help="retriever artifact (llmctr retriever train): RAG context for the LLM head")
    p.add_argument("--head", help="early-exit LLM head artifact (llmctr llm-head train): the LLM path")
    p.add_argument("--band", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help="student probabilities sent to the LLM path (default 0.4 0.6)")
    p.add_argument("--deadline-ms", type=float, help="LLM path budget per request (default 200)")
    p.add_argument("--cold-fields", nargs="+", help="fields whose unseen ids send a record to the LLM path "
                   "(default with --head: the dataset's entity keys, e.g. user_id movie_id)")
    p.add_argument("--max-llm-inflight", type=inflight_cap, metavar="N|auto",
                   help="records on the LLM path at once before the rest answer with the student (auto: what the "
                        "LLM path finishes per deadline; default: no cap)")
    p.add_argument("--student-placement", choices=("router", "deployment"), default="router",
                   help="the student's forward inside the Router replicas (router: one hop less, for CPU) or in its "
                        "own DistilledScorer deployment (for a GPU or independent scaling)")
    p.add_argument("--no-block", action="store_true", help="return after deploying (when joining a cluster)")
    add_common(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("score", help="score records over HTTP (jsonl of raw records, or a prepared parquet split)")
    p.add_argument("input")
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--n", type=int, help="score the first N records (default: all)")
    p.add_argument("--per-request", type=int, default=50)
    p.add_argument("--feature-map", help="feature_map.json for a parquet input (default: beside it)")
    p.add_argument("--output", help="write one probability per line here")
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)
    p.set_defaults(func=cmd_score)
