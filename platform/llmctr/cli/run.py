"""`llmctr pipeline` and `llmctr demo`: the stages end to end."""

from __future__ import annotations

import json

from llmctr.cli.common import add_common, apply_training


def cmd_pipeline(args) -> int:
    """prepare → (encode) → train → (retriever → LLM head) → deploy, for one experiment: what jobs/pipeline.py
    submits to a cluster. An experiment with a ``semantics`` section encodes (and fine-tunes) its LLM vectors first;
    one with ``distill`` trains teacher and student and deploys the student. ``--retriever`` / ``--llm-head`` add
    the graph's LLM path, trained for that student."""
    from llmctr.data import prepare
    from llmctr.runtime import init_ray
    from llmctr.serve.deploy import deploy
    from llmctr.train import fit, load_experiment
    from llmctr.train.llm_path import fit_llm_path

    exp = load_experiment(args.experiment)
    apply_training(exp.train, args)
    init_ray(args.address)
    data, _ = prepare(exp.dataset, data_dir=args.data_dir, artifacts=args.artifacts)
    student = fit(exp, data, artifacts=args.artifacts)
    parts = fit_llm_path(student.artifact, data, args.retriever, args.llm_head, artifacts=args.artifacts,
                            head_rows=args.head_rows)
    out = {"data": str(data), "student": str(student.artifact), "test_auc": student.metrics["test_auc"],
           "retriever": str(parts.retriever.artifact) if parts.retriever else None,
           "llm_head": str(parts.head.artifact) if parts.head else None}
    if not args.no_deploy:
        out["url"] = deploy(student.artifact, host=args.host, port=args.port, retriever_dir=out["retriever"],
                            head_dir=out["llm_head"])
    print(json.dumps(out, indent=1, default=float), flush=True)
    return 0


def cmd_demo(args) -> int:
    from llmctr.demo import DemoOptions, run_demo
    from llmctr.runtime import init_ray

    init_ray(args.address)
    opts = DemoOptions(n_records=args.records, per_request=args.per_request, port=args.port, epochs=args.epochs,
                       head_rows=args.head_rows)
    report = run_demo(args.dataset, args.data_dir, args.artifacts, opts)
    print("\n=== llmctr demo: done ===\n" + report.render(), flush=True)
    return 0


def register(sub) -> None:
    p = sub.add_parser("pipeline", help="prepare → train → (retriever → LLM head) → deploy one experiment "
                                        "(returns once deployed)")
    p.add_argument("experiment")
    p.add_argument("--retriever", help="also train this retriever (configs/retrievers/NAME.yaml) for the graph")
    p.add_argument("--llm-head", help="also train this early-exit LLM head (configs/llm_heads/NAME.yaml) on the "
                                      "new student")
    p.add_argument("--head-rows", type=int, help="fit the LLM head on a sample of this many rows")
    p.add_argument("--data-dir")
    p.add_argument("--num-workers", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--use-gpu", action="store_true")
    p.add_argument("--no-deploy", action="store_true")
    p.add_argument("--host", default="127.0.0.1", help="interface to serve on (0.0.0.0: every one, with a warning)")
    p.add_argument("--port", type=int, default=8000)
    add_common(p)
    p.set_defaults(func=cmd_pipeline)

    p = sub.add_parser("demo", help="prepare → encode → teacher + student → retriever → LLM head → Serve graph → "
                                    "score over HTTP, end to end")
    p.add_argument("--dataset", help="dataset name or YAML path (default: ml1m if present, else synthetic); a YAML of "
                                     "one's own runs the synthetic stack's settings: the whole graph when its entities "
                                     "name a user and an item, else the student alone")
    p.add_argument("--data-dir")
    p.add_argument("--records", type=int, default=500, help="test records scored over HTTP")
    p.add_argument("--per-request", type=int, default=5, help="records per HTTP request")
    p.add_argument("--head-rows", type=int, default=1500, help="rows the LLM head is fitted on (a sample)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--epochs", type=int)
    add_common(p)
    p.set_defaults(func=cmd_demo)
