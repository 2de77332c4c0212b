"""FuxiCTR side of ``benchmarks.zoo_vs_fuxictr`` and ``benchmarks.wall_vs_fuxictr``: runs INSIDE the FuxiCTR venv
(benchmarks/.venv-fuxictr).

Run as a script by that venv's interpreter (``benchmarks/.venv-fuxictr/bin/python benchmarks/fuxictr/runner.py ...``,
what ``benchmarks/lib/fuxictr_side.py`` builds), not imported as part of the ``benchmarks`` package: its model modules
(``zoo_classic.py``, ``zoo_recent.py``) sit beside it and are found through the script's own folder.

Imports only fuxictr / torch / numpy / pandas / pyarrow / sklearn (never llmctr). Builds one FuxiCTR model from
the layers the PyPI package ships (``BaseModel``, ``FeatureEmbedding``, ``FactorizationMachine``, ``MLP_Block``,
``CrossNetV2``, ``InnerProductInteraction``, ``LogisticRegression``, ``ScaledDotProductAttention``), composed the
way reczoo/FuxiCTR's ``model_zoo/<Model>/src/<Model>.py`` composes them (the pip package does not ship the zoo;
the model classes are in ``zoo_classic.py`` and ``zoo_recent.py``), trains it with FuxiCTR's
own ``BaseModel.fit`` on our encoded parquet splits (``--prepared ours``, the zoo benchmark) or on the parquet its own
preprocessing wrote (``--prepared fuxictr``: benchmarks/fuxictr/prepare.py, the wall-clock benchmark), and prints ONE
JSON line (the last line of stdout) with
test AUC / logloss, per-epoch optimisation-step throughput and wall times.

Feeds (``--feed``):
  fuxictr  FuxiCTR's own parquet pipeline: ``RankDataLoader(data_format="parquet")`` → ``ParquetDataLoader``
           (Ray Data ``iter_torch_batches``, block-order randomisation + local shuffle buffer), as shipped.
  memory   the same tensors held in memory and batched by a seeded permutation per epoch (what our
           in-memory training feed does), so the two sides differ only in model code and train step.

Throughput has the same definition as ours: per epoch, training samples / seconds spent in the epoch's batch
loop (fetching batches + forward/backward/step), validation excluded; averaged over epochs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections import OrderedDict

import numpy as np
import pandas as pd
import torch
from fuxictr.features import FeatureMap
from fuxictr.pytorch.torch_utils import seed_everything
from zoo_classic import FM, AutoInt, DCNv2, DeepFM, FmFM, FwFM
from zoo_recent import FinalMLP, WuKong

LABEL = "label"
MODELS = {cls.__name__: cls for cls in (DeepFM, FM, FwFM, FmFM, DCNv2, AutoInt, FinalMLP, WuKong)}


# --------------------------------------------------------------------------------------------------------------
# Timing: wrap BaseModel's own train_epoch / eval_step without changing what they do.
# --------------------------------------------------------------------------------------------------------------

class TimedMixin:
    """Per epoch: seconds in the batch loop minus seconds in validation (FuxiCTR validates from inside
    ``train_epoch``, after the epoch's last step), samples seen, validation AUC, which epoch was best."""

    def _timing_init(self):
        self.epoch_log = []
        self._eval_seconds = 0.0
        self._samples = 0

    def train_step(self, batch_data):
        self._samples += len(batch_data[LABEL])
        return super().train_step(batch_data)

    def train_epoch(self, data_generator):
        self._eval_seconds, self._samples = 0.0, 0
        self._last_valid = None
        t0 = time.perf_counter()
        super().train_epoch(data_generator)
        total = time.perf_counter() - t0
        seconds = total - self._eval_seconds
        self.epoch_log.append({"epoch": self._epoch_index + 1, "samples": self._samples,
                               "train_seconds": seconds, "samples_per_s": self._samples / seconds,
                               "eval_seconds": self._eval_seconds, **(self._last_valid or {})})

    def eval_step(self):
        t0 = time.perf_counter()
        super().eval_step()
        self._eval_seconds += time.perf_counter() - t0

    def checkpoint_and_earlystop(self, logs, min_delta=1e-6):
        before = self._best_metric
        super().checkpoint_and_earlystop(logs, min_delta)
        # eval_step asks only for the monitored metric (AUC), as FuxiCTR does
        self._last_valid = {"valid_auc": float(logs["AUC"]), "improved": bool(self._best_metric != before)}


# --------------------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------------------

def build_feature_map(our_map: dict, work_dir: str, embedding_dim: int) -> FeatureMap:
    """A FuxiCTR FeatureMap over our encoded categorical columns (sequence fields such as a behaviour history are
    left out, as our backbones without ``model.history`` leave them out): vocab sizes from our map (ids 0 pad,
    1 OOV, 2.. vocabulary), padding_idx 0 as FuxiCTR's own preprocessing sets for categoricals."""
    kinds = {f["name"]: f["kind"] for f in our_map["fields"]}
    features = [{name: {"source": "", "type": "categorical", "vocab_size": int(our_map["vocab_sizes"][name]),
                        "padding_idx": 0}} for name in our_map["field_order"] if kinds[name] == "categorical"]
    spec = OrderedDict(dataset_id=our_map["dataset"], num_fields=len(features), total_features=0, input_length=0,
                       labels=[our_map.get("label", LABEL)], features=features)
    path = os.path.join(work_dir, "fuxictr_feature_map.json")
    with open(path, "w") as fh:
        json.dump(spec, fh, indent=1)
    fmap = FeatureMap(our_map["dataset"], work_dir)
    fmap.load(path, params={"embedding_dim": embedding_dim})
    return fmap


class MemoryLoader:
    """The split's columns as int64/float32 tensors in memory; batches by a seeded permutation per epoch."""

    def __init__(self, path: str, columns: list[str], batch_size: int, shuffle: bool, seed: int):
        frame = pd.read_parquet(path, columns=columns)
        self.data = {c: torch.from_numpy(np.array(frame[c].to_numpy(), copy=True)) for c in columns}
        self.num_samples = len(frame)
        self.batch_size, self.shuffle, self.seed, self.epoch = batch_size, shuffle, seed, 0

    def __len__(self):
        return -(-self.num_samples // self.batch_size)

    def __iter__(self):
        n = self.num_samples
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 1000 + self.epoch * 31))
            self.epoch += 1
        else:
            order = torch.arange(n)
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            yield {k: v[idx] for k, v in self.data.items()}


def load_feature_map(prepared: str, data_dir: str, work_dir: str, embedding_dim: int) -> FeatureMap:
    """``prepared``: ours (``llmctr data prepare``'s feature_map.json, translated) or fuxictr (the feature map
    FuxiCTR's own ``build_dataset`` wrote, loaded as FuxiCTR loads it)."""
    with open(os.path.join(data_dir, "feature_map.json")) as fh:
        spec = json.load(fh)
    if prepared == "ours":
        return build_feature_map(spec, work_dir, embedding_dim)
    fmap = FeatureMap(spec["dataset_id"], data_dir)
    fmap.load(os.path.join(data_dir, "feature_map.json"), params={"embedding_dim": embedding_dim})
    return fmap


def make_loaders(feed: str, fmap: FeatureMap, data_dir: str, batch_size: int, seed: int, prepared: str = "ours"):
    suffix = "" if prepared == "ours" else ".parquet"  # ours: a folder per split; FuxiCTR's: one file each
    splits = [os.path.join(data_dir, s + suffix) for s in ("train", "valid", "test")]
    if feed == "memory":
        cols = list(fmap.features) + fmap.labels
        return tuple(MemoryLoader(p, cols, batch_size, i == 0, seed) for i, p in enumerate(splits))
    from fuxictr.pytorch.dataloaders import RankDataLoader

    return RankDataLoader(fmap, stage="both", train_data=splits[0], valid_data=splits[1], test_data=splits[2],
                          batch_size=batch_size, shuffle=True, data_format="parquet")


# --------------------------------------------------------------------------------------------------------------

def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, help="prepared dataset: train/ valid/ test/ parquet + feature_map.json")
    p.add_argument("--model", required=True, choices=sorted(MODELS))
    p.add_argument("--params", default="{}", help="JSON: the FuxiCTR model's keyword arguments")
    p.add_argument("--embedding-dim", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--patience", type=int, default=2)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--feed", choices=("fuxictr", "memory"), default="fuxictr")
    p.add_argument("--prepared", choices=("ours", "fuxictr"), default="ours",
                   help="whose preprocessing wrote --data-dir: ours (llmctr data prepare) or fuxictr (prepare.py)")
    p.add_argument("--max-gradient-norm", type=float, default=10.0, help="BaseModel.fit's default is 10")
    p.add_argument("--reduce-lr-on-plateau", action="store_true",
                   help="FuxiCTR's default; off here because our trainer keeps the learning rate constant")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    t_process = time.perf_counter()
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)

    with tempfile.TemporaryDirectory(prefix="fuxictr_") as work:
        fmap = load_feature_map(args.prepared, args.data_dir, work, args.embedding_dim)
        t0 = time.perf_counter()
        if args.feed == "fuxictr":
            import ray

            # A private local Ray for FuxiCTR's loader (what ParquetDataLoader would start itself), never joining a
            # cluster that happens to run on the machine; its start-up is kept out of the wall time, as on our side.
            ray.init(address="local", include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
        t_ray = time.perf_counter() - t0
        t0 = time.perf_counter()
        train_gen, valid_gen, test_gen = make_loaders(args.feed, fmap, args.data_dir, args.batch_size, args.seed,
                                                      args.prepared)
        t_loaders = time.perf_counter() - t0
        cls = type(f"Timed{args.model}", (TimedMixin, MODELS[args.model]), {})
        model = cls(fmap, model_id=args.model, gpu=-1, learning_rate=args.lr, embedding_dim=args.embedding_dim,
                    optimizer="adam", loss="binary_crossentropy", metrics=["AUC", "logloss"], monitor="AUC",
                    monitor_mode="max", early_stop_patience=args.patience, verbose=0, model_root=work,
                    reduce_lr_on_plateau=args.reduce_lr_on_plateau, **json.loads(args.params))
        os.makedirs(model.model_dir, exist_ok=True)
        model._timing_init()
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        t0 = time.perf_counter()
        model.fit(train_gen, epochs=args.epochs, validation_data=valid_gen, max_gradient_norm=args.max_gradient_norm)
        test = model.evaluate(test_gen, metrics=["AUC", "logloss"])
        t_fit = time.perf_counter() - t0

    log = model.epoch_log
    best = max((e for e in log if "valid_auc" in e), key=lambda e: e["valid_auc"])
    result = {
        "model": args.model, "feed": args.feed, "test_auc": float(test["AUC"]), "test_logloss": float(test["logloss"]),
        "train_samples_per_s": sum(e["samples_per_s"] for e in log) / len(log),
        "fit_wall_seconds": t_fit, "loaders_seconds": t_loaders, "ray_init_seconds": t_ray,
        "wall_seconds": t_fit + t_loaders, "process_seconds": time.perf_counter() - t_process,
        "epochs_run": len(log), "best_epoch": best["epoch"], "valid_auc": best["valid_auc"],
        "params": params, "threads": torch.get_num_threads(), "history": log,
        "versions": {"fuxictr": _version("fuxictr"), "torch": torch.__version__},
    }
    print(json.dumps(result), flush=True)


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    main()
