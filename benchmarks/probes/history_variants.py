"""Diagnostic probe (not a benchmark result): one backbone on the prepared ML-1M with and without history variants,
printing each epoch's validation and test AUC, to see *where* history helps or hurts before a benchmark spends
its seeds. Nothing here is chosen on the printed test AUC; the history benchmark chooses on validation.

    python -m benchmarks.probes.history_variants --model deepfm --variants base mean:50 mean:20 target_attention:20
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.lib.history_spec import history_config
from benchmarks.lib.inprocess import fit_in_process, load_prepared
from benchmarks.lib.protocol import Protocol
from llmctr import storage
from llmctr.train import load_experiment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="deepfm")
    parser.add_argument("--variants", nargs="+", default=["base", "mean:50"],
                        help="base, or a history variant (benchmarks/lib/history_spec.py)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="append one JSON line per variant here")
    args = parser.parse_args()
    folder = Path(storage.artifacts_root()) / "data" / "ml1m"
    protocol = Protocol(seeds=(args.seed,), max_epochs=args.epochs, patience=args.epochs)
    data = load_prepared(folder)
    for variant in args.variants:
        exp = load_experiment(f"ml1m_{args.model}")
        if variant != "base":
            exp.model.history = history_config(variant)
        trace: list[dict] = []
        result = fit_in_process(exp, data, protocol, args.seed, threads=args.threads, trace=trace)
        line = {"model": args.model, "variant": variant, "seed": args.seed, "epoch_seconds": result.epoch_seconds,
                "trace": trace}
        print(json.dumps(line), flush=True)
        if args.out:
            with open(args.out, "a") as fh:
                fh.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
