"""What a decoder hands over: integer samples, before orientation and scaling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DecodedSamples"]


@dataclass
class DecodedSamples:
    """Integer samples straight from a decoder, before orientation and scaling."""

    colour: np.ndarray  # (H, W, 1 or 3) uint8/uint16
    alpha: np.ndarray | None  # (H, W, 1), same dtype
    bit_depth: int
    mode: str
    icc_profile: bytes | None
    exif: bytes | None
    orientation: int
