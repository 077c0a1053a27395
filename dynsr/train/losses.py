"""Training losses: pixel losses and UDVD's multistage sum (paper Eq. 4).

Every loss is computed in float32 even when the model ran under bf16 autocast: the mean of
millions of small differences loses digits in bf16's 8-bit mantissa.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from dynsr.models.udvd import multistage_loss
from dynsr.ops.color import rgb_to_y

__all__ = ["LOSSES", "LOSS_CHANNELS", "charbonnier_loss", "pixel_loss", "sr_loss"]

# Charbonnier's epsilon: sqrt(d² + eps²) ≈ |d| once |d| >> 1e-3 (about a quarter of a grey level).
CHARBONNIER_EPS = 1e-3


def charbonnier_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean(sqrt((prediction - target)² + eps²)): L1 that is smooth at zero."""
    return torch.sqrt((prediction - target).square() + CHARBONNIER_EPS**2).mean()


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l1": F.l1_loss,
    "l2": F.mse_loss,
    "charbonnier": charbonnier_loss,
}


LOSS_CHANNELS = ("rgb", "y")


def pixel_loss(name: str,
               channels: str = "rgb") -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss function called ``name`` (``l1``, ``l2``, ``charbonnier``); mean over pixels.

    ``channels="y"``: on the BT.601 studio-range luma / 255 of both RGB images, as DDet's
    release trains. A Y-only model returns its input's chroma beside its own Y; an RGB loss
    would count that chroma error too and pull the Y towards offsetting it."""
    try:
        loss = LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; known: {', '.join(LOSSES)}") from None
    if channels == "rgb":
        return loss
    if channels != "y":
        raise ValueError(f"loss channels must be one of {', '.join(LOSS_CHANNELS)}, "
                         f"got {channels!r}")

    def luma_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return loss(rgb_to_y(prediction) / 255, rgb_to_y(target) / 255)

    return luma_loss


def sr_loss(
    outputs: Sequence[torch.Tensor],
    hr: torch.Tensor,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    multistage: bool = False,
    smaller: str = "bicubic",
) -> torch.Tensor:
    """The training loss of one batch, a float32 scalar.

    ``outputs``: the model's outputs, the SR image last (one element for most models, every
    block's output for UDVD's ``return_all=True``). ``multistage``: sum ``loss`` over all of
    them against their targets (:func:`dynsr.models.udvd.multistage_targets`: HR, or HR
    bicubic-downsampled for outputs smaller than HR, or left out with ``smaller="skip"``);
    otherwise only the last output counts.
    """
    if not outputs:
        raise ValueError("the model returned no output")
    hr = hr.float()
    if multistage:
        return multistage_loss(hr, list(outputs), loss=loss, smaller=smaller)
    sr = outputs[-1]
    if sr.shape != hr.shape:
        raise ValueError(f"SR batch {tuple(sr.shape)} does not match HR {tuple(hr.shape)}")
    return loss(sr.float(), hr)
