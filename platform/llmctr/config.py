"""Loading typed configs from YAML with errors that name the file and the offending key.

Configs are pydantic dataclasses with ``extra="forbid"``: a typo in a YAML key is an error at
load time, not a silently ignored setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ConfigDict, TypeAdapter, ValidationError

T = TypeVar("T")

#: The checkout holding platform/, configs/ and serve_configs/ (the package is installed editable).
REPO_ROOT = Path(__file__).resolve().parents[2]

#: Shared pydantic config for every config dataclass.
STRICT = ConfigDict(extra="forbid")


class ConfigError(ValueError):
    """A config file is missing, malformed, or does not validate."""


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"malformed YAML in {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def parse_config(cls: type[T], data: dict[str, Any], source: str = "<config>") -> T:
    """Validate ``data`` into ``cls``; raise :class:`ConfigError` listing every problem."""
    try:
        return TypeAdapter(cls).validate_python(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid config {source}: {problems}") from exc


def load_config(cls: type[T], path: str | Path) -> T:
    return parse_config(cls, read_yaml(path), source=str(path))


def configs_dir() -> Path:
    """The project's ``configs/`` folder (the checkout's), overridable by $LLMCTR_CONFIGS."""
    import os

    env = os.environ.get("LLMCTR_CONFIGS")
    return Path(env) if env else REPO_ROOT / "configs"


def load_named_config(cls: type[T], path_or_name: str | Path, kind: str, folder: str | None = None) -> T:
    """Load a YAML by path, or by name from ``configs/<folder>/`` (default ``<kind>s``: kind "dataset" →
    configs/datasets/)."""
    path = Path(path_or_name)
    if not path.suffix:
        folder = configs_dir() / (folder or f"{kind}s")
        path = folder / f"{path_or_name}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in folder.glob("*.yaml"))
            raise ConfigError(f"unknown {kind} {str(path_or_name)!r}; known: {known}")
    config = load_config(cls, path)
    for key in REFERENCES:  # a YAML named by a relative path in this YAML is found beside it
        ref = getattr(config, key, None)
        if isinstance(ref, str) and is_path(ref) and not Path(ref).is_absolute() and (path.parent / ref).is_file():
            setattr(config, key, str(path.parent / ref))
    return config


#: keys by which one config names another (by name, or by a path ending in .yaml)
REFERENCES = ("dataset", "experiment")


def is_path(path_or_name: str | Path) -> bool:
    """Whether a config reference is a file path (it ends in .yaml / .yml) rather than a name in configs/."""
    return Path(path_or_name).suffix in (".yaml", ".yml")


def dump_config(obj: Any) -> dict[str, Any]:
    """A config dataclass as plain JSON/YAML-ready data."""
    return TypeAdapter(type(obj)).dump_python(obj, mode="json")
