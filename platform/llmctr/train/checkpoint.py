"""Training checkpoints as safetensors + JSON (no pickle): model, best model, optimizer, loop state."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)


def save_optimizer(opt: torch.optim.Optimizer, folder: Path) -> None:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{idx}/{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}/{key}"] = value
    save_file(tensors, str(folder / "optimizer.safetensors"))
    (folder / "optimizer.json").write_text(json.dumps({"param_groups": sd["param_groups"], "scalars": scalars}))


def load_optimizer(opt: torch.optim.Optimizer, folder: Path) -> None:
    meta = json.loads((folder / "optimizer.json").read_text())
    state: dict[int, dict[str, Any]] = {}
    for key, value in [*load_file(str(folder / "optimizer.safetensors")).items(), *meta["scalars"].items()]:
        idx, name = key.split("/", 1)
        state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(folder: Path, model_state: dict, best_state: dict, opt: torch.optim.Optimizer,
                    loop_state: dict[str, Any]) -> None:
    save_file(model_state, str(folder / "model.safetensors"))
    save_file(best_state, str(folder / "best.safetensors"))
    save_optimizer(opt, folder)
    (folder / "state.json").write_text(json.dumps(loop_state, default=float))


def load_checkpoint(folder: Path) -> tuple[dict, dict, dict[str, Any]]:
    return (load_file(str(folder / "model.safetensors")), load_file(str(folder / "best.safetensors")),
            json.loads((folder / "state.json").read_text()))


# The training loops' bookkeeping (restoring and reporting: ``llmctr.train.job``).

def new_loop_state(**extra: Any) -> dict[str, Any]:
    return {"epoch": 0, "best_score": -float("inf"), "best_epoch": -1, "bad_epochs": 0, "resumes": 0, "history": [],
            **extra}


def record_epoch(state: dict[str, Any], metrics: dict[str, Any], score: float, model: torch.nn.Module,
                 best: dict) -> dict:
    """Early-stopping bookkeeping after epoch ``metrics["epoch"]``; returns the best weights so far."""
    from llmctr.models.artifact import cpu_state

    if score > state["best_score"]:
        state.update(best_score=score, best_epoch=metrics["epoch"], bad_epochs=0)
        best = cpu_state(model)
    else:
        state["bad_epochs"] += 1
    state["epoch"] = metrics["epoch"]
    state["history"].append(metrics)
    return best


def best_epoch_metrics(state: dict[str, Any], prefix: str = "valid_") -> dict[str, Any]:
    """The best epoch's metrics whose names start with ``prefix``."""
    best = next((h for h in state["history"] if h["epoch"] == state["best_epoch"]), {})
    return {k: v for k, v in best.items() if k.startswith(prefix)}
