"""Driving FuxiCTR from our benchmarks (``zoo_vs_fuxictr``, ``wall_vs_fuxictr``): its own venv, its versions, our
experiment's hyper-parameters translated to its models' keyword arguments, and its runner scripts
(``benchmarks/fuxictr/*.py``, run by that venv's interpreter by path, never imported here)."""

from __future__ import annotations

import inspect
import json
import logging
import os
import subprocess
from pathlib import Path

from llmctr.models.registry import get_backbone

log = logging.getLogger("bench")

BENCH = Path(__file__).resolve().parents[1]
VENV = BENCH / ".venv-fuxictr"
SCRIPTS = BENCH / "fuxictr"
# torch 2.13.0: the local CPU wheel; polars<2: FuxiCTR's CSV reader uses scan_csv(dtypes=...), gone in polars 2;
# aiohttp: Ray Data 2.60 (FuxiCTR's parquet loader) probes fsspec's HTTP filesystem, which needs it.
PINS = ["torch==2.13.0", "fuxictr==2.3.10", "polars<2", "aiohttp"]
FUXI_NAMES = {"deepfm": "DeepFM", "fm": "FM", "fwfm": "FwFM", "fmfm": "FmFM", "dcnv2": "DCNv2",
              "autoint": "AutoInt", "finalmlp": "FinalMLP", "wukong": "WuKong"}
WORKER_NICENESS = 15  # Ray's default for worker processes (RAY_worker_niceness)


def ensure_venv() -> Path:
    """The FuxiCTR venv's python, the venv created (or repaired) with ``PINS`` when missing."""
    python = VENV / "bin" / "python"
    if not python.exists():
        log.info("creating %s (%s)", VENV, " ".join(PINS))
        subprocess.run(["python3.11", "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PINS], check=True)
    probe = "import fuxictr, torch, pyarrow, pandas, sklearn, aiohttp"
    if subprocess.run([str(python), "-c", probe], capture_output=True).returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PINS], check=True)
        subprocess.run([str(python), "-c", probe], check=True)
    return python


def venv_versions(python: Path) -> dict[str, str]:
    """Package versions inside the FuxiCTR venv (what its side ran with)."""
    code = ("import importlib.metadata as m, json; print(json.dumps({n: m.version(n) for n in "
            "('fuxictr', 'torch', 'ray', 'polars', 'pandas', 'numpy', 'pyarrow')}))")
    return json.loads(subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                                     check=True).stdout)


def add_to_provenance(prov: dict, python: Path) -> dict:
    """``prov`` with the FuxiCTR venv's versions: ``packages.fuxictr`` and the whole venv under ``fuxictr_venv``."""
    versions = venv_versions(python)
    prov["packages"] = {**prov["packages"], "fuxictr": versions["fuxictr"]}
    prov["fuxictr_venv"] = {"pins": PINS, "packages": versions}
    return prov


def clean_env() -> dict[str, str]:
    """The environment for a process of the FuxiCTR venv (or one timed beside it): no cluster to join, nothing of
    our venv on its path."""
    return {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "PYTHONPATH", "VIRTUAL_ENV")}


# --------------------------------------------------------------------------------------------------------------
# Hyper-parameters: our YAML params (with the backbone's defaults) → the FuxiCTR model's keyword arguments
# --------------------------------------------------------------------------------------------------------------

def our_params(exp) -> dict:
    sig = inspect.signature(get_backbone(exp.model.name).__init__)
    defaults = {k: p.default for k, p in sig.parameters.items()
                if p.default is not inspect.Parameter.empty and k != "extra_dim"}
    merged = {**defaults, **(exp.model.params or {})}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in merged.items()}


def fuxictr_params(model: str, p: dict, field_order: list[str]) -> dict:
    act = {"relu": "ReLU"}.get(p.get("activation", "relu"), p.get("activation"))
    if model == "deepfm":
        return {"hidden_units": p["hidden_units"], "hidden_activations": act, "net_dropout": p["dropout"],
                "batch_norm": p["batch_norm"]}
    if model == "fm":
        return {}
    if model == "fwfm":
        return {"linear_type": "LW"}
    if model == "fmfm":
        return {"field_interaction_type": p["field_interaction_type"]}
    if model == "dcnv2":
        units = p["hidden_units"]
        return {"model_structure": p["structure"], "num_cross_layers": p["num_cross_layers"],
                "parallel_dnn_hidden_units": units if p["structure"] == "parallel" else [],
                "stacked_dnn_hidden_units": units if p["structure"] == "stacked" else [],
                "dnn_activations": act, "net_dropout": p["dropout"], "batch_norm": p["batch_norm"]}
    if model == "autoint":
        return {"attention_layers": p["attention_layers"], "num_heads": p["num_heads"],
                "attention_dim": p["attention_dim"], "use_residual": p["use_residual"], "use_scale": p["use_scale"],
                "layer_norm": p["layer_norm"], "dnn_hidden_units": p["hidden_units"], "dnn_activations": act,
                "net_dropout": p["dropout"], "batch_norm": p["batch_norm"], "use_wide": False}
    if model == "finalmlp":
        return {"mlp1_hidden_units": p["mlp1_hidden_units"], "mlp2_hidden_units": p["mlp2_hidden_units"],
                "mlp1_hidden_activations": act, "mlp2_hidden_activations": act, "mlp1_dropout": p["dropout"],
                "mlp2_dropout": p["dropout"], "mlp1_batch_norm": p["batch_norm"], "mlp2_batch_norm": p["batch_norm"],
                "use_fs": p["use_fs"], "fs_hidden_units": p["fs_hidden_units"],
                "fs1_context": [field_order[i] for i in p["fs1_context"]],
                "fs2_context": [field_order[i] for i in p["fs2_context"]], "num_heads": p["num_heads"]}
    if model == "wukong":
        return {"num_layers": p["num_layers"], "compression_dim": p["compression_dim"], "fmb_units": p["fmb_units"],
                "fmb_dim": p["fmb_dim"], "project_dim": p["project_dim"], "dropout_rate": p["dropout"],
                "mlp_hidden_units": p["hidden_units"]}
    raise ValueError(f"no FuxiCTR mapping for {model!r}")


def runner_command(python: Path, exp, params: dict, data_dir: Path, threads: int, feed: str = "fuxictr",
                   prepared: str = "ours") -> list[str]:
    """``benchmarks/fuxictr/runner.py`` training ``exp``'s model (FuxiCTR's build, ``params``) with ``exp.train``'s
    batch size, lr, epoch budget, patience and seed. ``prepared``: whose preprocessing made ``data_dir``."""
    tc = exp.train
    return [str(python), str(SCRIPTS / "runner.py"), "--data-dir", str(data_dir), "--prepared", prepared,
            "--model", FUXI_NAMES[exp.model.name], "--params", json.dumps(params),
            "--embedding-dim", str(exp.model.embedding_dim), "--batch-size", str(tc.batch_size),
            "--epochs", str(tc.epochs), "--lr", str(tc.lr), "--patience", str(tc.early_stopping_patience),
            "--seed", str(tc.seed), "--threads", str(threads), "--feed", feed]


def last_json_line(proc: subprocess.CompletedProcess, what: str) -> dict:
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{what} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1])


def run_fuxictr(python: Path, exp, params: dict, data_dir: Path, threads: int, feed: str) -> dict:
    """One FuxiCTR training run on our prepared splits; its result line, per-epoch throughput flattened."""
    env = {**clean_env(), "RAY_AUTH_MODE": "disabled"}
    # Same scheduling terms as our side: Ray runs our training worker at niceness 15 (RAY_worker_niceness's
    # default); FuxiCTR trains in its driver process, so give that process the same niceness.
    proc = subprocess.run(runner_command(python, exp, params, data_dir, threads, feed), capture_output=True,
                          text=True, env=env, cwd=str(SCRIPTS), preexec_fn=lambda: os.nice(WORKER_NICENESS))
    out = last_json_line(proc, f"fuxictr runner ({exp.model.name}, feed {feed}, seed {exp.train.seed})")
    out["epoch_samples_per_s"] = [h["samples_per_s"] for h in out.pop("history")]
    out.pop("versions", None)
    out["seed"] = exp.train.seed
    return out
