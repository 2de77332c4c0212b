"""`llmctr data ...`: prepare, download, synth."""

from __future__ import annotations

import argparse
import json

from llmctr.cli.common import add_common


def cmd_data_prepare(args) -> int:
    from llmctr.data import prepare

    out, manifest = prepare(args.dataset, data_dir=args.data_dir, artifacts=args.artifacts, out_dir=args.out,
                            force=getattr(args, "force", False), engine=args.engine, address=args.address)
    print(json.dumps({"output": str(out), "rows": manifest.rows, "quarantined": manifest.rows_quarantined,
                      "quarantine_reasons": manifest.quarantine_reasons,
                      "dropped_by_label_rule": manifest.rows_dropped_by_label_rule, "engine": manifest.engine},
                     indent=1))
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

    print(write_synthetic(default_data_home(args.data_dir) / "synthetic", n_rows=args.rows, seed=args.seed,
                          n_users=args.users, n_items=args.items))
    return 0


def register(sub) -> None:
    data = sub.add_parser("data", help="dataset preparation").add_subparsers(dest="data_command", required=True)
    p = data.add_parser("prepare", help="preprocess a dataset on Ray Data (configs/datasets/NAME.yaml or a path)")
    p.add_argument("dataset")
    p.add_argument("--engine", choices=("auto", "ray", "local"), default="auto",
                   help="ray: Ray Data; local: in this process, no Ray (same output); auto (default): local for raw "
                        "files up to 64 MiB unless --address or $RAY_ADDRESS names a cluster")
    p.add_argument("--data-dir", help="root holding raw data (default: $LLMCTR_DATA_DIR, ./data, ../shared/data)")
    p.add_argument("--out", help="output folder (default ARTIFACTS/data/NAME)")
    add_common(p, force="redo even if the output is up to date")
    p.set_defaults(func=cmd_data_prepare)
    download = data.add_parser("download", help="download a dataset's public archive (needs internet)")
    download.add_argument("dataset")
    synth = data.add_parser("synth", help="write the synthetic click log with planted signal (any size)")
    synth.add_argument("--rows", type=int, default=60_000)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--users", type=int, default=2_000)
    synth.add_argument("--items", type=int, default=500)
    for parser, func in ((download, cmd_data_download), (synth, cmd_data_synth)):
        parser.add_argument("--data-dir")
        parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)
        parser.set_defaults(func=func)
