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
in (size-dependent padding branches, MATLAB ``imresize`` weights, the dynamic-kernel ops'
row bands). Each model therefore registers an ONNX adapter beside it
(:func:`dynsr.models.register_onnx`): a copy of the model whose untraceable pieces are
replaced by size-independent formulations (:mod:`dynsr.ops.traceable`), the graph's inputs,
and the PyTorch reference the ONNX graph is verified against with onnxruntime at two input
sizes. This module knows no model's internals.

Minimum LR size: 3×3 for dyconvsr (its high-frequency branch reflect-pads by 2), 1×1 else.

``torch.onnx.export`` runs with ``dynamo=False`` (the TorchScript tracer with
``dynamic_axes``): torch.export would have to guard on the models' Python branches on sizes
(``if h % 2``, the batch-1 fast path of the dynamic conv), while the tracer records one path,
made size-independent by the replacements above.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dynsr.models import OnnxAdapter, onnx_adapter

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


def traceable_graph(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval mode, float32) whose forward traces to size-independent ONNX
    (its registered adapter's graph). UDVD's graph takes ``(lr, degradation_map)``; every
    other one ``lr``."""
    return onnx_adapter(_float_copy(model)).graph


def _float_copy(model: nn.Module) -> nn.Module:
    # Contiguous weights: dynsr.load makes them channels_last, which ONNX does not need.
    return (copy.deepcopy(model).cpu().float().eval()
            .to(memory_format=torch.contiguous_format))


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


def verify_onnx(path: str | os.PathLike[str], model: nn.Module | OnnxAdapter,
                sizes: Sequence[tuple[int, int]] = VERIFY_SIZES,
                images: Callable[[int, int, int], torch.Tensor] | None = None,
                tolerance: float = TOLERANCE) -> dict[tuple[int, int], float]:
    """Run the ONNX file with onnxruntime and the PyTorch model on the same real images at each
    LR size (batch 2 for the first, 1 for the others: the batch is dynamic too); raise
    ``ValueError`` if any max abs difference exceeds ``tolerance``. Returns the differences.

    ``model``: the PyTorch model (its registered adapter gives the inputs and the reference),
    or the adapter itself. ``images(height, width, batch)`` gives the LR batches (default
    :func:`sample_image`)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    # Do not compete with whatever else runs (training) for the cores.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    make = images or sample_image
    adapter = model if isinstance(model, OnnxAdapter) else onnx_adapter(_float_copy(model))
    diffs: dict[tuple[int, int], float] = {}
    for n, (h, w) in enumerate(sizes):
        image = make(h, w, 2 if n == 0 else 1)
        inputs = adapter.inputs(image)
        with torch.no_grad():
            expected = adapter.reference(*inputs)
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
            else randomly initialised) or a model instance whose class registered an ONNX
            adapter (every dynsr model).
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
    adapter = onnx_adapter(_float_copy(model))
    example = tuple(t.float() for t in adapter.inputs(sample_image(*VERIFY_SIZES[0], batch=2)))
    input_names = adapter.input_names
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
            torch.onnx.export(adapter.graph, example, str(tmp), input_names=list(input_names),
                              output_names=["sr"], dynamic_axes=dynamic_axes,
                              opset_version=opset, dynamo=False, do_constant_folding=True)
        diffs: dict[tuple[int, int], float] = {}
        if verify or (verify is None and onnx_available()):
            diffs = verify_onnx(tmp, adapter)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportResult(path, input_names, opset, diffs)

