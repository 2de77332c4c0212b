"""Whole processes, ours vs FuxiCTR, on ML-1M: wall-clock seconds from process start to exit, timed from outside.

- prepare: ``llmctr data prepare ml1m --force`` against FuxiCTR's preprocessing of the same raw files
  (benchmarks/fuxictr/prepare.py in the FuxiCTR venv: the pandas glue FuxiCTR needs for the "::" files — join,
  label, time-ordered 8:1:1 split, CSVs — then its ``FeatureProcessor`` + ``build_dataset``, its Ray start included);
- train: ``llmctr train ml1m_deepfm --epochs E`` (process start to the model artifact written: Ray start, Ray Train
  worker group, per-epoch validation and checkpoints, test, artifact) against the rest of FuxiCTR's DeepFM run as a
  process of its own (benchmarks/fuxictr/runner.py on FuxiCTR's own prepared parquet: imports, Ray start for its
  loader, model build, ``fit`` with validation every epoch, test ``evaluate``).

Same data, same model and hyper-parameters (configs/experiments/ml1m_deepfm.yaml: embedding 16, MLP [256, 128],
batch 4096, Adam 1e-3, seed 2026, early-stopping patience), the same epoch budget E on both sides (the epochs each
side ran are recorded), the same torch threads. Runs alternate (``--repeats`` of each, the order flipping every
repeat), each after the CPUs are quiet (at most ``--max-quiet-wait`` s), with the CPU time other processes used
recorded. ``prepare_ratio`` / ``train_ratio``: median ours / median FuxiCTR (< 1: ours is faster).

Writes benchmarks/results/wall_vs_fuxictr.json (``--out`` elsewhere). Our runs use their own artifacts root
(``--artifacts``, default /tmp/wall_artifacts), never the real one.

    python -m benchmarks.wall_vs_fuxictr                 # 3 repeats, 3 epochs
    python -m benchmarks.wall_vs_fuxictr --repeats 1 --allow-dirty --out /tmp/wall_smoke.json
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.lib import protocol as proto
from benchmarks.lib.common import RESULTS
from benchmarks.lib.fuxictr_side import (
    SCRIPTS,
    add_to_provenance,
    clean_env,
    ensure_venv,
    fuxictr_params,
    last_json_line,
    our_params,
    runner_command,
)
from benchmarks.lib.quiet_cpu import CpuWatch, wait_quiet
from llmctr.data import find_dataset_dir, load_dataset_config
from llmctr.train import load_experiment
from llmctr.train.job import threads_per_worker

log = logging.getLogger("bench")
LLMCTR = Path(sys.executable).with_name("llmctr")
EXPERIMENT = "ml1m_deepfm"
NOTES = [
    "Our prepare does more than FuxiCTR's: it also validates and quarantines rows, builds the users' behaviour "
    "history (a sequence field, the last 50 ratings) and user_history.json; FuxiCTR's builds the 7 categorical "
    "fields only.",
    "FuxiCTR's prepare includes pandas glue (reading the '::' files, join, label, split, CSVs: glue_seconds in "
    "its runs) because its reader takes CSV with a one-byte separator.",
    "Our train process reads our prepared splits, FuxiCTR's reads its own (same rows, same split, the same 7 "
    "fields; ours also carries the history column, which DeepFM without model.history does not read).",
    "Ours runs with its default engines (auto): at ML-1M's size both prepare and train run in their own process "
    "without starting Ray (data/local_frame.py, train/local_run.py); each run's engine is in its 'inner' record.",
]


def timed(cmd: list[str], what: str, args, cwd: Path | None = None) -> dict:
    """Run ``cmd`` to its exit after the CPUs are quiet; its wall seconds and what else ran meanwhile."""
    quiet = wait_quiet(args.quiet_threshold, args.max_quiet_wait)
    with CpuWatch() as cpu:
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), cwd=cwd)
        seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-4000:]}")
    log.info("%s: %.1f s (other processes used %.2f cores)", what, seconds, cpu.foreign_cores)
    return {"what": what, "seconds": seconds, "cpu": cpu.summary(quiet), "proc": proc}


def ours_metrics(artifacts: Path) -> dict:
    folder = artifacts / "models" / EXPERIMENT
    metrics = json.loads((folder / (folder / "LATEST").read_text().strip() / "metrics.json").read_text())
    return {k: metrics.get(k) for k in ("test_auc", "epochs_run", "best_epoch", "train_samples_per_s",
                                        "train_wall_seconds", "engine")}


def ours_prepare(artifacts: Path) -> dict:
    """Where our prepare's seconds went (its manifest: the engine and each stage's wall seconds)."""
    manifest = json.loads((artifacts / "data" / "ml1m" / "manifest.json").read_text())
    return {k: manifest.get(k) for k in ("engine", "seconds", "stage_seconds")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each process per side")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs, both sides")
    parser.add_argument("--artifacts", type=Path, default=Path("/tmp/wall_artifacts"), help="our artifacts root")
    parser.add_argument("--fuxictr-root", type=Path, default=Path("/tmp/wall_fuxictr"), help="FuxiCTR's data root")
    parser.add_argument("--data-dir", type=Path, help="root of the raw data (default: llmctr's: $LLMCTR_DATA_DIR, "
                                                      "./data, ../shared/data)")
    parser.add_argument("--out", type=Path, default=RESULTS / "wall_vs_fuxictr.json")
    parser.add_argument("--quiet-threshold", type=float, default=0.15)
    parser.add_argument("--max-quiet-wait", type=float, default=60.0)
    args, prov = proto.parse_with_provenance(parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    python = ensure_venv()
    prov = add_to_provenance(prov, python)
    exp = load_experiment(EXPERIMENT)
    exp.train.epochs = args.epochs
    raw = find_dataset_dir(load_dataset_config(exp.dataset), args.data_dir)
    if raw is None:
        raise SystemExit(f"no raw {exp.dataset} files under the data roots (--data-dir)")
    artifacts, fx_root = args.artifacts.resolve(), args.fuxictr_root.resolve()
    threads = threads_per_worker(exp.train)
    ours = [str(LLMCTR), "--artifacts", str(artifacts)]
    commands = {  # deepfm's FuxiCTR kwargs need no field order (only finalmlp's do)
        ("prepare", "ours"): [*ours, "data", "prepare", exp.dataset, "--force", "--data-dir", str(raw.parent)],
        ("prepare", "fuxictr"): [str(python), str(SCRIPTS / "prepare.py"), "--raw", str(raw), "--out", str(fx_root)],
        ("train", "ours"): [*ours, "train", EXPERIMENT, "--epochs", str(args.epochs)],
        ("train", "fuxictr"): runner_command(python, exp, fuxictr_params("deepfm", our_params(exp), []),
                                             fx_root / exp.dataset, threads, feed="fuxictr", prepared="fuxictr"),
    }
    # one repeat of the four processes at 3 epochs: ~145 s on a quiet 2-core machine (2026-12-01: 26 + 25 + 53 + 40 s),
    # ~300 s on a busy one (the smoke run of 2026-12-05: 87 + 44 + 86 + 85 s); training is ~2/3 of it
    low, high = ((s * args.repeats * (1 / 3 + 2 / 3 * args.epochs / 3) + w * 4 * args.repeats * args.max_quiet_wait)
                 / 60 for s, w in ((145, 0), (300, 1)))
    log.info("estimate: %.0f min (quiet machine) to %.0f min (busy: every process waiting %.0f s for quiet CPUs) for "
             "%d repeat(s)", low, high, args.max_quiet_wait, args.repeats)

    runs, t_start = [], time.time()
    for i in range(args.repeats):
        sides = ["ours", "fuxictr"] if i % 2 == 0 else ["fuxictr", "ours"]
        for stage in ("prepare", "train"):
            for side in sides:
                run = timed(commands[(stage, side)], f"{stage} {side} #{i + 1}", args,
                            cwd=SCRIPTS if side == "fuxictr" else None)
                proc = run.pop("proc")
                inner = (last_json_line(proc, run["what"]) if side == "fuxictr" else
                         ours_metrics(artifacts) if stage == "train" else ours_prepare(artifacts))
                inner.pop("history", None)
                runs.append({"stage": stage, "side": side, "repeat": i + 1, **run, "inner": inner})

    def seconds(stage: str, side: str) -> list[float]:
        return [r["seconds"] for r in runs if (r["stage"], r["side"]) == (stage, side)]

    def epochs(side: str) -> list[int]:
        return [r["inner"]["epochs_run"] for r in runs if (r["stage"], r["side"]) == ("train", side)]

    payload = {"benchmark": "wall_vs_fuxictr", "dataset": exp.dataset, "experiment": EXPERIMENT,
               "epochs": args.epochs, "repeats": args.repeats, "threads": threads,
               "epochs_run": {side: epochs(side) for side in ("ours", "fuxictr")},
               "epochs_equal": len({*epochs("ours"), *epochs("fuxictr")}) == 1,
               "test_auc": {side: [r["inner"]["test_auc"] for r in runs if (r["stage"], r["side"]) == ("train", side)]
                            for side in ("ours", "fuxictr")},
               "commands": {f"{stage} {side}": " ".join(cmd) for (stage, side), cmd in commands.items()},
               "runs": runs, "notes": NOTES, "elapsed_seconds": time.time() - t_start}
    for stage in ("prepare", "train"):
        med = {side: statistics.median(seconds(stage, side)) for side in ("ours", "fuxictr")}
        payload[stage] = {f"{side}_seconds": seconds(stage, side) for side in ("ours", "fuxictr")} | {
            f"{side}_median": med[side] for side in ("ours", "fuxictr")}
        payload[f"{stage}_ratio"] = med["ours"] / med["fuxictr"]
    path = proto.write(args.out.stem, payload, prov, folder=args.out.parent)
    log.info("prepare ours/FuxiCTR %.2f, train %.2f (medians); wrote %s", payload["prepare_ratio"],
             payload["train_ratio"], path)


if __name__ == "__main__":
    main()
