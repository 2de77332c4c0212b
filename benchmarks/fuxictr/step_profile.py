"""A probe (no results file): one FuxiCTR model's train step on random ids, timed, with torch.profiler's top ops.

Runs INSIDE the FuxiCTR venv, beside ``runner.py`` (whose model build and feature-map translation it reuses), e.g.:

    cd benchmarks/fuxictr && ../.venv-fuxictr/bin/python step_profile.py \
        --feature-map ../../artifacts/data/ml1m/feature_map.json --model FinalMLP \
        --params '{"mlp1_hidden_units": [400, 400, 400], "mlp2_hidden_units": [800],
                   "fs_hidden_units": [800], "num_heads": 2}'

Why it exists: in the zoo benchmark FuxiCTR's FinalMLP trains ~70x slower than its other models. The profile shows
where: model_zoo/FinalMLP's ``InteractionAggregation`` multiplies ``[B, H, 1, dx]`` by the weight viewed as
``[H, dx, dy]``; matmul broadcasting expands the weight to ``[B, H, dx, dy]`` (a copy per sample) before ``bmm``.
That is the upstream code, kept as it is in ``zoo_recent.py``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch
from runner import MODELS, build_feature_map


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--feature-map", required=True, help="our prepared feature_map.json")
    p.add_argument("--model", required=True, choices=sorted(MODELS))
    p.add_argument("--params", default="{}")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with open(args.feature_map) as fh:
        ours = json.load(fh)
    work = tempfile.mkdtemp()
    fmap = build_feature_map(ours, work, 16)
    model = MODELS[args.model](fmap, model_id=args.model, gpu=-1, learning_rate=1e-3, embedding_dim=16,
                               optimizer="adam", loss="binary_crossentropy", metrics=["AUC"], monitor="AUC",
                               monitor_mode="max", verbose=0, model_root=work, **json.loads(args.params))
    model.train()
    model._max_gradient_norm = 10.0  # what BaseModel.fit sets before training
    b = args.batch_size
    batch = {f: torch.randint(2, int(ours["vocab_sizes"][f]), (b,)) for f in fmap.features}
    batch["label"] = torch.randint(0, 2, (b,)).float()
    model.train_step(batch)  # warm-up
    t0 = time.perf_counter()
    for _ in range(args.steps):
        model.train_step(batch)
    seconds = (time.perf_counter() - t0) / args.steps
    with torch.profiler.profile() as prof:
        model.train_step(batch)
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=10))
    print(json.dumps({"model": args.model, "batch_size": b, "step_seconds": seconds, "samples_per_s": b / seconds,
                      "torch": torch.__version__, "threads": args.threads}))


if __name__ == "__main__":
    main()
