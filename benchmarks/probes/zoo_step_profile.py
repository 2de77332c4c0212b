"""Our training step in one process, variants side by side (interleaved rounds on the same batches).

The step is ``llmctr.train.ctr.loop.train_epoch`` over ``feed.memory_batches`` (what the Ray Train worker runs), on the
ML-1M training split, with the model built from ``configs/experiments/ml1m_<model>.yaml`` (batch 4096, 2 threads).
Variants (comma-separated, combine with ``+``):

- ``plain`` / ``foreach`` / ``fused``: Adam's single-tensor (what ``llmctr.train.ctr.loop`` uses), multi-tensor or
  fused implementation;
- ``ftz``: ``torch.set_flush_denormal(True)`` for the variant's rounds;
- ``compile``: ``torch.compile(model)`` (its compile time is reported separately);
- ``bf16``: the step under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (``train.precision: bf16``);
- ``profile``: also print torch.profiler's top ops for that variant.

Prints one JSON line per model and variant; writes no results file (a probe).

Usage: python -m benchmarks.probes.zoo_step_profile --models dcnv2,autoint,wukong --variants plain,fused --rounds 3
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from llmctr.data import FeatureMap, prepared_dir
from llmctr.data.feature_map import LABEL
from llmctr.train import load_experiment
from llmctr.train.ctr import loop as train_loop
from llmctr.train.ctr.objective import PlainObjective
from llmctr.train.feed import memory_batches


def load_train(data_dir, fmap: FeatureMap) -> dict[str, torch.Tensor]:
    import pandas as pd

    frame = pd.read_parquet(data_dir / "train", columns=[f.name for f in fmap.input_fields] + [LABEL])
    return {c: torch.from_numpy(frame[c].to_numpy().copy()) for c in frame.columns}


def make_optimizer(model, lr: float, flags: set[str]):
    return torch.optim.Adam(model.parameters(), lr=lr, foreach="foreach" in flags,
                            fused=True if "fused" in flags else None)


class Variant:
    def __init__(self, spec: str, fmap, exp, seed: int):
        self.spec, self.flags = spec, set(spec.split("+"))
        torch.manual_seed(seed)
        exp.train.embedding_l2 = 0.0
        self.objective = PlainObjective(fmap, exp)
        self.model = self.objective.model
        self.optimizer = make_optimizer(self.model, exp.train.lr, self.flags)
        self.compile_s = None
        if "compile" in self.flags:
            self.model = torch.compile(self.model)
        self.rates: list[float] = []

    def run(self, batches, record: bool = True) -> float:
        torch.set_flush_denormal("ftz" in self.flags)
        t0 = time.perf_counter()
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled="bf16" in self.flags):
                _, count, seconds, _ = train_loop.train_epoch(self.model, self.objective, self.optimizer, None,
                                                              batches)
        finally:
            torch.set_flush_denormal(False)
        if self.compile_s is None and "compile" in self.flags:
            self.compile_s = time.perf_counter() - t0
            return 0.0
        if record:
            self.rates.append(count / seconds)
        return count / seconds


def profile_variant(variant: Variant, batches) -> None:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        variant.run(batches, record=False)
    print(f"--- {variant.spec}")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="dcnv2,autoint,wukong")
    parser.add_argument("--variants", default="plain,fused")
    parser.add_argument("--steps", type=int, default=25, help="batches per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", default=None, help="prepared ML-1M (default: artifacts/data/ml1m)")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data_dir = prepared_dir("ml1m") if args.data_dir is None else Path(args.data_dir)
    fmap = FeatureMap.load(data_dir / "feature_map.json")
    data = load_train(data_dir, fmap)
    results = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        exp = load_experiment(f"ml1m_{name}")
        batch_size = exp.train.batch_size
        batches = list(memory_batches(data, batch_size, True, args.seed, torch.device("cpu")))
        variants = [Variant(v, fmap, exp, args.seed) for v in args.variants.split(",")]
        for v in variants:  # warm-up (and compile) on a few batches
            v.run(batches[:3], record=False)
        for r in range(args.rounds):
            window = batches[(r * args.steps) % len(batches):][:args.steps]
            for v in variants if r % 2 == 0 else variants[::-1]:
                v.run(window)
        for v in variants:
            if "profile" in v.flags:
                profile_variant(v, batches[:args.steps])
        base = sum(variants[0].rates) / len(variants[0].rates)
        for v in variants:
            mean = sum(v.rates) / len(v.rates)
            row = {"model": name, "variant": v.spec, "samples_per_s": round(mean),
                   "rounds": [round(x) for x in v.rates], "vs_first": round(mean / base, 3)}
            if v.compile_s is not None:
                row["compile_seconds"] = round(v.compile_s, 1)
            results.append(row)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
