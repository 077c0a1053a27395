"""ONNX export: ``to_onnx(model_or_name, scale, path)`` / ``dynsr export NAME --scale S -o F``.

Every exported graph has dynamic batch, height and width. Inputs and outputs, float32:

=================  =============================================  ============================
family             inputs                                         output
=================  =============================================  ============================
bicubic, ddet*,    ``lr`` (N, 3, H, W) in [0, 1]                  ``sr`` (N, 3, s·H, s·W)
kpn7*, dyconvsr
udvd, udvd-lite    ``lr`` (N, 3, H, W) and ``degradation_map``    ``sr`` (N, 3, s·H, s·W)
                   (N, 16, H, W)
=================  =============================================  ============================

UDVD is non-blind: its degradation map is an input. Build it with
:func:`dynsr.models.udvd.build_degradation_map` (``blur=`` / ``noise=`` as
:meth:`UDVD.forward` takes them) or :func:`dynsr.degrade.degradation_map` directly, e.g.
``degradation_map(width=1.3, noise_sigma=15.0, size=(H, W))`` (a (1, 16, H, W) float32 map;
give it the batch size of ``lr``). Outside Python the map is 15 PCA coefficients of the blur
kernel (constant over the image for uniform blur), then ``sigma / 255``.

The PyTorch models contain code the ONNX tracer would record with the example's sizes baked
in: the dynamic-kernel ops (autograd Functions with size-dependent row bands and ``out=``
buffers), MATLAB ``imresize`` (weights computed from the input length), Python branches on
``h % 2`` / ``h % 4`` for padding, and DyConvSR's per-sample grouped convolution (groups =
batch). The export therefore traces a copy of the model in which those pieces are replaced by
equivalent, size-independent formulations (below); the original model is the reference the
ONNX graph is verified against with onnxruntime at two input sizes.

* dynamic filter / upsample: a loop over taps of (constant-offset slice of the zero-padded
  image) × (kernel channel), summed in the same tap order;
* integer-scale MATLAB bicubic upscaling (bicubic, DDet's pre-upscale): polyphase. For an
  integer scale s the taps and weights of output pixel i·s + a depend only on a, so each phase
  is a fixed 1-D filter over the symmetrically padded input (the padding is an index gather
  built from the input length at run time); rows first, then columns, as MATLAB; the s²
  phases are interleaved with a pixel shuffle;
* padding to a multiple of 2 (DyConvSR) or 4 (DDet's trunk): replicate-pad by the largest
  amount, then slice to the rounded-up length computed from the run-time shape;
* DyConvSR's attention-mixed conv: ``conv(x, Σ_k π_k W_k) = Σ_k π_k conv(x, W_k)``: one
  conv with all banks, then the attention-weighted sum (batch-independent graph).

Minimum LR size: 3×3 for dyconvsr (its high-frequency branch reflect-pads by 2), 1×1 else.

``torch.onnx.export`` runs with ``dynamo=False`` (the TorchScript tracer with
``dynamic_axes``): torch.export would have to guard on the models' Python branches on sizes
(``if h % 2``, the batch-1 fast path of the dynamic conv), while the tracer records one path,
made size-independent by the replacements above.
"""

from __future__ import annotations

import copy
import os
import types
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dynsr.models.bicubic import Bicubic
from dynsr.models.ddet import TRUNK_FACTOR, DDet, DDetCore
from dynsr.models.dyconvsr import DyConvSR
from dynsr.models.udvd import UDVD, DynamicBlock
from dynsr.ops.dynamic_conv import AttentionMixedConv2d
from dynsr.ops.resize import resize_weights

__all__ = [
    "DEFAULT_OPSET",
    "ExportResult",
    "onnx_available",
    "sample_image",
    "to_onnx",
    "traceable_graph",
    "verify_onnx",
]

DEFAULT_OPSET = 17
# Verification tolerance (max abs difference on [0, 1] images) and sizes (LR, H × W): two
# different sizes, one of them odd, prove the graph's height and width are not baked in.
TOLERANCE = 1e-4
VERIFY_SIZES = ((24, 20), (31, 27))


# --------------------------------------------------------------------------------------------
# size-independent replacements for the untraceable pieces


def _stop(offset: int, reach: int) -> int | None:
    """Slice end for a window starting at ``offset`` of a tensor padded by ``reach`` in total:
    negative (counted from the end) so it holds for every length."""
    return None if offset == reach else offset - reach


def _traceable_dynamic(image: torch.Tensor, kernels: torch.Tensor, k: int,
                       subpixels: int) -> list[torch.Tensor]:
    """Σ_t K[:, t·S + s] · shift_t(image) for each sub-pixel s (shared kernels), as in
    :mod:`dynsr.ops.dynamic`; the tap order matches its accumulation order."""
    p = k // 2
    padded = F.pad(image, (p, p, p, p))
    outs: list[torch.Tensor | None] = [None] * subpixels
    for u in range(k):
        for v in range(k):
            view = padded[:, :, u:_stop(u, 2 * p), v:_stop(v, 2 * p)]
            t = u * k + v
            for s in range(subpixels):
                c = t * subpixels + s
                term = view * kernels[:, c:c + 1]
                outs[s] = term if outs[s] is None else outs[s] + term
    return outs  # type: ignore[return-value]


def _shuffle_phases(phases: Sequence[torch.Tensor], r: int) -> torch.Tensor:
    """Phase planes (B, C, H, W), index a·r + q, → (B, C, rH, rW) with phase (a, q) at
    pixel (i·r + a, j·r + q). Channels are gathered colour-major for pixel_shuffle by
    concatenation, so the graph has no shape-dependent reshape."""
    channels = phases[0].shape[1]
    planes = [phase[:, c:c + 1] for c in range(channels) for phase in phases]
    return F.pixel_shuffle(torch.cat(planes, dim=1), r)


def _traceable_filter(image: torch.Tensor, kernels: torch.Tensor, k: int) -> torch.Tensor:
    return _traceable_dynamic(image, kernels, k, 1)[0]


def _traceable_upsample(image: torch.Tensor, kernels: torch.Tensor, k: int,
                        r: int) -> torch.Tensor:
    return _shuffle_phases(_traceable_dynamic(image, kernels, k, r * r), r)


def _bicubic_phases(scale: int) -> list[tuple[list[int], list[float]]]:
    """(tap offsets, weights) of MATLAB bicubic ×scale for each output phase a, read from
    :func:`resize_weights` far from the borders (so no mirroring), in its tap order."""
    length = 16
    idx, weights = resize_weights(length, length * scale, float(scale), dtype=torch.float64)
    centre = length // 2
    rows = [centre * scale + a for a in range(scale)]
    return [((idx[r] - centre).tolist(), weights[r].tolist()) for r in rows]


def _mirror_pad(x: torch.Tensor, dim: int, reach: int) -> torch.Tensor:
    """MATLAB's symmetric padding ([..., x1, x0 | x0, x1, ...]) by ``reach`` along dim, as
    an index gather computed from the run-time length (works for any length ≥ 1)."""
    n = x.shape[dim]
    idx = torch.arange(-reach, n + reach, device=x.device)
    period = 2 * n
    idx = torch.remainder(idx, period)
    idx = torch.where(idx >= n, period - 1 - idx, idx)
    return x.index_select(dim, idx)


def _traceable_upscale(x: torch.Tensor, scale: int) -> torch.Tensor:
    """MATLAB ``imresize(x, scale, 'bicubic')`` for an integer scale ≥ 2, size-independent."""
    phases = _bicubic_phases(scale)
    reach = max(max(abs(o) for o in offsets) for offsets, _ in phases)
    padded = _mirror_pad(_mirror_pad(x, 2, reach), 3, reach)

    def filter_dim(y: torch.Tensor, dim: int, offsets: list[int],
                   weights: list[float]) -> torch.Tensor:
        out = None
        for offset, weight in zip(offsets, weights, strict=True):
            start = reach + offset
            window = slice(start, _stop(start, 2 * reach))
            view = y[:, :, window] if dim == 2 else y[:, :, :, window]
            # float32 weights, as imresize uses the input dtype's weights.
            term = view * torch.tensor(weight, dtype=y.dtype)
            out = term if out is None else out + term
        return out  # type: ignore[return-value]

    rows = [filter_dim(padded, 2, o, w) for o, w in phases]  # MATLAB: rows first
    planes = [filter_dim(row, 3, o, w) for row in rows for o, w in phases]
    return _shuffle_phases(planes, scale)


def _round_up(n: torch.Tensor | int, multiple: int) -> torch.Tensor | int:
    return (n + multiple - 1) // multiple * multiple


def _replicate_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad bottom/right to a multiple: pad by the most, slice back (run-time size)."""
    h, w = x.shape[-2], x.shape[-1]
    padded = F.pad(x, (0, multiple - 1, 0, multiple - 1), mode="replicate")
    return padded[:, :, :_round_up(h, multiple), :_round_up(w, multiple)]


class _BankSumConv(nn.Module):
    """AttentionMixedConv2d as one conv over all banks + an attention-weighted sum."""

    def __init__(self, layer: AttentionMixedConv2d) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor, attention: torch.Tensor | None = None) -> torch.Tensor:
        layer = self.layer
        k, c_out = layer.num_kernels, layer.out_channels
        y = F.conv2d(x, layer.weight, None, layer.stride, layer.padding, layer.dilation)
        if attention is None:
            attention = layer.attention(x)  # (B, K)
        out = None
        for bank in range(k):
            a = attention[:, bank:bank + 1, None, None]
            term = a * y[:, bank * c_out:(bank + 1) * c_out]
            if layer.bias is not None:
                term = term + a * layer.bias[bank][None, :, None, None]
            out = term if out is None else out + term
        return out  # type: ignore[return-value]


def _ddet_predict_kernels(core: DDetCore, x: torch.Tensor) -> list[torch.Tensor]:
    # DDetCore.predict_kernels with the multiple-of-4 padding made size-independent.
    h, w = x.shape[-2], x.shape[-1]
    padded = _replicate_to_multiple(x, TRUNK_FACTOR)
    first = core.trunk_in(core.unshuffle(padded))
    trunk = core.trunk_out(core.blocks(first)) + first
    features = core.predictor(core.shuffle(trunk)[:, :, :h, :w])
    return [head(features) for head in core.kernel_heads]


def _ddet_aggregate(core: DDetCore, image: torch.Tensor,
                    kernels: Sequence[torch.Tensor]) -> torch.Tensor:
    out = None
    for kernel, size in zip(kernels, core.kernel_sizes, strict=True):
        term = _traceable_filter(image, kernel, size)
        out = term if out is None else out + term
    return out  # type: ignore[return-value]


def _udvd_apply_kernels(block: DynamicBlock, image: torch.Tensor,
                        kernels: torch.Tensor) -> torch.Tensor:
    if block.rate == 1:
        return _traceable_filter(image, kernels, block.kernel_size)
    return _traceable_upsample(image, kernels, block.kernel_size, block.rate)


class _BicubicGraph(nn.Module):
    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return _traceable_upscale(lr, self.scale)


class _DDetGraph(nn.Module):
    def __init__(self, model: DDet) -> None:
        super().__init__()
        self.model = model
        core = model.core
        # Instance-level overrides on a private copy: the registered classes stay untouched.
        core.predict_kernels = types.MethodType(_ddet_predict_kernels, core)
        core.aggregate = types.MethodType(_ddet_aggregate, core)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.model.forward_prescaled(_traceable_upscale(lr, self.model.scale))


class _DyConvSRGraph(nn.Module):
    def __init__(self, model: DyConvSR) -> None:
        super().__init__()
        self.model = model
        model.dynamic = _BankSumConv(model.dynamic)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        h, w = lr.shape[-2], lr.shape[-1]
        s = self.model.scale
        # Even sides here, so the model's own (traced-as-constant) padding branch is a no-op;
        # replicate padding + crop is exactly what the model does for odd sides.
        sr = self.model(_replicate_to_multiple(lr, 2))
        return sr[:, :, :s * h, :s * w]


class _UDVDGraph(nn.Module):
    def __init__(self, model: UDVD) -> None:
        super().__init__()
        self.model = model
        for block in model.refinement:
            block.apply_kernels = types.MethodType(_udvd_apply_kernels, block)

    def forward(self, lr: torch.Tensor, dmap: torch.Tensor) -> torch.Tensor:
        return self.model.forward_with_map(lr, dmap)[-1]


def traceable_graph(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval mode, float32) whose forward traces to size-independent ONNX.

    UDVD's graph takes ``(lr, degradation_map)``; every other one ``lr``.
    """
    if isinstance(model, Bicubic):
        return _BicubicGraph(int(model.scale))
    # Contiguous weights: dynsr.load makes them channels_last, which ONNX does not need.
    model = copy.deepcopy(model).float().eval().to(memory_format=torch.contiguous_format)
    if isinstance(model, DDet):
        return _DDetGraph(model)
    if isinstance(model, DyConvSR):
        return _DyConvSRGraph(model)
    if isinstance(model, UDVD):
        return _UDVDGraph(model)
    raise ValueError(f"ONNX export does not support {type(model).__name__}")


# --------------------------------------------------------------------------------------------
# export and verification


@dataclass(frozen=True)
class ExportResult:
    """What :func:`to_onnx` wrote and how it was checked (``max_abs_diff`` per LR size)."""

    path: Path
    input_names: tuple[str, ...]
    opset: int
    max_abs_diff: dict[tuple[int, int], float]


def onnx_available() -> bool:
    """onnx and onnxruntime importable (the ``onnx`` extra)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _inputs(model: nn.Module, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The graph inputs for an LR batch: UDVD also gets a map (width 1.3, noise 15)."""
    if isinstance(model, UDVD):
        from dynsr.models.udvd import build_degradation_map

        return image, build_degradation_map(image, blur=1.3, noise=15.0)
    return (image,)


def _reference(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    with torch.no_grad():
        if isinstance(model, UDVD):
            return model.forward_with_map(*inputs)[-1].float()
        # Bicubic in float64 (as dynsr runs it), compared in float32.
        if isinstance(model, Bicubic):
            return model(inputs[0].double()).float()
        return model(*inputs).float()


def sample_image(height: int, width: int, batch: int = 1) -> torch.Tensor:
    """A real photo crop, float32 (batch, 3, height, width) in [0, 1]: dynsr's bundled copy
    of scikit-image's ``astronaut()`` (later batch entries are shifted crops)."""
    from PIL import Image

    path = Path(__file__).resolve().parent / "examples" / "astronaut.png"
    with Image.open(path) as img:
        array = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    crops = [array[100 + 7 * i:100 + 7 * i + height, 180 + 5 * i:180 + 5 * i + width]
             for i in range(batch)]
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()


def verify_onnx(path: str | os.PathLike[str], model: nn.Module,
                sizes: Sequence[tuple[int, int]] = VERIFY_SIZES,
                images: Callable[[int, int, int], torch.Tensor] | None = None,
                tolerance: float = TOLERANCE) -> dict[tuple[int, int], float]:
    """Run the ONNX file with onnxruntime and the PyTorch model on the same real images at each
    LR size (batch 2 for the first, 1 for the others: the batch is dynamic too); raise
    ``ValueError`` if any max abs difference exceeds ``tolerance``. Returns the differences.

    ``images(height, width, batch)`` gives the LR batches (default :func:`sample_image`)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    # Do not compete with whatever else runs (training) for the cores.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    make = images or sample_image
    model = model.eval()
    diffs: dict[tuple[int, int], float] = {}
    for n, (h, w) in enumerate(sizes):
        image = make(h, w, 2 if n == 0 else 1)
        inputs = _inputs(model, image)
        expected = _reference(model, inputs)
        feed = {name: t.numpy() for name, t in zip(names, inputs, strict=True)}
        (got,) = session.run(None, feed)
        if got.shape != tuple(expected.shape):
            raise ValueError(f"{path}: ONNX output {got.shape} for LR {h}×{w}, PyTorch "
                             f"{tuple(expected.shape)}")
        diffs[(h, w)] = float(np.abs(got - expected.numpy()).max())
        if not diffs[(h, w)] <= tolerance:
            raise ValueError(f"{path}: ONNX differs from PyTorch by {diffs[(h, w)]:.3g} at LR "
                             f"{h}×{w} (tolerance {tolerance:g})")
    return diffs


def _load_model(name: str, scale: int, weights: str | os.PathLike[str] | None) -> nn.Module:
    """The registered model as :func:`dynsr.load` builds it: ``weights`` if given, else the
    shipped ones, else random initialisation (seed 0; ``load`` warns)."""
    from dynsr.api import load

    return load(name, scale, device="cpu", precision="fp32", weights=weights).model


def to_onnx(
    model_or_name: nn.Module | str,
    scale: int,
    path: str | os.PathLike[str],
    *,
    opset: int = DEFAULT_OPSET,
    weights: str | os.PathLike[str] | None = None,
    verify: bool | None = None,
) -> ExportResult:
    """Export a dynsr model to ONNX with dynamic batch, height and width (module doc).

    Args:
        model_or_name: a registered name (built with ``weights``, else the shipped weights,
            else randomly initialised) or a model instance (Bicubic, DDet, DyConvSR, UDVD).
        scale: the upscaling factor (must match an instance's ``scale``).
        path: the ``.onnx`` file to write (written whole, then moved into place).
        opset: ONNX opset (≥ 13).
        verify: compare onnxruntime with PyTorch on real image crops at two LR sizes (max abs
            difference ≤ 1e-4, else ``ValueError``); default: when onnxruntime is installed.
    """
    if isinstance(model_or_name, str):
        model = _load_model(model_or_name, scale, weights)
    else:
        if weights is not None:
            raise ValueError("weights= is for a model given by name")
        model = model_or_name
    if int(getattr(model, "scale", scale)) != scale:
        raise ValueError(f"model scale {model.scale} does not match scale {scale}")
    if opset < 13:
        raise ValueError(f"opset must be ≥ 13, got {opset}")
    if verify and not onnx_available():
        raise ValueError('verify=True needs onnx and onnxruntime: pip install "dynsr[onnx]"')
    # A float32 CPU copy in eval mode: the caller's model (device, dtype, mode) is untouched.
    model = copy.deepcopy(model).cpu().float().eval()
    graph = traceable_graph(model)
    example = _inputs(model, sample_image(*VERIFY_SIZES[0], batch=2))
    example = tuple(t.float() for t in example)
    udvd = isinstance(model, UDVD)
    input_names = ("lr", "degradation_map") if udvd else ("lr",)
    axes = {0: "batch", 2: "height", 3: "width"}
    dynamic_axes = {name: axes for name in input_names}
    dynamic_axes["sr"] = {0: "batch", 2: "out_height", 3: "out_width"}

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # The tracer warns about every shape read turned into a graph value; that is the
            # point here, and verification below checks the result.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message="Constant folding")
            # dynamo=False is deliberate (module doc): torch.export would guard on the
            # models' Python shape branches; silence the legacy exporter's deprecation notes.
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX")
            warnings.filterwarnings("ignore", message="The feature will be removed")
            torch.onnx.export(graph, example, str(tmp), input_names=list(input_names),
                              output_names=["sr"], dynamic_axes=dynamic_axes,
                              opset_version=opset, dynamo=False, do_constant_folding=True)
        diffs: dict[tuple[int, int], float] = {}
        if verify or (verify is None and onnx_available()):
            diffs = verify_onnx(tmp, model)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportResult(path, input_names, opset, diffs)

