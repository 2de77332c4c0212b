"""`llmctr encode` and `llmctr ssft`: the semantic layer."""

from __future__ import annotations

import json
from pathlib import Path

from llmctr.cli.common import add_common


def cmd_ssft(args) -> int:
    """LLaCTR's SSFT adapter for a dataset (default settings) or an experiment (its ``semantics`` section)."""
    from llmctr.config import ConfigError
    from llmctr.data import load_dataset_config, prepared_dir, resolve_prepared
    from llmctr.runtime import init_ray
    from llmctr.semantics.encoders import EncoderConfig
    from llmctr.semantics.ssft import SSFTConfig, ssft_report
    from llmctr.storage import artifacts_root
    from llmctr.train import load_experiment
    from llmctr.train.ssft import run_ssft

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


def register(sub) -> None:
    p = sub.add_parser("ssft", help="LLaCTR's field-feature fine-tuning (LoRA) of the encoder, as a Ray Train job")
    p.add_argument("target", help="a dataset or an experiment name/YAML (its semantics section)")
    p.add_argument("--data", help="prepared dataset folder (default ARTIFACTS/data/DATASET)")
    add_common(p, force="retrain even if a cached adapter matches")
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
    add_common(p, force="rebuild the tables even if up to date (the cache still hits)")
    p.set_defaults(func=cmd_encode)
