"""Kernel access for the dynamic-kernel tap loops (:mod:`dynsr.ops.dynamic`): the
accumulation dtype, row bands, tap-major views of the kernels and the casts between the
kernels' dtype and the accumulation's."""

from __future__ import annotations

import torch

__all__ = ["TapCast", "TapMajorBands", "accumulation_dtype", "row_bands"]

# Byte budget of the tap-major scratch for pixel-major (channels_last) kernels, transposed one
# band of rows at a time. Each band costs k² more op launches (~8 µs each on 2 threads), so
# bands should be few and large: 16 MB gives 4 bands at 512×512, k=7.
SCRATCH_BYTES = 16 << 20


def accumulation_dtype(*dtypes: torch.dtype) -> tuple[torch.dtype, torch.dtype]:
    """(promoted result dtype, accumulation dtype)."""
    out = dtypes[0]
    for d in dtypes[1:]:
        out = torch.promote_types(out, d)
    acc = torch.float32 if out in (torch.float16, torch.bfloat16) else out
    return out, acc


def w_contiguous(t: torch.Tensor) -> bool:
    # Tap planes t[:, ch] are usable as they are when W has unit stride (contiguous tensors,
    # channel slices of them).
    return t.shape[-1] == 1 or t.stride(-1) == 1


def pixel_major(t: torch.Tensor) -> bool:
    # channels_last-like: every pixel's kernel channels adjacent, pixels row-major.
    b, ch, h, w = t.shape
    return t.stride(1) == 1 and t.stride(3) == ch and t.stride(2) == w * ch


def row_bands(t: torch.Tensor) -> list[tuple[int, int]]:
    """Row bands for the tap loop: the whole image when t's tap planes are usable as they are,
    else balanced bands whose tap-major copy fits in SCRATCH_BYTES."""
    b, ch, h, w = t.shape
    if w_contiguous(t):
        return [(0, h)]
    row_bytes = max(1, b * ch * w * t.element_size())
    count = max(1, -(-h * row_bytes // SCRATCH_BYTES))
    rows = -(-h // count)
    return [(r0, min(h, r0 + rows)) for r0 in range(0, h, rows)]


class TapMajorBands:
    """Row bands of a (B, ch, H, W) kernel-shaped tensor with W-contiguous channel planes.

    Reading (``src`` given): ``band`` returns the band as a view when its planes are already
    W-contiguous (or ``any_layout``), else transposes it into a reused scratch.
    Writing (``src`` None): ``result`` is allocated like ``like`` (dtype, memory format);
    ``band`` returns a view of it or a scratch band that ``commit`` transposes into place.
    """

    def __init__(
        self,
        like: torch.Tensor,
        bands: list[tuple[int, int]],
        device: torch.device,
        src: torch.Tensor | None = None,
        any_layout: bool = False,
    ) -> None:
        self.src = src
        self.result = torch.empty_like(like, device=device) if src is None else None
        self.target = src if src is not None else self.result
        self.direct = any_layout or w_contiguous(self.target)
        if not self.direct:
            rows = max(r1 - r0 for r0, r1 in bands)
            b, ch, _, w = like.shape
            self.scratch = torch.empty(b * ch * rows * w, dtype=like.dtype, device=device)

    def _pixel_rows(self, i: int, r0: int, r1: int) -> torch.Tensor:
        # Batch item i's pixels r0..r1 as an (n, ch) matrix (a view: the tensor is pixel-major).
        t = self.target
        _, ch, h, w = t.shape
        return t[i].permute(1, 2, 0).reshape(h * w, ch)[r0 * w : r1 * w]

    def band(self, r0: int, r1: int) -> torch.Tensor:
        t = self.target
        if self.direct:
            return t[:, :, r0:r1]
        b, ch, _, w = t.shape
        n = (r1 - r0) * w
        out = self.scratch[: b * ch * n].view(b, ch, n)
        if self.src is not None:
            if pixel_major(t):
                # 2-D (n, ch) -> (ch, n) copies take torch's blocked transpose, several times
                # faster than a generic strided 4-D copy.
                for i in range(b):
                    out[i].copy_(self._pixel_rows(i, r0, r1).t())
            else:
                out.view(b, ch, r1 - r0, w).copy_(t[:, :, r0:r1])
        return out.view(b, ch, r1 - r0, w)

    def commit(self, r0: int, r1: int) -> None:
        if self.direct or self.src is not None:
            return
        t = self.target
        b, ch, _, w = t.shape
        n = (r1 - r0) * w
        band = self.scratch[: b * ch * n].view(b, ch, n)
        if pixel_major(t):
            for i in range(b):
                self._pixel_rows(i, r0, r1).copy_(band[i].t())
        else:
            t[:, :, r0:r1].copy_(band.view(b, ch, r1 - r0, w))


class TapCast:
    """Hands out tap planes in the accumulation dtype through one reused buffer.

    Mixed-dtype addcmul_ on CPU would allocate a converted copy of the tap every call.
    """

    def __init__(self, acc: torch.dtype) -> None:
        self.acc = acc
        self.buf: torch.Tensor | None = None

    def _buffer(self, like: torch.Tensor) -> torch.Tensor:
        shape = tuple(like.shape)
        if self.buf is None or self.buf.numel() < like.numel():
            self.buf = torch.empty(like.numel(), dtype=self.acc, device=like.device)
        return self.buf[: like.numel()].view(shape)

    def read(self, plane: torch.Tensor) -> torch.Tensor:
        if plane.dtype == self.acc:
            return plane
        return self._buffer(plane).copy_(plane)

    def target(self, plane: torch.Tensor) -> torch.Tensor:
        """Where to compute a plane that is then stored with ``store``."""
        return plane if plane.dtype == self.acc else self._buffer(plane)

    @staticmethod
    def store(plane: torch.Tensor, computed: torch.Tensor) -> None:
        if computed is not plane:
            plane.copy_(computed)
