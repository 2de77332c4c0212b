"""``llmctr`` command line: data prepare/download, encode, ssft, train, distill, tune, serve, score, demo."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

log = logging.getLogger("llmctr")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--artifacts", help="artifacts root (default $LLMCTR_ARTIFACTS or ./artifacts)")
    p.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    p.add_argument("-v", "--verbose", action="store_true")


def cmd_data_prepare(args) -> int:
    from llmctr.data import prepare
    from llmctr.runtime import init_ray

    init_ray(args.address)
    out, manifest = prepare(args.dataset, data_dir=args.data_dir, artifacts=args.artifacts, out_dir=args.out,
                            force=getattr(args, "force", False))
    print(json.dumps({"output": str(out), "rows": manifest.rows, "quarantined": manifest.rows_quarantined,
                      "quarantine_reasons": manifest.quarantine_reasons,
                      "dropped_by_label_rule": manifest.rows_dropped_by_label_rule}, indent=1))
    return 0


def cmd_data_download(args) -> int:
    from llmctr.data import load_dataset_config
    from llmctr.data.download import download
    from llmctr.data.paths import default_data_home

    print(download(load_dataset_config(args.dataset), default_data_home(args.data_dir)))
    return 0


def cmd_data_synth(args) -> int:
    from llmctr.data.paths import default_data_home
    from llmctr.data.synthetic import write_synthetic

    print(write_synthetic(default_data_home(args.data_dir) / "synthetic", n_rows=args.rows, seed=args.seed))
    return 0


def cmd_train(args, exp=None) -> int:
    from llmctr.data import prepared_dir
    from llmctr.runtime import init_ray
    from llmctr.train import fit, load_experiment

    exp = exp or load_experiment(args.experiment)
    for key in ("num_workers", "epochs", "batch_size"):
        if getattr(args, key) is not None:
            setattr(exp.train, key, getattr(args, key))
    if args.use_gpu:
        exp.train.use_gpu = True
    init_ray(args.address)
    data = args.data or prepared_dir(exp.dataset, args.artifacts)
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
    init_ray(args.address, dashboard=True)
    data = args.data or prepared_dir(load_experiment(search.experiment).dataset, args.artifacts)
    result = run_search(search, data, artifacts=args.artifacts)
    print(json.dumps({"outputs": str(result.folder), "best": result.best, "trials": len(result.rows)}, indent=1,
                     default=float))
    return 0


def cmd_serve(args) -> int:
    from ray import serve

    from llmctr import storage
    from llmctr.data.paths import artifacts_root
    from llmctr.runtime import init_ray
    from llmctr.serve.deploy import deploy

    init_ray(args.address)
    if args.model:
        model = args.model
    else:
        name = args.experiment
        if Path(name).suffix:  # an experiment YAML: its models live under its name
            from llmctr.train import load_experiment

            name = load_experiment(name).name
        model = storage.join(artifacts_root(args.artifacts), "models", name)
    url = deploy(model, host=args.host, port=args.port, num_replicas=args.replicas)
    print(f"serving {model} at {url}/v1/score (docs: {url}/docs); Ctrl-C to stop", flush=True)
    if args.no_block:
        return 0
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.shutdown()
    return 0


def cmd_score(args) -> int:
    from llmctr.serve.client import score_over_http

    path = Path(args.input)
    if path.suffix == ".jsonl":
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()][: args.n]
    else:
        import pandas as pd

        from llmctr.data import FeatureMap
        from llmctr.data.feature_map import raw_records

        frame = pd.read_parquet(path).head(args.n)
        fmap = FeatureMap.load(Path(args.feature_map) if args.feature_map else path.parent / "feature_map.json")
        records = raw_records(frame, fmap)
    run = score_over_http(args.url, records, args.per_request)
    if args.output:
        Path(args.output).write_text("\n".join(f"{p:.6f}" for p in run.probabilities) + "\n")
    print(json.dumps({"records": len(records), "version": run.version, "p50_ms": run.percentile(50),
                      "p95_ms": run.percentile(95), "first": run.probabilities[:5].tolist()}, indent=1))
    return 0


def cmd_ssft(args) -> int:
    """LLaCTR's SSFT adapter for a dataset (default settings) or an experiment (its ``semantics`` section)."""
    from llmctr.config import ConfigError
    from llmctr.data import load_dataset_config, prepared_dir, resolve_prepared
    from llmctr.data.paths import artifacts_root
    from llmctr.runtime import init_ray
    from llmctr.semantics.encoders import EncoderConfig
    from llmctr.semantics.ssft import SSFTConfig, run_ssft, ssft_report
    from llmctr.train import load_experiment

    try:
        exp = load_experiment(args.target)
        dataset, encoder = exp.dataset, exp.semantics.encoder if exp.semantics else EncoderConfig()
        ssft = (exp.semantics.ssft if exp.semantics else None) or SSFTConfig()
    except ConfigError:
        dataset, encoder, ssft = args.target, EncoderConfig(), SSFTConfig()
    cfg = load_dataset_config(dataset)
    init_ray(args.address)
    data = args.data or resolve_prepared(prepared_dir(cfg.name, args.artifacts))
    adapter = run_ssft(data, cfg, encoder, ssft, Path(artifacts_root(args.artifacts)) / "ssft", force=args.force)
    report = ssft_report(adapter)
    print(json.dumps({"adapter": str(adapter), **{k: report.get(k) for k in (
        "examples", "loss_before", "loss_after", "wall_seconds")}}, indent=1, default=float))
    return 0


def cmd_encode(args) -> int:
    """LLM vectors of a prepared dataset's fields, features and entities (Ray Data job, cached)."""
    from llmctr.data import load_dataset_config, prepared_dir, resolve_prepared
    from llmctr.runtime import init_ray
    from llmctr.semantics.encoders import EncoderConfig
    from llmctr.semantics.tables import SemanticTables, build_semantic_tables

    cfg = load_dataset_config(args.dataset)
    encoder = EncoderConfig(backend=args.backend, model=args.model, revision=args.revision, adapter=args.adapter,
                            layer=args.layer, max_length=args.max_length, batch_size=args.batch_size,
                            device=args.device, dtype=args.dtype)
    data = args.data or resolve_prepared(prepared_dir(cfg.name, args.artifacts))
    if args.address:
        init_ray(args.address)  # else a local Ray starts only if some text is not in the cache yet
    out = build_semantic_tables(data, cfg, encoder, args.out, num_actors=args.num_actors, force=args.force,
                                artifacts=args.artifacts)
    meta = SemanticTables.load(out).meta
    print(json.dumps({"tables": str(out), **{k: meta.get(k) for k in ("encoder_key", "dim", "counts", "seconds",
                                                                        "cache_hits")}}, indent=1))
    return 0


def cmd_pipeline(args) -> int:
    """prepare → train → deploy, for one experiment (what jobs/pipeline.py submits to a cluster)."""
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmctr", description="Train and serve LLM-enhanced CTR models on Ray.")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="dataset preparation").add_subparsers(dest="data_command", required=True)
    p = data.add_parser("prepare", help="preprocess a dataset on Ray Data (configs/datasets/NAME.yaml or a path)")
    p.add_argument("dataset")
    p.add_argument("--data-dir", help="root holding raw data (default: $LLMCTR_DATA_DIR, ./data, ../shared/data)")
    p.add_argument("--out", help="output folder (default ARTIFACTS/data/NAME)")
    p.add_argument("--force", action="store_true", help="redo even if the output is up to date")
    _add_common(p)
    p.set_defaults(func=cmd_data_prepare)
    p = data.add_parser("download", help="download a dataset's public archive (needs internet)")
    p.add_argument("dataset")
    p.add_argument("--data-dir")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_data_download)
    p = data.add_parser("synth", help="write the synthetic click log with planted signal")
    p.add_argument("--data-dir")
    p.add_argument("--rows", type=int, default=60_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_data_synth)

    p = sub.add_parser("train", help="train an experiment (configs/experiments/NAME.yaml or a path) on Ray Train")
    p.add_argument("experiment")
    p.add_argument("--data", help="prepared dataset folder (default ARTIFACTS/data/DATASET)")
    p.add_argument("--num-workers", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--use-gpu", action="store_true")
    _add_common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("distill", help="ELEC: train teacher + student jointly (an experiment with 'distill:'), "
                                       "export the student")
    p.add_argument("experiment")
    p.add_argument("--data", help="prepared dataset folder (default ARTIFACTS/data/DATASET)")
    p.add_argument("--num-workers", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--use-gpu", action="store_true")
    p.add_argument("--alpha", type=float, help="weight of the representation MSE (0: off)")
    p.add_argument("--beta", type=float, help="weight of CLID (0: off)")
    p.add_argument("--tau", type=float, help="CLID's listwise temperature")
    _add_common(p)
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser("tune", help="Ray Tune search (configs/searches/NAME.yaml or a path): ASHA over Ray Train "
                                    "trials")
    p.add_argument("search")
    p.add_argument("--data", help="prepared dataset folder (default ARTIFACTS/data/DATASET)")
    p.add_argument("--num-samples", type=int, help="trials (default: the search YAML's)")
    p.add_argument("--epochs", type=int, help="epochs per trial (default: the YAML's)")
    _add_common(p)
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("ssft", help="LLaCTR's field-feature fine-tuning (LoRA) of the encoder, as a Ray Train job")
    p.add_argument("target", help="a dataset or an experiment name/YAML (its semantics section)")
    p.add_argument("--data", help="prepared dataset folder (default ARTIFACTS/data/DATASET)")
    p.add_argument("--force", action="store_true", help="retrain even if a cached adapter matches")
    _add_common(p)
    p.set_defaults(func=cmd_ssft)

    p = sub.add_parser("encode", help="LLM vectors of a dataset's fields, features and users/items (Ray Data, cached)")
    p.add_argument("dataset", help="dataset name (configs/datasets/NAME.yaml) or a dataset YAML")
    p.add_argument("--data", help="prepared dataset folder (default ARTIFACTS/data/DATASET)")
    p.add_argument("--model", help="HF model folder or hub name (default: the bundled all-MiniLM-L6-v2)")
    p.add_argument("--revision")
    p.add_argument("--adapter", help="a peft LoRA adapter folder (e.g. from llmctr ssft), merged into the model")
    p.add_argument("--backend", choices=["hf", "vllm"], default="hf")
    p.add_argument("--layer", type=int, default=-1, help="hidden layer to mean-pool (default: the last)")
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    p.add_argument("--num-actors", type=int, help="Ray Data actors (default: one per GPU, else one per 2 CPUs)")
    p.add_argument("--out", help="tables folder (default ARTIFACTS/semantics/DATASET/<encoder key>)")
    p.add_argument("--force", action="store_true", help="rebuild the tables even if up to date (the cache still hits)")
    _add_common(p)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("serve", help="deploy the scoring app on Ray Serve")
    p.add_argument("--model", help="model folder (with LATEST) or version folder")
    p.add_argument("--experiment", default="ml1m_deepfm", help="serve ARTIFACTS/models/EXPERIMENT if no --model")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--no-block", action="store_true", help="return after deploying (when joining a cluster)")
    _add_common(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("score", help="score records over HTTP (jsonl of raw records, or a prepared parquet split)")
    p.add_argument("input")
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--per-request", type=int, default=50)
    p.add_argument("--feature-map", help="feature_map.json for a parquet input (default: beside it)")
    p.add_argument("--output", help="write one probability per line here")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("pipeline", help="prepare → train → deploy one experiment (returns once deployed)")
    p.add_argument("experiment")
    p.add_argument("--data-dir")
    p.add_argument("--num-workers", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--use-gpu", action="store_true")
    p.add_argument("--no-deploy", action="store_true")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8000)
    _add_common(p)
    p.set_defaults(func=cmd_pipeline)

    p = sub.add_parser("demo", help="prepare → train → serve → score over HTTP, end to end")
    p.add_argument("--dataset", help="dataset name (default: ml1m if present, else synthetic)")
    p.add_argument("--data-dir")
    p.add_argument("--records", type=int, default=500)
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--epochs", type=int)
    _add_common(p)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    from llmctr.config import ConfigError
    from llmctr.runtime import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(getattr(args, "verbose", False))
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"llmctr: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
