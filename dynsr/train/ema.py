"""The exponential moving average of a model's weights, as training keeps it."""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """Exponential moving average of a model's parameters: ``e ← d·e + (1 − d)·p`` after
    every step, buffers copied (they hold settings such as DyConvSR's temperature, not
    statistics to average).

    ``d = min(decay, (1 + n) / (10 + n))`` at step n (TensorFlow's ExponentialMovingAverage
    with ``num_updates``): early on the average follows the training weights closely instead of
    keeping the random initialisation for thousands of steps (0.999^1000 = 37 %); ``decay``
    is reached after about 10 / (1 − decay) steps.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Average in ``model`` after optimiser step ``step`` (0 for the first)."""
        weight = 1.0 - self.decay_at(step)
        for ema_p, p in zip(self.module.parameters(), model.parameters(), strict=True):
            ema_p.lerp_(p.detach(), weight)
        for ema_b, b in zip(self.module.buffers(), model.buffers(), strict=True):
            ema_b.copy_(b)
