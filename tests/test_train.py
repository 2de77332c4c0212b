"""Ray Train: 2 workers on synthetic data with planted signal."""

import json
from pathlib import Path

import pytest
import torch

from llmctr.train.checkpoint import load_optimizer, save_optimizer


def test_two_worker_training_learns(trained_synthetic):
    m = trained_synthetic.metrics
    assert m["num_workers"] == 2
    assert m["test_auc"] > 0.7, m
    assert 0 < m["test_logloss"] < 0.69
    assert 1 <= m["best_epoch"] <= m["epochs_run"] <= 3
    assert len(trained_synthetic.history) == m["epochs_run"]


def test_artifact_contents(trained_synthetic):
    folder = Path(trained_synthetic.artifact)
    for name in ("model.safetensors", "model_config.json", "feature_map.json", "metrics.json",
                 "training_curve.png", "history.json"):
        assert (folder / name).is_file(), name
    assert (folder.parent / "LATEST").read_text().strip() == folder.name
    runs = [json.loads(line) for line in (folder.parents[2] / "runs.jsonl").read_text().splitlines()]
    assert runs[-1]["artifact"] == str(folder)


def test_optimizer_state_roundtrip(tmp_path):
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    save_optimizer(opt, tmp_path)
    opt2 = torch.optim.Adam(model.parameters(), lr=0.5)
    load_optimizer(opt2, tmp_path)
    assert opt2.param_groups[0]["lr"] == 0.01
    for p in model.parameters():
        torch.testing.assert_close(opt2.state[p]["exp_avg"], opt.state[p]["exp_avg"])


@pytest.mark.slow  # about 26 s; in process vs one Ray Train worker (below) stays in the default suite
def test_same_seed_same_model(ray_local, prepared_synthetic, trained_synthetic, tmp_path):
    """Training is reproducible: rows reach the workers in a fixed order and every RNG is seeded. The session's
    2-worker DeepFM (DDP) trained again with the same settings gives the same model."""
    from llmctr.train import fit, load_experiment

    exp = load_experiment("synthetic_deepfm")  # as the trained_synthetic fixture sets it
    exp.train.num_workers, exp.train.epochs, exp.train.batch_size, exp.train.lr = 2, 3, 256, 1e-2
    again = fit(exp, prepared_synthetic, artifacts=tmp_path).metrics
    first = trained_synthetic.metrics
    assert first["epochs_run"] == again["epochs_run"]
    assert again["test_auc"] == first["test_auc"] and again["test_logloss"] == first["test_logloss"]


@pytest.mark.slow  # bf16 training in process: tests/test_precision.py
def test_bf16_training_through_ray_train(ray_local, prepared_synthetic, tmp_path):
    """train.precision bf16 end to end: the worker trains under autocast, reports it, and still learns."""
    from llmctr.train import fit, load_experiment

    exp = load_experiment("synthetic_deepfm")
    exp.train.epochs, exp.train.precision, exp.train.engine = 2, "bf16", "ray"
    m = fit(exp, prepared_synthetic, artifacts=tmp_path).metrics
    assert m["precision"] == "bf16" and m["engine"] == "ray"
    assert m["test_auc"] > 0.7, m


def test_in_process_training_gives_what_one_ray_train_worker_gives(ray_local, prepared_synthetic, tmp_path):
    """train.engine local runs the same loop without Ray: same epochs, metrics and weights as one Ray Train
    worker (same seed, same rows in the same order)."""
    from safetensors.torch import load_file

    from llmctr.train import fit, load_experiment

    runs = {}
    for engine in ("ray", "local"):
        exp = load_experiment("synthetic_deepfm")
        exp.train.epochs, exp.train.engine = 2, engine
        runs[engine] = fit(exp, prepared_synthetic, artifacts=tmp_path / engine)
    ray_m, local_m = runs["ray"].metrics, runs["local"].metrics
    assert (ray_m["engine"], local_m["engine"]) == ("ray", "local")
    for key in ("test_auc", "test_logloss", "valid_auc", "epochs_run", "best_epoch"):
        assert local_m[key] == ray_m[key], key
    weights = [load_file(str(Path(runs[e].artifact) / "model.safetensors")) for e in ("ray", "local")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_train_engine_auto_keeps_ray_where_the_run_needs_it(prepared_synthetic, monkeypatch):
    from llmctr.train import load_experiment
    from llmctr.train.ctr.fit import choose_engine

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    exp = load_experiment("synthetic_deepfm")
    assert choose_engine(exp, prepared_synthetic) == "local"
    assert choose_engine(exp, prepared_synthetic, callbacks=[object()]) == "ray"  # a Tune trial
    assert choose_engine(exp, prepared_synthetic, address="auto") == "ray"
    exp.train.num_workers = 2
    assert choose_engine(exp, prepared_synthetic) == "ray"
    exp.train.engine = "local"
    with pytest.raises(ValueError, match="more than one worker"):
        choose_engine(exp, prepared_synthetic)


def test_arrow_batches_become_tensors_without_a_warning():
    """Ray Data hands the loop read-only numpy views of Arrow buffers; turning them into tensors must neither copy
    nor warn (the warning used to reach the driver's log from every worker), and list columns are stacked."""
    import warnings

    import numpy as np
    import pyarrow as pa

    from llmctr.data.feature_map import LABEL
    from llmctr.train.feed import to_tensors

    ids = pa.array([3, 1, 2], type=pa.int64()).to_numpy()
    assert not ids.flags.writeable
    genres = np.empty(3, dtype=object)
    genres[:] = [np.array([1, 2]), np.array([2, 0]), np.array([4, 5])]
    batch = {"item": ids, "genres": genres, LABEL: np.array([1.0, 0.0, 1.0], dtype=np.float32)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = to_tensors(batch, ["item", "genres"])
    assert out["item"].tolist() == [3, 1, 2]
    assert out["item"].data_ptr() == ids.ctypes.data  # shares the buffer
    assert out["genres"].shape == (3, 2) and out["genres"][2].tolist() == [4, 5]
    assert out[LABEL].dtype.is_floating_point


def test_a_split_read_into_memory_is_what_a_ray_data_shard_gives(ray_local, prepared_synthetic):
    """The in-memory feed reads the split's parquet files itself: the same rows, in the same order and types, as
    iterating Ray Data's read of the folder; workers' shares are equal, disjoint and in order."""
    import pandas as pd
    import ray

    from llmctr.data import FeatureMap
    from llmctr.data.feature_map import LABEL
    from llmctr.train.feed import read_split, to_tensors

    names = FeatureMap.load(prepared_synthetic / "feature_map.json").input_columns
    assert any(pd.read_parquet(prepared_synthetic / "train")[n].dtype == object for n in names), "a list column"
    ctx = ray.data.DataContext.get_current()
    saved, ctx.execution_options.preserve_order = ctx.execution_options.preserve_order, True
    try:
        ds = ray.data.read_parquet(str(prepared_synthetic / "train"), columns=[*names, LABEL])
        parts = [to_tensors(b, names) for b in ds.iter_batches(batch_size=4096, batch_format="numpy")]
    finally:
        ctx.execution_options.preserve_order = saved
    expected = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    whole = read_split(prepared_synthetic / "train", names)
    for k, v in expected.items():
        assert whole[k].dtype == v.dtype and torch.equal(whole[k], v), k
    n = len(whole[LABEL])
    shares = [read_split(prepared_synthetic / "train", names, rank, 3) for rank in range(3)]
    assert {len(s[LABEL]) for s in shares} == {n // 3}
    assert torch.equal(torch.cat([s["item_id"] for s in shares]), whole["item_id"][: 3 * (n // 3)])
    with pytest.raises(FileNotFoundError, match="no such parquet data"):
        read_split(prepared_synthetic / "nothing", names)


def test_training_jobs_keep_ray_train_console_logs_at_warning_unless_verbose(monkeypatch):
    import logging

    from llmctr.runtime import TRAIN_LOG_LEVEL_ENV, setup_logging
    from llmctr.train.job import run_config as train_run_config

    monkeypatch.setenv(TRAIN_LOG_LEVEL_ENV, "unset")  # recorded, so the value setup_logging sets is undone
    monkeypatch.delenv(TRAIN_LOG_LEVEL_ENV)
    plain = train_run_config("run", "/tmp/results")
    assert plain.logging_config.log_level == "WARNING"
    assert plain.failure_config is None or plain.failure_config.max_failures == 0
    resumable = train_run_config("run", "/tmp/results", max_failures=3)
    assert resumable.failure_config.max_failures == 3 and resumable.checkpoint_config.num_to_keep == 2
    setup_logging(verbose=True)
    assert train_run_config("run", "/tmp/results").logging_config.log_level == "INFO"
    assert logging.getLogger("httpx").level == logging.INFO
    setup_logging(verbose=False)
    assert logging.getLogger("httpx").level == logging.WARNING


def test_hold_file_pauses_workers_from_its_epoch_until_removed(tmp_path, monkeypatch):
    import threading
    import time

    from llmctr.train.job import HOLD_ENV, hold_while_asked

    hold = tmp_path / "hold"
    monkeypatch.setenv(HOLD_ENV, str(hold))
    hold_while_asked(5)  # no file: no wait
    hold.write_text("2")
    t0 = time.monotonic()
    hold_while_asked(1)
    hold_while_asked(None)  # the final report carries no epoch
    assert time.monotonic() - t0 < 0.5
    threading.Timer(0.5, hold.unlink).start()
    hold_while_asked(2)
    assert time.monotonic() - t0 >= 0.5, "held after epoch 2 until the file went"


def test_ray_data_console_lines_only_with_verbose(tmp_path):
    """Without -v, a Ray Data job prints none of its per-operator INFO lines, on the driver or in the workers of the
    local cluster it starts (the logging config travels in RAY_DATA_LOGGING_CONFIG)."""
    import os
    import subprocess
    import sys

    script = ("from llmctr.runtime import init_ray, setup_logging\nsetup_logging(False)\nimport logging, ray\n"
              "init_ray(num_cpus=1, dashboard=False)\n"
              "h = [h for h in logging.getLogger('ray.data').handlers if 'Plain' in type(h).__name__]\n"
              "assert h and all(x.level == logging.WARNING for x in h), h\n"
              "print(sum(r['id'] for r in ray.data.range(100).map_batches(lambda b: b).take_all()))\n")
    env = {k: v for k, v in os.environ.items() if k != "RAY_DATA_LOGGING_CONFIG"}
    env["RAY_AUTH_MODE"] = "disabled"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "4950" in proc.stdout
    out = proc.stdout + proc.stderr
    assert "streaming_executor" not in out and "Starting execution" not in out, out[-3000:]


def test_a_killed_training_worker_resumes_from_the_last_checkpoint(ray_local, prepared_synthetic, tmp_path):
    """One of two workers' processes is killed while the run is held after epoch 2 (its checkpoint registered):
    the worker group restarts from that checkpoint and runs epoch 3 only. (The multi-node version, a whole node
    lost, is the slow tests/test_multinode.py.)"""
    import os
    import signal
    import threading
    import time

    from conftest import TRAIN_HOLD_FILE
    from ray.util.state import list_actors
    from train_hold import checkpoint_folders, registered_epoch

    from llmctr.train import fit, load_experiment
    from llmctr.train.job import HOLD_ENV

    assert os.environ[HOLD_ENV] == str(TRAIN_HOLD_FILE)
    exp = load_experiment("synthetic_deepfm")
    exp.train.num_workers, exp.train.epochs, exp.train.early_stopping_patience = 2, 3, 3
    gcs = ray_local.get_runtime_context().gcs_address
    before = {a.actor_id for a in list_actors(address=gcs, filters=[("class_name", "=", "RayTrainWorker")],
                                              limit=1000)}
    storage, box = tmp_path / "storage", {}
    TRAIN_HOLD_FILE.write_text("2")
    try:
        run = threading.Thread(target=lambda: box.update(result=fit(exp, prepared_synthetic, artifacts=tmp_path,
                                                                    storage_path=str(storage))))
        run.start()
        deadline = time.time() + 300
        while registered_epoch(storage) < 2 and time.time() < deadline and run.is_alive():
            time.sleep(0.2)
        assert registered_epoch(storage) == 2 and len(checkpoint_folders(storage)) == 2
        alive = [a for a in list_actors(address=gcs, filters=[("class_name", "=", "RayTrainWorker"),
                                                               ("state", "=", "ALIVE")], detail=True, limit=1000)
                 if a.actor_id not in before]
        assert len(alive) == 2, alive
        os.kill(alive[0].pid, signal.SIGKILL)
    finally:
        TRAIN_HOLD_FILE.unlink(missing_ok=True)
    run.join(timeout=600)
    metrics = box["result"].metrics
    assert metrics["resumes"] >= 1 and metrics["epochs_run"] == 3, metrics
    assert metrics["test_auc"] > 0.6
