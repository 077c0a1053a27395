"""The Python API: ``dynsr.load(name, scale)`` → an :class:`Upscaler` with ``.upscale(image)``.

``upscale`` returns the kind of image it is given:

=====================================  ==================================================
input                                  output
=====================================  ==================================================
path (``str`` / ``PathLike``)          :class:`UpscaledImage` (float planes + bit depth,
                                       ICC, EXIF of the file); ``.save(path)`` writes it
``PIL.Image.Image``                    ``PIL.Image.Image`` of the same mode (P/CMYK/… →
                                       RGB or RGBA), ICC profile and EXIF bytes kept
NumPy (H, W) or (H, W, C), C = 1–4     same dtype and layout; uint8/uint16 rounded,
                                       floats taken in [0, 1] and clamped to it
tensor (C, H, W) or (B, C, H, W) float same dtype and device, clamped to [0, 1]
=====================================  ==================================================

A path gives an :class:`UpscaledImage` rather than a PIL image because Pillow cannot hold
16-bit colour; EXIF orientation is applied on reading (the saved EXIF no longer has it). With
two or four channels the last one is alpha.

Alpha: upscaled separately with MATLAB bicubic (it has no texture to invent, and bicubic
does not grow halos); the colour is premultiplied by alpha before the model and divided by
the upscaled alpha after it, so colour hidden under transparent pixels never bleeds into the
edges. Fully opaque alpha skips all this and stays exactly 1.

Defaults: the model is :data:`DEFAULT_MODEL`; the device the first of cuda, mps, cpu that
is available; the precision :func:`default_precision`.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from dynsr.blind import BLIND_SMOOTHING, BlindDegradation, estimate_blind_degradation
from dynsr.hardware import cpu_supports_bf16
from dynsr.io import (
    PNG_COMPRESSION,
    SIXTEEN_BIT_SUFFIXES,
    LoadedImage,
    read_image,
    write_image,
)
from dynsr.malloc import keep_freed_memory
from dynsr.models import create, get_spec
from dynsr.models.bicubic import Bicubic
from dynsr.models.inference import PRECISIONS, prepare_model
from dynsr.upscale.tiling import (
    default_overlap,
    default_tile,
    upscale_tiled,
    upscale_with_retry,
)
from dynsr.upscale.weights import (
    find_weights,
    load_state_dict,
    weights_hint,
    weights_model_config,
)

__all__ = [
    "DEFAULT_MODEL",
    "DEVICES",
    "DEVICE_PATTERN",
    "ImageLike",
    "UpscaledImage",
    "Upscaler",
    "default_precision",
    "load",
    "resolve_device",
    "upscale_in_memory",
    "upscale_with_alpha",
]

#: The model used when none is named: DyConvSR ships weights for x2, x3 and x4, beats bicubic
#: by 0.7-1.8 dB on Set5 and Set14, and upscales a 24-megapixel photo x2 in 5.4 s on a 2-core
#: CPU (docs/results.md).
DEFAULT_MODEL = "dyconvsr"
DEVICES = ("auto", "cpu", "cuda", "mps")  # and cuda:N
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
#: What :meth:`Upscaler.upscale` accepts (and returns the same kind of).
ImageLike = str | os.PathLike | Image.Image | np.ndarray | torch.Tensor
#: Colour (C, h, w) and optional alpha (1, h, w) in [0, 1] → their SR planes (float32, CPU).
PlanePair = tuple[torch.Tensor, torch.Tensor | None]
PlanesFn = Callable[[torch.Tensor, torch.Tensor | None], PlanePair]
#: A degradation description for UDVD: a width, a kernel tensor or per-pixel maps.
Condition = float | torch.Tensor | None
# Upscaled alpha below this is treated as fully transparent when un-premultiplying.
_ALPHA_EPS = 1e-3


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"``: cuda, else mps, else cpu; a named device (``cpu``, ``cuda``,
    ``cuda:N``, ``mps``) must be available. Anything else is a ``ValueError``."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if not isinstance(device, torch.device) and not DEVICE_PATTERN.fullmatch(str(device)):
        raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps, got {device!r}")
    device = torch.device(device)
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps, got {device}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device}: CUDA is not available on this machine")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"device {device}: this machine has {count} CUDA "
                             f"device{'s' if count != 1 else ''} (cuda:0 to cuda:{count - 1})")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device mps: MPS is not available on this machine")
    return device


def default_precision(device: torch.device, name: str | None = None) -> str:
    """bf16 on CPUs with native bf16 and on CUDA GPUs that support it, else fp32; on the
    CPU, model ``name``'s own ``cpu_precision`` where it has one (DyConvSR: fp32).

    bf16 has fp32's range (no overflow to inf/NaN, unlike fp16) and was measured within
    0.1 dB of fp32 for every model (models issue); fp16 is only used when asked.
    """
    if device.type == "cpu":
        own = get_spec(name).cpu_precision if name is not None else None
        return own or ("bf16" if cpu_supports_bf16() else "fp32")
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "fp32"


@dataclass(frozen=True, eq=False)
class UpscaledImage:
    """An upscaled image file: what :class:`~dynsr.io.LoadedImage` holds, SR-sized."""

    #: (C, H, W), C = 1 or 3: the file's samples (uint8 / uint16 for 8 / 16 bit; what opaque
    #: images get, a quarter or half of the memory of floats) or float32 in [0, 1].
    samples: torch.Tensor
    alpha: torch.Tensor | None  # float32 (1, H, W) in [0, 1]
    bit_depth: int
    icc_profile: bytes | None
    exif: bytes | None
    source: Path | None = None

    @property
    def pixels(self) -> torch.Tensor:
        """float32 (C, H, W) in [0, 1] (a new tensor when the samples are integers)."""
        if self.samples.is_floating_point():
            return self.samples
        return self.samples.to(torch.float32) / float(2**self.bit_depth - 1)

    def save(self, path: str | os.PathLike[str], *, quality: int = 95,
             png_compression: int = PNG_COMPRESSION) -> Path:
        """Write atomically; 16-bit is kept in PNG and TIFF (the formats dynsr writes in 16
        bit). ``quality``: JPEG/WebP/AVIF; ``png_compression``: zlib level 0-9 (lower:
        faster, larger)."""
        path = Path(path)
        bit_depth = self.bit_depth if path.suffix.lower() in SIXTEEN_BIT_SUFFIXES else 8
        return write_image(path, self.samples, self.alpha, bit_depth=bit_depth,
                           icc_profile=self.icc_profile, exif=self.exif, quality=quality,
                           png_compression=png_compression)


class Upscaler:
    """A model ready to upscale images of any size (build it with :func:`load`)."""

    def __init__(
        self,
        model: nn.Module,
        name: str,
        scale: int,
        *,
        device: torch.device,
        precision: str,
        tile: int | None = None,
        overlap: int | None = None,
        trained: bool = False,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        self.model = model
        self.name = name
        self.scale = scale
        self.device = device
        self.precision = precision
        self.tile = tile = default_tile(name) if tile is None else tile
        self.overlap = default_overlap(name) if overlap is None else overlap
        if overlap is None and self.overlap > tile // 2:
            # Small tiles asked for: keep them useful rather than refuse; say what it costs.
            self.overlap = tile // 2
            (notify or warnings.warn)(
                f"tile {tile} is small for {name}: overlap {self.overlap} instead of "
                f"{default_overlap(name)}, so tile seams may differ slightly from an untiled "
                f"run (use --tile {2 * default_overlap(name)} or more for exact tiling)")
        self.trained = trained
        #: The degradation the last blind call estimated (:meth:`estimate_degradation`).
        self.last_degradation: BlindDegradation | None = None
        self.notify = notify or (lambda message: warnings.warn(message, stacklevel=3))
        self.needs_degradation = get_spec(name).needs_degradation
        # Parameter-free models (bicubic) run in float64 on the CPU, exact as MATLAB.
        self.has_parameters = next(model.parameters(), None) is not None
        # The class, not the registry's "bicubic" (x2-x4): x1 models (ddet-real on an image
        # already on the HR grid) keep their alpha as it is.
        self._alpha_model = Bicubic(scale)
        if tile < 1 or self.overlap < 0 or self.overlap >= tile:
            raise ValueError(f"need tile > overlap >= 0, got tile {tile}, overlap {self.overlap}")

    def __repr__(self) -> str:
        return (f"Upscaler({self.name!r}, scale={self.scale}, device={str(self.device)!r}, "
                f"precision={self.precision!r}, tile={self.tile}, overlap={self.overlap}, "
                f"trained={self.trained})")

    # ----------------------------------------------------------------------------------------
    # public

    def upscale(self, image: ImageLike, *, blur: Condition = None, noise: Condition = None,
                blind: bool | str | BlindDegradation = False,
                blind_smoothing: float | None = BLIND_SMOOTHING,
                blind_correction: int | None = None,
                progress: bool = False) -> ImageLike | UpscaledImage:
        """Upscale ``image`` (path, PIL image, NumPy array or tensor); returns the same kind
        (module doc). ``blur`` / ``noise``: the degradation, for UDVD only (a width, a
        kernel tensor or per-pixel maps on the LR grid; noise on the 0..255 scale).

        ``blind`` (UDVD only, instead of ``blur`` / ``noise``): ``True`` (``"auto"``: the
        learned estimator where its weights ship for the scale, else KernelGAN) or
        ``"learned"`` reads the degradation off the image with the shipped estimator
        (``blind_smoothing``: None for one degradation per image, or the LR-pixel radius of
        local estimates; ``blind_correction``: steps of
        :func:`dynsr.blind.correct_degradation` by this model, None for the default),
        ``"kernelgan"`` runs KernelGAN on it (minutes), or give a ready
        :class:`~dynsr.blind.BlindDegradation`. The estimate used is kept in
        :attr:`last_degradation`."""
        if blind is not False and blind is not None:
            if blur is not None or noise is not None:
                raise ValueError("give blind= or blur=/noise=, not both")
            if not self.needs_degradation:
                raise ValueError(f"blind= estimates the degradation for non-blind models "
                                 f"(udvd, udvd-lite); {self.name} needs none")
            method = "auto" if blind is True else blind
            if isinstance(image, (str, os.PathLike)):
                loaded = read_image(image)
                estimate = self.estimate_degradation(loaded.pixels, method, blind_smoothing,
                                                     correction=blind_correction)
                return self.upscale_loaded(loaded, estimate.conditions(), progress=progress)

            def blind_planes(colour: torch.Tensor, alpha: torch.Tensor | None) -> PlanePair:
                estimate = self.estimate_degradation(colour, method, blind_smoothing,
                                                     correction=blind_correction)
                return self.upscale_planes(colour, alpha, estimate.conditions(),
                                           progress=progress)

            return upscale_in_memory(image, blind_planes)
        conditions = self.conditions(blur, noise)
        if isinstance(image, (str, os.PathLike)):
            return self.upscale_loaded(read_image(image), conditions, progress=progress)
        if _opaque_samples(image):
            # 8/16-bit samples without alpha: straight back to samples, as files are written
            # (upscale_loaded), without a float copy of the result.
            array = image if image.ndim == 3 else image[:, :, None]
            maxval = float(np.iinfo(array.dtype).max)
            samples_in = torch.from_numpy(array if array.flags.writeable else array.copy())
            colour = samples_in.permute(2, 0, 1).to(torch.float32).div_(maxval)
            out_dtype = torch.uint8 if array.dtype == np.uint8 else torch.uint16
            samples = self._run(colour, conditions, progress, out_dtype=out_dtype)
            result = samples.permute(1, 2, 0).contiguous().numpy()
            return result[:, :, 0] if image.ndim == 2 else result

        def planes(colour: torch.Tensor, alpha: torch.Tensor | None) -> PlanePair:
            return self.upscale_planes(colour, alpha, conditions, progress=progress)

        return upscale_in_memory(image, planes)

    def estimate_degradation(self, lr: torch.Tensor, method: str | BlindDegradation = "auto",
                             smoothing: float | None = BLIND_SMOOTHING,
                             **options) -> BlindDegradation:
        """The degradation of one LR image (C, h, w) in [0, 1] at this upscaler's scale
        (:func:`dynsr.blind.estimate_blind_degradation`; ``options``: its keyword arguments;
        the correction, if any, runs this upscaler), kept in :attr:`last_degradation`. A given
        estimate is passed through."""
        if isinstance(method, BlindDegradation):
            estimate = method
        else:
            lr = lr.detach().to("cpu", torch.float32)
            estimate = estimate_blind_degradation(
                lr, self.scale, method, smoothing=smoothing,
                restore=lambda conditions: self._run(lr, conditions, False), **options)
        self.last_degradation = estimate
        return estimate

    def upscale_loaded(self, image: LoadedImage, conditions: dict | None = None, *,
                       progress: bool = False) -> UpscaledImage:
        """Upscale an image read by :func:`dynsr.io.read_image`, keeping its bit depth,
        ICC profile and EXIF. Opaque images come back as integer samples (module doc)."""
        conditions = conditions or {}
        if image.alpha is None or bool((image.alpha >= 1).all()):
            # Straight to the file's sample type: a 24-megapixel photo at x2 then needs 0.29
            # instead of 1.15 GB for its result.
            sample_type = torch.uint16 if image.bit_depth == 16 else torch.uint8
            colour = image.pixels.detach().to("cpu", torch.float32)
            samples = self._run(colour, conditions, progress, out_dtype=sample_type)
            alpha = None if image.alpha is None else torch.ones(1, *samples.shape[-2:])
            return UpscaledImage(samples, alpha, image.bit_depth, image.icc_profile,
                                 image.exif, image.path)
        colour, alpha = self.upscale_planes(image.pixels, image.alpha, conditions,
                                            progress=progress)
        return UpscaledImage(colour, alpha, image.bit_depth, image.icc_profile, image.exif,
                             image.path)

    def upscale_planes(self, colour: torch.Tensor, alpha: torch.Tensor | None,
                       conditions: dict | None = None, *, progress: bool = False
                       ) -> PlanePair:
        """Colour (C, h, w), C = 1 or 3, and optional alpha (1, h, w), floats in [0, 1] →
        the SR planes, float32 on the CPU, clamped to [0, 1]. Alpha: module doc."""
        return upscale_with_alpha(colour, alpha,
                                  lambda x: self._run(x, conditions or {}, progress),
                                  self._run_alpha)

    # ----------------------------------------------------------------------------------------
    # running the model

    def conditions(self, blur: Condition = None, noise: Condition = None) -> dict:
        """The model's keyword arguments for this degradation (empty for blind models)."""
        if not self.needs_degradation:
            if blur is not None or noise is not None:
                raise ValueError(f"blur and noise describe the degradation for non-blind "
                                 f"models (udvd); {self.name} does not take them")
            return {}
        return {"blur": blur, "noise": 0.0 if noise is None else noise}

    def _run(self, lr: torch.Tensor, conditions: dict, progress: bool,
             out_dtype: torch.dtype = torch.float32) -> torch.Tensor:
        precision = self.precision if self.has_parameters else "fp32"
        device = self.device if self.has_parameters else torch.device("cpu")

        def run(tile: int, overlap: int) -> torch.Tensor:
            return upscale_tiled(self.model, lr, self.scale, tile=tile, overlap=overlap,
                                 device=device, precision=precision,
                                 channels_last=self.has_parameters, conditions=conditions,
                                 progress=progress, out_dtype=out_dtype)

        empty_cache = torch.cuda.empty_cache if device.type == "cuda" else None
        return upscale_with_retry(run, self.tile, self.overlap, notify=self.notify,
                                  empty_cache=empty_cache)

    def _run_alpha(self, alpha: torch.Tensor) -> torch.Tensor:
        return upscale_tiled(self._alpha_model, alpha, self.scale, tile=self.tile,
                             overlap=min(default_overlap("bicubic"), self.tile // 2))


def upscale_with_alpha(colour: torch.Tensor, alpha: torch.Tensor | None,
                       run_colour: Callable[[torch.Tensor], torch.Tensor],
                       run_alpha: Callable[[torch.Tensor], torch.Tensor]) -> PlanePair:
    """SR planes of colour (C, h, w) and optional alpha (1, h, w), floats in [0, 1], clamped
    to [0, 1]: colour premultiplied by a non-opaque alpha (module doc). ``run_colour`` and
    ``run_alpha`` upscale one float32 CPU plane stack each."""
    colour = colour.detach().to("cpu", torch.float32)
    if alpha is None:
        return run_colour(colour).clamp_(0, 1), None
    alpha = alpha.detach().to("cpu", torch.float32)
    if bool((alpha >= 1).all()):
        sr = run_colour(colour).clamp_(0, 1)
        return sr, torch.ones(1, *sr.shape[-2:])
    premultiplied = run_colour(colour * alpha)
    alpha_sr = run_alpha(alpha)
    # Divide by the unclamped alpha: bicubic overshoots (ringing) alike in both planes.
    visible = alpha_sr > _ALPHA_EPS
    sr = torch.where(visible, premultiplied / alpha_sr.clamp_min(_ALPHA_EPS), 0.0)
    return sr.clamp_(0, 1), alpha_sr.clamp_(0, 1)


def _opaque_samples(image: object) -> bool:
    """A uint8/uint16 NumPy image with 1 or 3 channels (no alpha)."""
    return (isinstance(image, np.ndarray) and image.dtype in (np.uint8, np.uint16)
            and (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3))))


def upscale_in_memory(image: Image.Image | np.ndarray | torch.Tensor,
                      planes: PlanesFn) -> Image.Image | np.ndarray | torch.Tensor:
    """Upscale a PIL image, NumPy array or tensor with ``planes`` (colour, alpha → SR planes);
    returns the same kind (module doc)."""
    if isinstance(image, Image.Image):
        return _upscale_pil(image, planes)
    if isinstance(image, np.ndarray):
        return _upscale_numpy(image, planes)
    if isinstance(image, torch.Tensor):
        return _upscale_tensor(image, planes)
    raise TypeError(f"cannot upscale a {type(image).__name__}: give a path, a PIL image, "
                    "a NumPy array or a tensor")


def _upscale_pil(image: Image.Image, planes: PlanesFn) -> Image.Image:
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        array = np.asarray(image).astype(np.uint16)
    elif image.mode in ("L", "LA", "RGB", "RGBA"):
        array = np.asarray(image)
    elif image.mode in ("I", "F"):
        raise ValueError(f"PIL mode {image.mode} (32-bit) is not supported: convert to "
                         "L, I;16, RGB or RGBA")
    else:  # 1, P, PA, CMYK, YCbCr, ...: to the 8-bit mode that keeps any transparency
        has_alpha = "transparency" in image.info or image.mode in ("PA", "La", "RGBa")
        array = np.asarray(image.convert("RGBA" if has_alpha else "RGB"))
    result = Image.fromarray(_upscale_numpy(array, planes))
    for key in ("icc_profile", "exif"):
        if image.info.get(key):
            result.info[key] = image.info[key]
    return result


def _upscale_numpy(array: np.ndarray, planes: PlanesFn) -> np.ndarray:
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 2, 3, 4)):
        raise ValueError(f"expected an (H, W) or (H, W, C) array with C = 1 to 4, got "
                         f"{array.shape}")
    if array.dtype == np.uint8 or array.dtype == np.uint16:
        maxval = float(np.iinfo(array.dtype).max)
    elif np.issubdtype(array.dtype, np.floating):
        maxval = 1.0
    else:
        raise ValueError(f"array dtype must be uint8, uint16 or float, got {array.dtype}")
    chw = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32) / maxval)
    chw = chw[None] if array.ndim == 2 else chw.permute(2, 0, 1)
    sr = _upscale_channels(chw, planes)
    out = sr.permute(1, 2, 0).numpy()
    out = out[..., 0] if array.ndim == 2 else out
    if maxval == 1.0:
        return out.astype(array.dtype)
    # MATLAB im2uint8/im2uint16 rounding, as dynsr.io writes files.
    return np.floor(out.astype(np.float64) * maxval + 0.5).astype(array.dtype)


def _upscale_tensor(tensor: torch.Tensor, planes: PlanesFn) -> torch.Tensor:
    if not tensor.is_floating_point() or tensor.dim() not in (3, 4):
        raise ValueError(f"expected a float (C, H, W) or (B, C, H, W) tensor, got "
                         f"{tensor.dtype} of shape {tuple(tensor.shape)}")
    batch = tensor if tensor.dim() == 4 else tensor[None]
    # One image at a time: tiles are cut per image, so memory does not grow with B.
    out = torch.stack([_upscale_channels(image, planes) for image in batch])
    out = out.to(tensor.device, tensor.dtype)
    return out if tensor.dim() == 4 else out[0]


def _upscale_channels(chw: torch.Tensor, planes: PlanesFn) -> torch.Tensor:
    """(C, h, w) with C = 1–4 (2 and 4: last is alpha) → float32 (C, s·h, s·w)."""
    channels = chw.shape[0]
    if channels not in (1, 2, 3, 4):
        raise ValueError(f"images have 1 to 4 channels, got {channels}")
    has_alpha = channels in (2, 4)
    colour = chw[:-1] if has_alpha else chw
    alpha = chw[-1:] if has_alpha else None
    colour_sr, alpha_sr = planes(colour, alpha)
    return colour_sr if alpha_sr is None else torch.cat([colour_sr, alpha_sr])


def load(
    name: str | None = None,
    scale: int = 2,
    *,
    device: str | torch.device | None = None,
    precision: str | None = None,
    weights: str | os.PathLike[str] | None = None,
    weights_dir: str | os.PathLike[str] | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    notify: Callable[[str], None] | None = None,
) -> Upscaler:
    """An :class:`Upscaler` for model ``name`` (default :data:`DEFAULT_MODEL`) at ``scale``.

    Weights: the file ``weights`` if given (safetensors), else the shipped ones listed in the
    weights manifest (checked against their sha256; see :mod:`dynsr.upscale.weights`). A
    learned model without weights runs randomly initialised (seed 0, so runs agree) and
    ``notify`` (default: ``warnings.warn``) is told so. ``device``: "auto" (default), "cpu",
    "cuda", "mps". ``precision``: "fp32", "bf16", "fp16" (not on the CPU); default
    :func:`default_precision`. ``tile`` / ``overlap``: LR pixels; the default tile is the
    model's (:func:`dynsr.upscale.default_tile`: 384, 1024 for DyConvSR), the default overlap
    makes tiling exact for the model (:func:`dynsr.upscale.default_overlap`).

    On the CPU this also has glibc keep freed memory for reuse, for the whole process, as
    the ``dynsr`` commands do (:func:`dynsr.malloc.keep_freed_memory`;
    ``DYNSR_KEEP_FREED_MEMORY=0`` leaves malloc alone): otherwise every call faults in its
    large temporaries afresh, which cost DyConvSR x2 on a 640×360 frame 45 against 31 ms
    (2 threads, AMD EPYC capped to AVX2). The process then keeps its peak memory.
    """
    name = DEFAULT_MODEL if name is None else name
    spec = get_spec(name)
    if spec.task != "upscale":
        raise ValueError(f"{name} does not upscale: it reads the degradation of an LR image "
                         f"for a non-blind model (udvd-lite ... --blind)")
    device = resolve_device(device)
    if device.type == "cpu":
        keep_freed_memory()
    if precision is None:
        precision = default_precision(device, spec.name)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("fp16 is not supported on the CPU (slow and prone to overflow): "
                         "use bf16 or fp32")
    notify = notify or (lambda message: warnings.warn(message, stacklevel=3))
    entry = find_weights(name, scale, weights_dir) if weights is None else None
    config = (entry.config if entry is not None else {}) if weights is None else \
        weights_model_config(weights, spec.name, scale)
    # Seeded so an untrained model gives the same output on every run.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = create(spec.name, scale=scale, **config)
    has_parameters = next(model.parameters(), None) is not None
    trained = not has_parameters
    if weights is not None:
        load_state_dict(model, weights)
        trained = True
    elif entry is not None:
        load_state_dict(model, entry.path, entry.sha256)
        trained = True
    elif has_parameters:
        notify(f"no trained weights for {name} x{scale} yet"
               f"{weights_hint(name, scale, weights_dir)}; using random initialisation "
               f"(the output is not a real upscale; --model bicubic gives one)")
    if not has_parameters:
        precision = "fp32"  # bicubic runs in float64 on the CPU whatever was asked
    model = prepare_model(model, channels_last=has_parameters).to(device)
    return Upscaler(model, name, scale, device=device, precision=precision, tile=tile,
                    overlap=overlap, trained=trained, notify=notify)
