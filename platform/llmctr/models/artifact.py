"""Model artifacts: ``model.safetensors`` + ``model_config.json`` + ``feature_map.json`` (+ metrics),
in versioned folders ``<root>/<name>/<version>/`` with a ``LATEST`` file naming the newest version.
Weights are safetensors and metadata JSON: loading an artifact never unpickles anything.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from llmctr import storage
from llmctr.config import dump_config, parse_config
from llmctr.data.feature_map import FeatureMap
from llmctr.models.ctr_model import CTRModel, ModelConfig, history_inputs
from llmctr.models.layers import FieldInput

WEIGHTS = "model.safetensors"
CONFIG = "model_config.json"
FEATURE_MAP = "feature_map.json"
METRICS = "metrics.json"


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module behind DDP / compile wrappers."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


def cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in unwrap(model).state_dict().items()}


def build_model(fmap: FeatureMap, config: ModelConfig, extra_dim: int = 0, semantics: Any = None) -> CTRModel:
    """``semantics``: LLaCTR's semantic tables (``llmctr.semantics.tables.SemanticTables``), needed to train a
    model with ``config.llactr``; a trained one is rebuilt from its config and weights alone."""
    fields = FieldInput.from_feature_map(fmap)
    return CTRModel(fields, config, extra_dim=extra_dim, **llactr_inputs(fields, config, semantics),
                    **history_inputs(fields, config, semantics))


def llactr_inputs(fields: list[FieldInput], config: ModelConfig, semantics: Any) -> dict[str, Any]:
    """CTRModel's field / feature semantic vectors for LLaCTR's plug-ins (empty without ``config.llactr``);
    sets ``config.llactr.semantic_dim`` from the tables."""
    if config.llactr is None or semantics is None:
        if config.llactr is not None and config.llactr.semantic_dim <= 0:
            raise ValueError("model config has llactr but no semantic tables were given to build it")
        return {}
    fields = [f for f in fields if f.kind != "sequence"]  # LLaCTR describes the row's own fields
    missing = [f.name for f in fields if f.name not in semantics.fields]
    if missing:
        raise ValueError(f"semantic tables lack the input fields {missing} (they have {list(semantics.fields)})")
    rows = [list(semantics.fields).index(f.name) for f in fields]
    field_semantics = torch.as_tensor(semantics.field, dtype=torch.float32)[rows]
    config.llactr.semantic_dim = int(field_semantics.shape[1])
    features = {name: torch.as_tensor(table, dtype=torch.float32) for name, table in semantics.features.items()}
    if config.llactr.fre_target == "entity":
        keys = (semantics.meta or {}).get("entity_keys", {})
        features.update({keys[name]: torch.as_tensor(table, dtype=torch.float32)
                         for name, table in semantics.entities.items() if name in keys})
    return {"field_semantics": field_semantics, "feature_semantics": features}


def save_artifact(root: storage.Location, name: str, state: dict[str, torch.Tensor], config: ModelConfig,
                  fmap: FeatureMap, metrics: dict[str, Any],
                  extra_files: dict[str, Path] | None = None) -> storage.Location:
    """Write a new version atomically and point LATEST at it (``storage.publish_version``)."""
    with storage.publish_version(storage.join(root, name)) as (folder, version):
        save_file(state, str(folder / WEIGHTS), metadata={"format": "pt"})
        (folder / CONFIG).write_text(json.dumps({"model": dump_config(config), "name": name, "version": version},
                                                indent=1))
        fmap.save(folder / FEATURE_MAP)
        (folder / METRICS).write_text(json.dumps(metrics, indent=1, default=float))
        for fname, src in (extra_files or {}).items():
            if Path(src).exists():
                shutil.copy(src, folder / fname)
    return storage.join(root, name, version)


def resolve_artifact(path: storage.Location) -> storage.Location:
    """A version folder, or a model folder whose LATEST names one (local or URI)."""
    return storage.resolve_version(path, WEIGHTS, what="model artifact")


def load_artifact(path: storage.Location, device: str = "cpu") -> tuple[CTRModel, FeatureMap, dict[str, Any]]:
    """Rebuild a model from an artifact folder; a URI one is downloaded once into the local cache."""
    location = resolve_artifact(path)
    folder = storage.local_copy(location)
    meta = json.loads((folder / CONFIG).read_text())
    fmap = FeatureMap.load(folder / FEATURE_MAP)
    model = build_model(fmap, parse_config(ModelConfig, meta["model"], str(folder / CONFIG)))
    try:
        model.load_state_dict(load_file(str(folder / WEIGHTS), device=device))
    except RuntimeError as exc:
        raise ValueError(f"model artifact {folder} does not match its config or feature map: "
                         f"{str(exc).splitlines()[0]}") from exc
    if (folder / METRICS).is_file():
        meta["metrics"] = json.loads((folder / METRICS).read_text())
    meta["path"] = str(location)
    return model.to(device).eval(), fmap, meta
