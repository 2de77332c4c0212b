"""DeepFM on ML-1M end to end, with its baselines measured in the same run:

- Ray Train (1 worker, fed by Ray Data) vs a plain single-process torch loop over in-memory tensors,
  same model, batch size, epochs and threads → ``ray_train_vs_plain`` ratio;
- HTTP scoring through Ray Serve vs the same scorer called in process on the same records.

Writes benchmarks/results/ml1m_deepfm.json (with its provenance).
Usage: python -m benchmarks.ml1m_deepfm [--records 2000] [--artifacts DIR] [--allow-dirty]
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from benchmarks.lib import protocol as proto
from llmctr.data import FeatureMap, prepare
from llmctr.data.feature_map import LABEL
from llmctr.demo import sample_records
from llmctr.models.artifact import build_model
from llmctr.runtime import init_ray, setup_logging
from llmctr.serve.client import score_over_http, wait_healthy
from llmctr.serve.scorer import Scorer
from llmctr.train import fit, load_experiment
from llmctr.train.feed import memory_batches, to_tensors
from llmctr.train.metrics import evaluate_predictions

log = logging.getLogger("bench")


def load_split(folder: Path, fmap: FeatureMap) -> dict[str, torch.Tensor]:
    """A split as the training feed holds it in memory (history lists stacked into arrays)."""
    names = [f.name for f in fmap.input_fields]
    frame = pd.read_parquet(folder, columns=names + [LABEL])
    return to_tensors({c: frame[c].to_numpy() for c in frame.columns}, names)


def plain_torch(exp, fmap: FeatureMap, data_dir: Path, threads: int) -> dict:
    """The same model and schedule as the Ray Train run, in one process over in-memory tensors."""
    torch.set_num_threads(threads)
    torch.manual_seed(exp.train.seed)
    train, valid, test = (load_split(data_dir / s, fmap) for s in ("train", "valid", "test"))
    model = build_model(fmap, exp.model)
    opt = torch.optim.Adam(model.parameters(), lr=exp.train.lr)
    cpu = torch.device("cpu")
    seconds, samples, best_auc, best_state = 0.0, 0, -1.0, None
    for epoch in range(exp.train.epochs):
        model.train()
        t0 = time.perf_counter()
        for batch in memory_batches(train, exp.train.batch_size, True, epoch, cpu):
            loss = F.binary_cross_entropy_with_logits(model(batch).logit, batch[LABEL])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            samples += len(batch[LABEL])
        seconds += time.perf_counter() - t0
        auc = _evaluate(model, valid)["auc"]
        if auc > best_auc:
            best_auc, best_state = auc, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return {"samples_per_s": samples / seconds, **{f"test_{k}": v for k, v in _evaluate(model, test).items()}}


@torch.inference_mode()
def _evaluate(model, data) -> dict:
    model.eval()
    probs = torch.sigmoid(model(data).logit).numpy()
    return evaluate_predictions(data[LABEL].numpy(), probs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="ml1m_deepfm")
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--per-request", type=int, default=50)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--artifacts", default="artifacts")
    args, prov = proto.parse_with_provenance(parser)
    setup_logging()
    init_ray()
    from ray import serve

    from llmctr.serve.deploy import deploy

    exp = load_experiment(args.experiment)
    exp.train.engine = "ray"  # this benchmark measures Ray Train against a plain loop (train.engine auto: in process)
    data_dir, manifest = prepare(exp.dataset, artifacts=args.artifacts)
    fmap = FeatureMap.load(data_dir / "feature_map.json")

    result = fit(exp, data_dir, artifacts=args.artifacts)
    threads = result.metrics["threads_per_worker"]
    plain = plain_torch(exp, fmap, data_dir, threads)

    records, labels = sample_records(data_dir / "test", fmap, args.records)
    scorer = Scorer.load(result.artifact)
    chunks = [records[i:i + args.per_request] for i in range(0, len(records), args.per_request)]
    inproc = []
    torch.set_num_threads(1)  # as the replica runs
    for chunk in chunks:
        t0 = time.perf_counter()
        scorer.score(chunk)
        inproc.append((time.perf_counter() - t0) * 1000)
    url = deploy(result.artifact, port=args.port)
    try:
        wait_healthy(url)
        score_over_http(url, records[: args.per_request * 5], args.per_request, progress=False)  # warm-up
        run = score_over_http(url, records, args.per_request)
    finally:
        serve.shutdown()

    m = result.metrics
    epochs_run = m["epochs_run"]
    payload = {
        "dataset": exp.dataset, "model": exp.model.name, "experiment": exp.name,
        "rows": manifest.rows,
        "test_auc": m["test_auc"], "test_logloss": m["test_logloss"], "test_gauc": m.get("test_gauc"),
        "epochs": epochs_run, "best_epoch": m["best_epoch"], "batch_size": exp.train.batch_size,
        "train_samples_per_s": m["train_samples_per_s"],
        "train_wall_seconds": m["train_wall_seconds"],
        "ray_train_end_to_end_samples_per_s": manifest.rows["train"] * epochs_run / m["train_wall_seconds"],
        "plain_torch_samples_per_s": plain["samples_per_s"],
        "plain_torch_test_auc": plain["test_auc"],
        "ray_train_vs_plain": m["train_samples_per_s"] / plain["samples_per_s"],
        "serve_p50_ms": run.percentile(50), "serve_p95_ms": run.percentile(95),
        "records_per_request": args.per_request, "requests": len(run.latencies_ms),
        "inprocess_score_p50_ms": float(np.percentile(inproc, 50)),
        "served_auc": float(evaluate_predictions(labels, run.probabilities)["auc"]),
        "served_max_abs_diff_vs_offline": float(np.abs(run.probabilities - scorer.score(records)).max()),
        "notes": "train_samples_per_s and plain_torch_samples_per_s both time the optimisation steps of each "
                 "epoch (no evaluation, no start-up); ray_train_end_to_end includes worker start-up, data "
                 "loading and per-epoch validation.",
    }
    path = proto.write("ml1m_deepfm", payload, prov)
    print(path.read_text())


if __name__ == "__main__":
    main()
