"""Backbone registry: a new backbone is one file in ``backbones/`` with ``@register("name")``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from llmctr.config import ConfigError

_BACKBONES: dict[str, type] = {}


def register(name: str) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        if name in _BACKBONES:
            raise ValueError(f"backbone {name!r} registered twice")
        _BACKBONES[name] = cls
        cls.registry_name = name
        return cls

    return deco


def available() -> list[str]:
    import llmctr.models.backbones  # noqa: F401  (registers the zoo)

    return sorted(_BACKBONES)


def get_backbone(name: str) -> type:
    names = available()
    if name not in _BACKBONES:
        raise ConfigError(f"unknown model {name!r}; available: {names}")
    return _BACKBONES[name]


def check_params(name: str, params: dict[str, Any]) -> None:
    """Reject hyper-parameters the backbone does not take, naming the accepted ones."""
    sig = inspect.signature(get_backbone(name).__init__)
    accepted = [p for p in sig.parameters if p not in ("self", "num_fields", "embedding_dim", "extra_dim")]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ConfigError(f"model {name!r} does not take {unknown}; accepted: {accepted}")
