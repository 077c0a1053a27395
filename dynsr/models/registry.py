"""One registry for every upscaler, so commands treat all models alike by name.

A model is an ``nn.Module`` that maps an RGB (or grayscale) LR batch (B, C, h, w) in [0, 1]
to the SR batch (B, C, s·h, s·w). ``create(name, scale=s, **config)`` builds it; configs are
plain keyword arguments (from dicts or YAML), never subclasses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

__all__ = ["ModelSpec", "available", "create", "get_spec", "register"]


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows of a model name.

    ``needs_degradation``: the model is non-blind (UDVD): its forward takes ``blur=`` and
    ``noise=`` keyword arguments describing how the LR image was made.
    """

    name: str
    builder: Callable[..., nn.Module]
    scales: tuple[int, ...]
    summary: str
    paper: str = ""
    needs_degradation: bool = False
    defaults: dict = field(default_factory=dict)


_REGISTRY: dict[str, ModelSpec] = {}


def register(
    name: str,
    scales: tuple[int, ...],
    summary: str,
    paper: str = "",
    needs_degradation: bool = False,
    **defaults,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator adding a builder ``f(scale=..., **config) -> nn.Module`` under ``name``.

    ``defaults`` are config values this name fixes (e.g. ``ddet-release`` =
    ``ddet`` with ``kernel_sizes=(9, 7, 5)``); callers' config overrides them.
    """

    def add(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} registered twice")
        _REGISTRY[name] = ModelSpec(name, builder, tuple(scales), summary, paper,
                                    needs_degradation, defaults)
        return builder

    return add


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"unknown model {name!r}; available: {known}") from None


def create(name: str, scale: int, **config) -> nn.Module:
    """Build model ``name`` for upscaling factor ``scale`` with ``config`` overriding defaults."""
    spec = get_spec(name)
    if scale not in spec.scales:
        raise ValueError(
            f"model {name!r} supports scales {', '.join(map(str, spec.scales))}, not {scale}"
        )
    return spec.builder(scale=scale, **{**spec.defaults, **config})


def available() -> list[ModelSpec]:
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]
