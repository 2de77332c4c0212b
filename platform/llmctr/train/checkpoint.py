"""Training checkpoints as safetensors + JSON (no pickle): model, best model, optimizer, loop state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file


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
