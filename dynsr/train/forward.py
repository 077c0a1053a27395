"""The model as training calls it: the call a batch asks for, always a list of outputs."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from dynsr.train.config import Config

__all__ = ["TrainingForward", "resolve_multistage"]


class TrainingForward(nn.Module):
    """``model`` called the way a batch asks for, always returning a list of outputs (SR
    last). A module of its own so that DistributedDataParallel wraps the call actually made
    (``forward_prescaled`` included) and synchronises its gradients."""

    def __init__(self, model: nn.Module, needs_degradation: bool, multistage: bool) -> None:
        super().__init__()
        self.model = model
        self.needs_degradation = needs_degradation
        self.multistage = multistage

    def forward(
        self,
        lr: torch.Tensor,
        prescaled: bool = False,
        blur: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        if prescaled:
            out = self.model.forward_prescaled(lr)
        else:
            kwargs: dict[str, Any] = {}
            if self.needs_degradation:
                kwargs = {"blur": blur, "noise": noise}
            if self.multistage:
                kwargs["return_all"] = True
            out = self.model(lr, **kwargs)
        return list(out) if isinstance(out, list | tuple) else [out]


def _supports_multistage(model: nn.Module) -> bool:
    return "return_all" in inspect.signature(model.forward).parameters


def resolve_multistage(cfg: Config, model: nn.Module) -> bool:
    """Whether the loss compares every output (``train.multistage``: auto = if the model can
    return them)."""
    setting = cfg.train.multistage
    capable = _supports_multistage(model)
    if setting is True and not capable:
        raise ValueError(f"train.multistage: model {cfg.model.name!r} returns only its final "
                         f"output (no return_all); use auto or false")
    return capable if setting == "auto" else bool(setting)
