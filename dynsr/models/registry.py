"""One registry for every upscaler, so commands treat all models alike by name.

A model is an ``nn.Module`` that maps an RGB (or grayscale) LR batch (B, C, h, w) in [0, 1]
to the SR batch (B, C, s·h, s·w). ``create(name, scale=s, **config)`` builds it; configs are
plain keyword arguments (from dicts or YAML), never subclasses.

A model class that can be exported to ONNX registers its adapter beside it with
:func:`register_onnx`: the exporter (:mod:`dynsr.export`) only asks :func:`onnx_adapter` and
knows no model's internals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = [
    "ModelSpec",
    "OnnxAdapter",
    "available",
    "create",
    "get_spec",
    "onnx_adapter",
    "register",
    "register_onnx",
]


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows of a model name.

    ``needs_degradation``: the model is non-blind (UDVD): its forward takes ``blur=`` and
    ``noise=`` keyword arguments describing how the LR image was made.
    ``task``: ``"upscale"`` (LR image → SR image, every command's models) or
    ``"estimate-degradation"`` (LR image → UDVD's degradation map, what ``--blind`` runs).
    ``cpu_precision``: the precision this model is fastest in on every CPU, where that is
    not the general choice (bf16 where the CPU has it): DyConvSR's fused fp32 path beats its
    bf16 autocast even with AMX, and is exact.
    """

    name: str
    builder: Callable[..., nn.Module]
    scales: tuple[int, ...]
    summary: str
    paper: str = ""
    needs_degradation: bool = False
    defaults: dict = field(default_factory=dict)
    task: str = "upscale"
    cpu_precision: str | None = None


_REGISTRY: dict[str, ModelSpec] = {}


def register(
    name: str,
    scales: tuple[int, ...],
    summary: str,
    paper: str = "",
    needs_degradation: bool = False,
    task: str = "upscale",
    cpu_precision: str | None = None,
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
                                    needs_degradation, defaults, task, cpu_precision)
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


def available(task: str | None = "upscale") -> list[ModelSpec]:
    """The registered models of ``task`` (``None``: all), by name."""
    return [_REGISTRY[k] for k in sorted(_REGISTRY) if task is None or _REGISTRY[k].task == task]


# --------------------------------------------------------------------------------------------
# ONNX adapters


def _lr_only(lr: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (lr,)


@dataclass(frozen=True)
class OnnxAdapter:
    """How one model instance goes to ONNX.

    ``graph``: a module whose forward traces to a size-independent graph (a copy of the model
    with its untraceable pieces replaced, :mod:`dynsr.ops.traceable`); it takes the tensors
    named ``input_names`` and returns the SR batch. ``inputs(lr)``: the graph's inputs for an
    LR batch (e.g. UDVD adds a degradation map). ``reference(*inputs)``: what the PyTorch
    model gives for them, float32, which the ONNX graph is verified against.
    """

    graph: nn.Module
    reference: Callable[..., torch.Tensor]
    input_names: tuple[str, ...] = ("lr",)
    inputs: Callable[[torch.Tensor], tuple[torch.Tensor, ...]] = _lr_only


_ONNX: dict[type, Callable[[nn.Module], OnnxAdapter]] = {}


def register_onnx(
    model_class: type,
) -> Callable[[Callable[[nn.Module], OnnxAdapter]], Callable[[nn.Module], OnnxAdapter]]:
    """Decorator adding ``f(model) -> OnnxAdapter`` for instances of ``model_class``. ``f``
    gets a float32 CPU model in eval mode, which stays the reference: the graph is built on a
    copy of it."""

    def add(factory: Callable[[nn.Module], OnnxAdapter]) -> Callable[[nn.Module], OnnxAdapter]:
        if model_class in _ONNX:
            raise ValueError(f"ONNX adapter for {model_class.__name__} registered twice")
        _ONNX[model_class] = factory
        return factory

    return add


def onnx_adapter(model: nn.Module) -> OnnxAdapter:
    """The ONNX adapter of ``model`` (its class's, or the nearest base class's)."""
    for cls in type(model).__mro__:
        if cls in _ONNX:
            return _ONNX[cls](model)
    raise ValueError(f"ONNX export does not support {type(model).__name__}")
