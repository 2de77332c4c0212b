"""How cost grows with the work: synthetic click logs of 10^5, 10^6 and 10^7 rows (the synthetic dataset's schema,
the shoppers' history included), each through the platform's own commands as separate processes, timed from outside:

- prepare: ``llmctr data prepare synthetic --force`` (read, quarantine, label, history, split, feature map, write);
- train: ``llmctr train synthetic_deepfm_history --epochs 1`` (one epoch; the epoch's own seconds from the model's
  history.json beside the whole process);
- score: ``llmctr serve`` the model, then ``llmctr score TEST_SPLIT`` over HTTP (``--per-request`` records per
  request, one request at a time; the client reads the split a batch at a time).

Per size and step: wall seconds, seconds per million rows (of the log for prepare, of the train split for the
epoch, of the test split for scoring), the driver's peak resident memory and the peak proportional memory of the
whole process tree (Ray's processes included). ``growth``: seconds per million rows at the largest size over
the same at the one before (done-when: <= 1.5 at 10^7 against 10^6), and the same for the driver's memory.
Users and items grow with the log (``users_items``), so each user's history stays as long at every size.

    python -m benchmarks.scaling                                # 10^5, 10^6, 10^7 (about an hour on 2 cores)
    python -m benchmarks.scaling --sizes 20000 100000 --allow-dirty --out /tmp/scaling_smoke.json

Writes benchmarks/results/scaling.json and scaling.png; logs and data go under ``--work`` (default /tmp/scaling).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.lib import protocol as proto
from benchmarks.lib.common import RESULTS
from benchmarks.lib.memwatch import TreeMemory
from benchmarks.lib.quiet_cpu import CpuWatch, wait_quiet

log = logging.getLogger("scaling")
LLMCTR = Path(sys.executable).with_name("llmctr")
EXPERIMENT = "synthetic_deepfm_history"
#: step → (its seconds in the result, the rows it processes): the log for prepare, the train split for the epoch,
#: the test split for scoring
MEASURES = {"prepare": ("seconds", "rows"), "train_epoch": ("epoch_seconds", "train_rows"),
            "score": ("scoring_seconds", "test_rows")}
STEPS = tuple(MEASURES)


def users_items(rows: int) -> tuple[int, int]:
    """Users and items of a log of ``rows`` rows: 30 rows per user and 200 per item on average (at least the
    synthetic dataset's 2,000 and 500)."""
    return max(2_000, rows // 30), max(500, rows // 200)


def run_measured(cmd: list[str], log_file: Path, env: dict) -> dict:
    """Run ``cmd`` to its exit, its output to ``log_file``: wall seconds, peak memory, other processes' CPU use."""
    quiet = wait_quiet(0.15, 120)
    with open(log_file, "w") as out, CpuWatch() as cpu:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        with TreeMemory(proc.pid) as mem:
            code = proc.wait()
        seconds = time.perf_counter() - t0
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({code}); see {log_file}:\n{log_file.read_text()[-3000:]}")
    return {"seconds": seconds, **mem.summary(), "cpu": cpu.summary(quiet)}


def printed_json(text: str) -> dict:
    """The JSON object a command printed last (``llmctr score``'s summary, indented over several lines)."""
    return json.loads(text[text.rfind("\n{") + 1:])


def serve_and_score(model: Path, test: Path, work: Path, env: dict, port: int, per_request: int) -> dict:
    """Deploy ``model`` (``llmctr serve``), score the whole test split over HTTP from a client process, shut down.
    Memory: the client's and the serving process tree's peaks during the scoring."""
    from llmctr.serve.client import wait_healthy

    serve_log = open(work / "serve.log", "w")
    server = subprocess.Popen([str(LLMCTR), "serve", "--model", str(model), "--port", str(port)], stdout=serve_log,
                              stderr=subprocess.STDOUT, env=env)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", timeout=600)
        with TreeMemory(server.pid) as served:
            out = run_measured([str(LLMCTR), "score", str(test), "--url", f"http://127.0.0.1:{port}",
                                "--per-request", str(per_request)], work / "score.log", env)
        summary = printed_json((work / "score.log").read_text())
        out.update(scoring_seconds=summary["seconds"], records=summary["records"], p50_ms=summary["p50_ms"],
                   serving_tree_peak_pss_mb=served.summary()["tree_peak_pss_mb"])
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=120)
        except subprocess.TimeoutExpired:
            server.kill()
        serve_log.close()
    return out


def one_size(rows: int, work: Path, args) -> dict:
    from llmctr.data.synthetic import write_synthetic

    folder = work / f"n{rows}"
    raw, prepared, artifacts = folder / "raw", folder / "prepared", folder / "artifacts"
    users, items = users_items(rows)
    csv = raw / "synthetic" / "clicks.csv"
    marker = raw / "synthetic" / "written.json"
    spec = {"rows": rows, "users": users, "items": items, "seed": args.seed}
    if not marker.is_file() or json.loads(marker.read_text()) != spec:
        log.info("writing %d rows (%d users, %d items)", rows, users, items)
        t0 = time.perf_counter()
        write_synthetic(csv.parent, n_rows=rows, seed=args.seed, n_users=users, n_items=items)
        marker.write_text(json.dumps(spec))
        log.info("written in %.0f s (%.0f MB)", time.perf_counter() - t0, csv.stat().st_size / 1e6)
    env = {**os.environ, "LLMCTR_ARTIFACTS": str(artifacts), "RAY_ADDRESS": "local"}
    out = {"rows": rows, "users": users, "items": items, "csv_mb": round(csv.stat().st_size / 1e6, 1)}
    log.info("n=%d: prepare", rows)
    out["prepare"] = run_measured([str(LLMCTR), "data", "prepare", "synthetic", "--data-dir", str(raw), "--out",
                                   str(prepared), "--force"], folder / "prepare.log", env)
    manifest = json.loads((prepared / "manifest.json").read_text())
    out["split_rows"] = manifest["rows"]
    out["prepare"]["stage_seconds"] = manifest.get("stage_seconds")
    log.info("n=%d: train one epoch", rows)
    out["train_epoch"] = run_measured([str(LLMCTR), "train", EXPERIMENT, "--data", str(prepared), "--epochs", "1",
                                       "--batch-size", str(args.batch_size)], folder / "train.log", env)
    models = artifacts / "models" / EXPERIMENT
    version = models / (models / "LATEST").read_text().strip()
    epoch = json.loads((version / "history.json").read_text())[0]
    metrics = json.loads((version / "metrics.json").read_text())
    out["train_epoch"].update(epoch_seconds=epoch["epoch_seconds"], samples_per_s=epoch["samples_per_s"],
                              test_auc=metrics["test_auc"], feed=metrics["experiment"]["train"]["feed"])
    log.info("n=%d: serve and score", rows)
    out["score"] = serve_and_score(models, prepared / "test", folder, env, args.port, args.per_request)
    return out


def growth(sizes: list[dict]) -> dict:
    """Seconds (and the driver's peak memory) per million rows: each size against the one before."""
    def per_million(size: dict, step: str) -> float:
        key, counted = MEASURES[step]
        return size[step][key] / (size[counted] / 1e6)

    for size in sizes:
        size["seconds_per_million"] = {step: per_million(size, step) for step in STEPS}
    out = {}
    for prev, cur in zip(sizes, sizes[1:]):
        out[f"{cur['rows']}_vs_{prev['rows']}"] = {
            "seconds_per_million_ratio": {s: cur["seconds_per_million"][s] / prev["seconds_per_million"][s]
                                          for s in STEPS},
            "driver_peak_rss_ratio": {s: cur[s]["driver_peak_rss_mb"] / prev[s]["driver_peak_rss_mb"] for s in STEPS},
            "rows_ratio": cur["rows"] / prev["rows"]}
    return out


def plot(sizes: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [s["rows"] for s in sizes]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))  # scoring's processes: the client's and the serving ones
    for step in STEPS:
        axes[0].plot(rows, [s["seconds_per_million"][step] for s in sizes], "o-", label=step)
        axes[1].plot(rows, [(s[step]["tree_peak_pss_mb"] + s[step].get("serving_tree_peak_pss_mb", 0)) / 1024
                            for s in sizes], "o-", label=f"{step}: all processes")
        axes[1].plot(rows, [s[step]["driver_peak_rss_mb"] / 1024 for s in sizes], "x--", label=f"{step}: driver")
    axes[0].set_ylabel("seconds per million rows")
    axes[1].set_ylabel("peak memory (GiB)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("rows in the log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10**5, 10**6, 10**7])
    parser.add_argument("--work", type=Path, default=Path("/tmp/scaling"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--per-request", type=int, default=500, help="records per scoring request")
    parser.add_argument("--port", type=int, default=8171)
    parser.add_argument("--out", type=Path, help="result file (default benchmarks/results/scaling.json)")
    args, prov = proto.parse_with_provenance(parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    sizes = []
    for rows in sorted(args.sizes):
        size = one_size(rows, args.work, args)
        split = size["split_rows"]
        size["train_rows"], size["test_rows"] = split["train"], split["test"]
        sizes.append(size)
        log.info("n=%d: %s", rows, {s: round(size[s]["seconds"], 1) for s in STEPS})
    out = args.out or RESULTS / "scaling.json"
    payload = {"growth": growth(sizes), "sizes": sizes, "experiment": EXPERIMENT,
               "per_request": args.per_request, "batch_size": args.batch_size, "plot": out.with_suffix(".png").name}
    path = proto.write(out.stem, payload, prov, folder=out.parent)
    plot(sizes, out.with_suffix(".png"))
    print(path)


if __name__ == "__main__":
    main()
