"""`llmctr train`, `distill`, `tune`: fitting models on Ray Train (and searching with Ray Tune)."""

from __future__ import annotations

import json

from llmctr.cli.common import add_common, add_training, apply_training


def cmd_train(args, exp=None) -> int:
    from llmctr.data import prepared_dir
    from llmctr.runtime import init_ray
    from llmctr.train import fit, load_experiment
    from llmctr.train.ctr.fit import choose_engine

    exp = exp or load_experiment(args.experiment)
    apply_training(exp.train, args)
    if getattr(args, "engine", None):
        exp.train.engine = args.engine
    data = args.data or prepared_dir(exp.dataset, args.artifacts)
    if choose_engine(exp, data, address=args.address) == "ray":  # in process: no Ray to start (seconds saved)
        init_ray(args.address)
    result = fit(exp, data, artifacts=args.artifacts)
    print(json.dumps({"artifact": str(result.artifact), **result.metrics}, indent=1, default=float))
    return 0


def cmd_distill(args) -> int:
    """ELEC: train an experiment's teacher and student jointly, export the student (its ``distill:`` section)."""
    from llmctr.config import ConfigError
    from llmctr.train import load_experiment

    exp = load_experiment(args.experiment)
    if exp.distill is None:
        raise ConfigError(f"experiment {exp.name!r} has no 'distill' section (see configs/experiments/*_elec.yaml)")
    for key in ("alpha", "beta", "tau"):
        if getattr(args, key) is not None:
            setattr(exp.distill, key, getattr(args, key))
    return cmd_train(args, exp)


def cmd_tune(args) -> int:
    """A Ray Tune search (configs/searches/NAME.yaml): ASHA over Ray Train trials, table + PNG + best YAML."""
    from llmctr.data import prepared_dir
    from llmctr.runtime import init_ray
    from llmctr.train import load_experiment
    from llmctr.tune import load_search, run_search

    search = load_search(args.search)
    if args.num_samples:
        search.num_samples = args.num_samples
    if args.epochs:
        search.overrides["train.epochs"] = args.epochs
    init_ray(args.address)
    data = args.data or prepared_dir(load_experiment(search.experiment).dataset, args.artifacts)
    result = run_search(search, data, artifacts=args.artifacts)
    print(json.dumps({"outputs": str(result.folder), "best": result.best, "trials": len(result.rows)}, indent=1,
                     default=float))
    return 0


def register(sub) -> None:
    p = sub.add_parser("train", help="train an experiment (configs/experiments/NAME.yaml or a path) on Ray Train")
    p.add_argument("experiment")
    add_training(p)
    _add_engine(p)
    add_common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("distill", help="ELEC: train teacher + student jointly (an experiment with 'distill:'), "
                                       "export the student")
    p.add_argument("experiment")
    add_training(p)
    p.add_argument("--alpha", type=float, help="weight of the representation MSE (0: off)")
    p.add_argument("--beta", type=float, help="weight of CLID (0: off)")
    p.add_argument("--tau", type=float, help="CLID's listwise temperature")
    _add_engine(p)
    add_common(p)
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser("tune", help="Ray Tune search (configs/searches/NAME.yaml or a path): ASHA over Ray Train "
                                    "trials")
    p.add_argument("search")
    p.add_argument("--data", help="prepared dataset folder (default ARTIFACTS/data/DATASET)")
    p.add_argument("--num-samples", type=int, help="trials (default: the search YAML's)")
    p.add_argument("--epochs", type=int, help="epochs per trial (default: the YAML's)")
    add_common(p)
    p.set_defaults(func=cmd_tune)


def _add_engine(p) -> None:
    p.add_argument("--engine", choices=("auto", "ray", "local"),
                   help="ray: Ray Train workers; local: this process, no Ray (1 CPU worker, in-memory data); auto "
                        "(the YAML's train.engine, by default auto): local where the run allows it")
