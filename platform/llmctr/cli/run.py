"""`llmctr pipeline` and `llmctr demo`: the stages end to end."""

from __future__ import annotations

import argparse

from llmctr.cli.common import add_common
from llmctr.cli.data import cmd_data_prepare
from llmctr.cli.serve import cmd_serve
from llmctr.cli.train import cmd_train


def cmd_pipeline(args) -> int:
    """prepare → train → deploy, for one experiment (what jobs/pipeline.py submits to a cluster). An experiment with
    a ``semantics`` section encodes (and fine-tunes) its LLM vectors first; one with ``distill`` trains teacher and
    student and deploys the student."""
    from llmctr.train import load_experiment

    exp = load_experiment(args.experiment)
    steps = [(cmd_data_prepare, {"dataset": exp.dataset, "data_dir": args.data_dir, "out": None}),
             (cmd_train, {"data": None, "num_workers": args.num_workers, "epochs": args.epochs,
                          "batch_size": None, "use_gpu": args.use_gpu})]
    if not args.no_deploy:
        steps.append((cmd_serve, {"model": None, "host": args.host, "port": args.port, "replicas": 1,
                                  "no_block": True}))
    for func, extra in steps:
        func(argparse.Namespace(**{**vars(args), **extra}))
    return 0


def cmd_demo(args) -> int:
    from llmctr.demo import run_demo
    from llmctr.runtime import init_ray

    init_ray(args.address)
    report = run_demo(args.dataset, args.data_dir, args.artifacts, n_records=args.records, port=args.port,
                      epochs=args.epochs)
    print("\n=== llmctr demo: done ===\n" + report.render(), flush=True)
    return 0


def register(sub) -> None:
    p = sub.add_parser("pipeline", help="prepare → train → deploy one experiment (returns once deployed)")
    p.add_argument("experiment")
    p.add_argument("--data-dir")
    p.add_argument("--num-workers", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--use-gpu", action="store_true")
    p.add_argument("--no-deploy", action="store_true")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8000)
    add_common(p)
    p.set_defaults(func=cmd_pipeline)

    p = sub.add_parser("demo", help="prepare → train → serve → score over HTTP, end to end")
    p.add_argument("--dataset", help="dataset name (default: ml1m if present, else synthetic)")
    p.add_argument("--data-dir")
    p.add_argument("--records", type=int, default=500)
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--epochs", type=int)
    add_common(p)
    p.set_defaults(func=cmd_demo)
