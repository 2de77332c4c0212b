"""`llmctr llm-head train NAME`: the early-exit LLM head of the scoring graph (configs/llm_heads/NAME.yaml)."""

from __future__ import annotations

import json

from llmctr.cli.common import add_common


def cmd_llm_head_train(args) -> int:
    from llmctr.data import prepared_dir
    from llmctr.runtime import init_ray
    from llmctr.train.llm_head import fit_early_exit, load_llm_head_config

    config = load_llm_head_config(args.config)
    if args.sample is not None:
        config.train.sample = args.sample or None
    if args.epochs is not None:
        config.train.epochs = args.epochs
    if args.fit_split is not None:
        config.train.fit_split = args.fit_split
    if args.student is not None:
        config.student = args.student or None
    if args.use_gpu:
        config.train.use_gpu = True
    init_ray(args.address)
    result = fit_early_exit(config, args.data or prepared_dir(config.dataset, args.artifacts), args.artifacts)
    print(json.dumps({"artifact": str(result.artifact), **result.metrics}, indent=1, default=float))
    return 0


def register(sub) -> None:
    p = sub.add_parser("llm-head", help="the early-exit LLM head of the scoring graph")
    commands = p.add_subparsers(dest="llm_head_command", required=True)
    t = commands.add_parser("train", help="train an LLM head (configs/llm_heads/NAME.yaml or a path) on Ray Train, "
                                          "calibrate its exit thresholds, write ARTIFACTS/llm_heads/NAME/<version>")
    t.add_argument("config")
    t.add_argument("--data", help="prepared dataset folder (default ARTIFACTS/data/DATASET)")
    t.add_argument("--sample", type=int, help="train rows sampled (0: the whole train split)")
    t.add_argument("--epochs", type=int)
    t.add_argument("--fit-split", choices=["train", "valid"], help="split the heads are fitted on (default: the "
                                                                     "config's; valid: outside the calibration rows)")
    t.add_argument("--student", help="student model folder or experiment name ('' for plain heads)")
    t.add_argument("--use-gpu", action="store_true")
    add_common(t)
    t.set_defaults(func=cmd_llm_head_train)
