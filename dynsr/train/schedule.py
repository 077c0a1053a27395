"""The learning-rate schedule: a pure function of the iteration, so a resumed run needs no
scheduler state."""

from __future__ import annotations

import math

from dynsr.train.config import TrainConfig

__all__ = ["learning_rate"]


def learning_rate(cfg: TrainConfig, iteration: int) -> float:
    """Learning rate of the optimiser step that follows ``iteration`` completed steps.

    Warm-up: ``lr · (i + 1) / warmup`` for the first ``warmup`` steps (never 0). Then
    ``constant``; ``step``: times ``gamma`` for every milestone ≤ i; ``cosine``: from ``lr``
    at the end of the warm-up to ``min_lr`` at the last step (i = iterations - 1).
    """
    if iteration < cfg.warmup:
        return cfg.lr * (iteration + 1) / cfg.warmup
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "step":
        passed = sum(1 for m in cfg.milestones if m <= iteration)
        return cfg.lr * cfg.gamma**passed
    if cfg.schedule == "cosine":
        span = max(cfg.iterations - 1 - cfg.warmup, 1)
        t = min((iteration - cfg.warmup) / span, 1.0)
        return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))
    raise ValueError(f"unknown schedule {cfg.schedule!r}")
