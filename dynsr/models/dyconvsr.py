"""DyConvSR: a ~60 K-parameter x2/x3/x4 upscaler built around one dynamic convolution.

Model card
==========

Paper
-----
Tien-Thong Doan and Hoang-Giap Nguyen, "DyConvSR: Lightweight Image Super-Resolution with
Dynamic Convolutions", preprint (Springer LNCS layout, ca. 2024; no venue or arXiv id is
given in the preprint). Authors' code: github.com/doantienthongbku/DyConvSR (called
"DyConvSR-PytorchLightning" in the paper), "the release" below. The dynamic convolution is
Chen et al., "Dynamic Convolution: Attention over Convolution Kernels", CVPR 2020,
arXiv:1912.03458.

Architecture (the paper's Fig. 1, top to bottom; x = LR RGB (B, 3, h, w), s = scale)
-------------------------------------------------------------------------------------
Main branch::

    x ─ pixel-unshuffle 2 (12 ch, h/2 × w/2)
      ─ conv 3×3 12→32                                   ``head``
      ─ dynamic conv 3×3 32→32, K=4 kernels              ``dynamic``
      ─ GELU
      ─ conv 3×3 32→12·s²  (48 at x2)                    ``tail``
      ─ + high-frequency branch
      ─ × spatial attention map                          ``spatial_attention``
      ─ pixel-shuffle 2  (3·s² ch, h × w)
      ─ + repeat-upscaled x (each colour s² times)
      ─ pixel-shuffle s  → (B, 3, s·h, s·w)

High-frequency branch (paper Sec. 3.2, Fig. 2)::

    x − GaussianBlur(5×5, σ=1)(x) ─ pixel-unshuffle 2 ─ conv 3×3 12→12·s² ─ GELU  ``hf_conv``

Spatial attention (CBAM, paper Sec. 3.3): per-pixel channel mean and channel max → 7×7 conv
2→1 without bias → sigmoid → multiply.

Dynamic convolution (Chen et al., Eqs. 1-3): ``y = W̃(x) * x + b̃(x)`` with
``W̃ = Σ_k π_k(x) W_k``, ``b̃ = Σ_k π_k(x) b_k``, ``Σ_k π_k = 1``,
``π(x) = softmax(fc2(ReLU(fc1(GAP(x)))) / T)``, fc1 32→8, fc2 8→4 (1×1 convs), see
:class:`dynsr.ops.dynamic_conv.AttentionMixedConv2d`. The paper's only equation, Eq. (1), is
the FLOP count of a convolution, ``C_in·K²·H·W·C_out``, which motivates working at h/2 × w/2.

Channel counts: the paper's text gives 4 kernels, 48 channels before the first shuffle and
the 7×7 attention; the release gives the rest, which dynsr follows: head 12→32, dynamic
32→32 with attention reduction 4 (hidden 8), tail 32→48, HF conv 12→48, exact GELU.

Parameters: x2 59 982 (paper Table 1: 60 K; the release 59 970, the 12 extra are the
attention MLP biases, see Deviations), x3 83 862, x4 117 294 (the tail and HF convs grow
with s²).

State-dict keys: ``head.*``, ``dynamic.{weight,bias,fc1.*,fc2.*}``, ``tail.*``,
``hf_conv.*``, ``spatial_attention.weight`` and ``attention_temperature`` (the softmax
temperature T, stored so a checkpoint trained with annealing reloads at the temperature it
was trained to). The Gaussian kernel is a non-persistent buffer.

Paper results (x2, PSNR/SSIM on Y, bicubic LR)
----------------------------------------------
Set5 35.98/.9497, Set14 31.57/.9017, BSD100 30.95/.8813, Urban100 28.51/.8798. No x3/x4
results are published.

Training recipe (paper Sec. 4.1)
--------------------------------
DIV2K + Flickr2K (3 450 images) pre-cropped into 300×300 tiles with stride 150 (~323 K
tiles); random 256×256 HR crops, random 90° rotations and horizontal/vertical flips; LR made
online by bicubic downsampling; L1 loss; AdamW β=(0.9, 0.999); batch 64; lr 1e-3 halved
every 20 epochs; 100 epochs; validation on DIV2K valid. The release's code differs in
details: AdamW β2 = 0.9999 and weight decay 1e-5, batch 32 in its config, milestones
20/40/60/80 (the same halving schedule).

Shipped x2 weights (dynsr's CPU recipe)
---------------------------------------
T91 + BSD200, HR 128² in batches of 32, fp32, AdamW lr 1e-3 cosine to 1e-6, EMA 0.999:
140,000 iterations of L1 (``configs/dyconvsr_x2_cpu.yaml``; Set5 35.96 dB), then 12,500 of
an L2 fine-tune at lr 5e-5 (``configs/dyconvsr_x2_cpu_l2.yaml``; Set5 35.99 / 0.9508, Set14
31.94 / 0.9027 against the paper's 35.98 / 0.9497 and 31.57 / 0.9017). The L2 stage is a
training deviation (item 9 below); the network is the paper's.

Attention temperature
---------------------
``temperature_schedule="fixed"`` (default): T = 30 throughout, as the release (which has an
``update_temperature`` method that nothing calls); the paper's numbers come from that code,
so the default reproduces it. ``"anneal"``: Chen et al.'s recipe, T falls linearly from 30 to
1 over the first ``anneal_fraction`` of training (default 0.1: Chen et al. anneal over the
first 10 epochs; DyConvSR trains 100) and stays at 1. The training engine calls
``model.set_progress(done_fraction)`` (a no-op under "fixed", so it may always be called);
``model.set_temperature(t)`` sets T directly under either schedule.

Deviations
----------
From the paper and the release alike:

1. Per-colour skip. The release adds ``torch.cat((x, x, x, x), 1)`` before PyTorch's
   pixel-shuffle, which reads 4 *consecutive* channels per output colour, so red output
   sub-pixels copy R, G, B, R, green copy G, B, R, G, blue copy B, R, G, B. (ABPN's anchor,
   the paper's ref. [7], concatenates copies for TensorFlow's depth_to_space, where colour
   is the fastest index; PyTorch's pixel-shuffle has it slowest.) dynsr repeats each colour
   into its own s² sub-pixels (``repeat_interleave``), i.e. the skip is exactly
   nearest-neighbour upscaling, which is what the paper describes. Weights trained with the
   release's skip do not transfer.
2. x3 and x4. The paper reports x2 only and the release runs at x2 only (it unshuffles by
   the scale and keeps the tail at 48 channels, so other scales fail on channel counts).
   dynsr always unshuffles by 2, gives the tail and HF conv 12·s² channels (3·s²·4),
   shuffles by 2 then by s, and repeats each colour s² times in the skip.
3. Any input size. Pixel-unshuffle by 2 needs even h and w (the release fails otherwise):
   dynsr pads the bottom row / right column by replication to even size and crops the
   output back to s·h × s·w. Even-sized inputs are untouched.
4. Gaussian border handling: reflect padding, as torchvision's ``GaussianBlur`` used by the
   release; on a (padded) side shorter than 3 px, where reflecting 2 px is undefined and the
   release would fail, replicate padding instead. The kernel is a fixed buffer, one per
   channel (depthwise).
5. Mixed precision: the high-frequency difference x − blur(x) is computed with autocast
   off, in the input's dtype, because in bf16 it would be mostly rounding noise; everything
   else follows autocast. (Not an architectural change; the release has no such handling.)

From the release only:

6. Attention MLP biases. dynsr's ``AttentionMixedConv2d`` 1×1 convs carry biases (Chen et
   al.'s MLP; +8 +4 = 12 parameters); the release's have none. Hence 59 982 vs 59 970.
7. Initialisation. The release initialises the kernel banks Kaiming-uniform (a=0), leaves
   the bank biases at ``torch.randn`` (N(0, 1)) and the attention convs Kaiming-normal
   (fan_out); dynsr initialises each bank as an ``nn.Conv2d`` (Kaiming-uniform a=√5, bias
   U(±1/√fan_in)) and the attention convs with PyTorch defaults. Plain convs: PyTorch
   defaults in both.
8. Temperature annealing is offered (off by default) and T is saved in the state dict.

From the paper's training recipe (weights only, not the network):

9. The shipped x2 weights end with an L2 (MSE) stage after the L1 training the paper uses:
   +0.030 dB on Set5 and +0.025 dB on Set14 over the L1 weights, because PSNR is a function
   of the MSE. Also a cosine schedule instead of step decay, and 291 small training images
   instead of DIV2K + Flickr2K (see the recipes' comments).
"""

from __future__ import annotations

import copy
from functools import cache

import torch
import torch.nn.functional as F
from torch import nn

from dynsr.degrade.kernels import isotropic_gaussian
from dynsr.degrade.pipeline import separable_blur
from dynsr.models.registry import OnnxAdapter, register, register_onnx
from dynsr.ops.dynamic_conv import AttentionMixedConv2d, mix_kernel_banks
from dynsr.ops.fused_conv import canonical_channels_last, conv2d_fused, fused_conv_available
from dynsr.ops.traceable import BankSumConv, replicate_to_multiple

__all__ = ["DyConvSR", "dyconvsr"]

RELEASE_TEMPERATURE = 30.0  # the release's fixed softmax temperature, and Chen et al.'s start
FINAL_TEMPERATURE = 1.0  # where Chen et al.'s annealing ends
TEMPERATURE_SCHEDULES = ("fixed", "anneal")

_UNSHUFFLE = 2  # the body always works at half resolution, whatever the scale
_FEATURES = 32
_NUM_KERNELS = 4
_BLUR_SIZE = 5
_BLUR_SIGMA = 1.0
_ATTENTION_SIZE = 7


def _sync_temperature_after_load(module: nn.Module, incompatible_keys: object) -> None:
    # load_state_dict copies the buffer in place; the dynamic conv reads a plain float.
    module.dynamic.temperature = float(module.attention_temperature)


class DyConvSR(nn.Module):
    """DyConvSR upscaler: RGB (B, 3, h, w) in [0, 1] → (B, 3, s·h, s·w); see the module doc.

    Args:
        scale: 2, 3 or 4.
        temperature_schedule: "fixed" (T = 30, the release; default) or "anneal" (30 → 1).
        anneal_fraction: share of training over which "anneal" lowers T, in (0, 1].
    """

    def __init__(
        self, scale: int, temperature_schedule: str = "fixed", anneal_fraction: float = 0.1
    ) -> None:
        super().__init__()
        if scale not in (2, 3, 4):
            raise ValueError(f"DyConvSR supports scales 2, 3, 4, not {scale}")
        if temperature_schedule not in TEMPERATURE_SCHEDULES:
            raise ValueError(
                f"temperature_schedule must be one of {', '.join(TEMPERATURE_SCHEDULES)}, "
                f"got {temperature_schedule!r}"
            )
        if not 0.0 < anneal_fraction <= 1.0:
            raise ValueError(f"anneal_fraction must be in (0, 1], got {anneal_fraction}")
        self.scale = scale
        #: fp32 inference of one image on the CPU takes :meth:`_fused_inference` (equal to
        #: float rounding, ~1.3x faster); False keeps the plain forward (benchmarks).
        self.fused_cpu_inference = True
        self.temperature_schedule = temperature_schedule
        self.anneal_fraction = float(anneal_fraction)

        cells = 3 * _UNSHUFFLE**2  # 12 channels after pixel-unshuffle
        subpixel_features = 3 * scale**2 * _UNSHUFFLE**2  # shuffled by 2, then by s
        self.head = nn.Conv2d(cells, _FEATURES, 3, padding=1)
        self.dynamic = AttentionMixedConv2d(
            _FEATURES, _FEATURES, 3, num_kernels=_NUM_KERNELS, temperature=RELEASE_TEMPERATURE
        )
        self.tail = nn.Conv2d(_FEATURES, subpixel_features, 3, padding=1)
        self.hf_conv = nn.Conv2d(cells, subpixel_features, 3, padding=1)
        self.spatial_attention = nn.Conv2d(
            2, 1, _ATTENTION_SIZE, padding=_ATTENTION_SIZE // 2, bias=False
        )

        blur = isotropic_gaussian(_BLUR_SIZE, _BLUR_SIGMA)
        self.register_buffer("gaussian_kernel", blur.expand(3, 1, -1, -1).clone(),
                             persistent=False)
        self.register_buffer("attention_temperature", torch.tensor(RELEASE_TEMPERATURE))
        self.register_load_state_dict_post_hook(_sync_temperature_after_load)

    # -- temperature -----------------------------------------------------------------------

    @property
    def temperature(self) -> float:
        """The softmax temperature T the dynamic convolution uses now."""
        return self.dynamic.temperature

    def set_temperature(self, temperature: float) -> None:
        """Set T directly (either schedule); it is saved with the state dict."""
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.dynamic.temperature = float(temperature)
        self.attention_temperature.fill_(float(temperature))

    def set_progress(self, fraction: float) -> None:
        """Training hook: ``fraction`` of training done (0 at the start, 1 at the end).

        "anneal": T = 30 → 1 linearly over the first ``anneal_fraction``, then 1.
        "fixed": no-op, so an engine may call it for every model.
        """
        if fraction < 0:
            raise ValueError(f"training progress must be >= 0, got {fraction}")
        if self.temperature_schedule == "fixed":
            return
        done = min(fraction / self.anneal_fraction, 1.0)
        self.set_temperature(RELEASE_TEMPERATURE + (FINAL_TEMPERATURE - RELEASE_TEMPERATURE) * done)

    # -- pieces ----------------------------------------------------------------------------

    def high_frequency(self, x: torch.Tensor) -> torch.Tensor:
        """The paper's Fig. 2: x − GaussianBlur(5×5, σ=1)(x) per channel, in x's dtype.

        Computed with autocast off even under autocast (see Deviations 4 and 5).
        """
        pad = _BLUR_SIZE // 2
        mode = _blur_padding(x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            padded = F.pad(x, (pad, pad, pad, pad), mode=mode)
            blurred = F.conv2d(padded, self.gaussian_kernel.to(x.dtype), groups=3)
            return x - blurred

    def _separable_high_frequency(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`high_frequency` of a channels_last fp32 image with the 5×5 Gaussian as two
        1-D passes (the kernel is the outer product of its row sums; equal to 3e-7), left
        channels_last: 0.8 against 1.2-3.1 ms at 640×360 under an AVX2 cap."""
        mode = _blur_padding(x)
        taps = self.gaussian_kernel[0, 0].sum(dim=1).to(x.dtype)
        return x - separable_blur(x, taps, mode, channels_last=True)

    def _spatial_attention_map(self, features: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat(
            [features.mean(dim=1, keepdim=True), features.amax(dim=1, keepdim=True)], dim=1
        )
        return torch.sigmoid(self.spatial_attention(pooled))

    @staticmethod
    def _pad_to_even(x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % 2 == 0 and w % 2 == 0:
            return x
        return F.pad(x, (0, w % 2, 0, h % 2), mode="replicate")

    def kernel_attention(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 4) attention over the dynamic conv's kernels for LR batch ``x`` (inspection)."""
        cells = F.pixel_unshuffle(self._pad_to_even(x), _UNSHUFFLE)
        return self.dynamic.attention(self.head(cells))

    @torch.no_grad()
    def global_context(self, lr: torch.Tensor, device: torch.device | str = "cpu",
                       band: int = 64) -> dict[str, torch.Tensor]:
        """What a tile needs from the whole image: the dynamic conv's attention.

        The attention pools the head's features over the whole image, so a tile alone would
        mix its kernels differently. This computes the pooled mean of ``lr`` (C, h, w) on the
        CPU, in bands of ``band`` cell rows with a one-row halo (the head is a 3x3 conv), on
        ``device``: the same value as :meth:`forward` on the whole image, without holding the
        whole image's features. Pass the result to :meth:`forward` for every tile.
        """
        x = self._pad_to_even(lr[None].float())
        cells = F.pixel_unshuffle(x, _UNSHUFFLE)
        rows = cells.shape[-2]
        total = torch.zeros(1, _FEATURES, dtype=torch.float64)
        for top in range(0, rows, band):
            start, stop = max(top - 1, 0), min(top + band + 1, rows)
            features = self.head(cells[..., start:stop, :].to(device))
            inner = features[..., top - start:top - start + min(band, rows - top), :]
            total += inner.sum(dim=(-2, -1)).double().cpu()
        mean = (total / (rows * cells.shape[-1])).to(device, torch.float32)
        return {"attention": self.dynamic.attention_from_mean(mean)}

    def forward(self, x: torch.Tensor, attention: torch.Tensor | None = None) -> torch.Tensor:
        """SR of ``x``; ``attention`` (from :meth:`global_context`) for tiles of an image."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"DyConvSR expects an RGB batch (B, 3, h, w), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        x = self._pad_to_even(x)
        if (self.fused_cpu_inference and x.shape[0] == 1 and fused_conv_available(x)
                and not torch.is_autocast_enabled("cpu")):
            s = self.scale
            return self._fused_inference(x, attention)[..., : s * h, : s * w]

        cells = F.pixel_unshuffle(x, _UNSHUFFLE)
        features = self.tail(F.gelu(self.dynamic(self.head(cells), attention=attention)))
        hf_cells = F.pixel_unshuffle(self.high_frequency(x), _UNSHUFFLE)
        features = features + F.gelu(self.hf_conv(hf_cells))
        features = features * self._spatial_attention_map(features)

        # Colour-major repeat: pixel-shuffle reads channels c·s²..c·s²+s²−1 for colour c.
        skip = x.repeat_interleave(self.scale**2, dim=1)
        subpixels = F.pixel_shuffle(features, _UNSHUFFLE) + skip
        sr = F.pixel_shuffle(subpixels, self.scale)
        s = self.scale
        return sr[..., : s * h, : s * w]

    # -- fp32 inference on the CPU -----------------------------------------------------------

    def _fused_inference(self, x: torch.Tensor, attention: torch.Tensor | None) -> torch.Tensor:
        """The forward of one even-sized image in fp32 on the CPU, with autograd off.

        The same network as the plain forward (equal to float rounding), laid out for speed
        on CPUs without bf16 (DyConvSR 640×360 x2 under an AVX2 cap: see
        benchmarks/bench_dyconvsr_official.py):

        * pixel-unshuffle + 3×3 conv on cells = a 6×6 stride-2 conv on pixels (head, HF conv),
          so the unshuffled copies are never made;
        * the HF image's 5×5 Gaussian as two 1-D passes (:meth:`_separable_high_frequency`);
        * GELU fused into the dynamic and HF convs and the HF branch's sum into the tail conv
          (oneDNN post-ops, :func:`~dynsr.ops.fused_conv.conv2d_fused`);
        * the tail and HF convs' output channels reordered so that, channels-last, each
          cell's 12·s² values already lie as the output's 2s × 2s × 3 block rows, and the
          skip made in that layout by a one-hot conv: the two pixel shuffles, the attention
          product and the skip become one pass that writes the (s·H, s·W, 3) result,
          returned as a channels_last (1, 3, s·H, s·W) view.
        """
        s = self.scale
        _, _, height, width = x.shape
        rows, cols = height // _UNSHUFFLE, width // _UNSHUFFLE
        x = canonical_channels_last(x)
        order = _subpixel_order(s)
        head = conv2d_fused(x, _as_pixel_conv(self.head.weight), self.head.bias,
                            stride=_UNSHUFFLE, padding=_UNSHUFFLE)
        if attention is None:
            attention = self.dynamic.attention_from_mean(head.mean(dim=(2, 3)))
        weight, bias = mix_kernel_banks(self.dynamic.weight_bank, self.dynamic.bias, attention)
        hidden = conv2d_fused(head, weight[0], None if bias is None else bias[0], padding=1,
                              activation="gelu")
        detail = conv2d_fused(self._separable_high_frequency(x),
                              _as_pixel_conv(self.hf_conv.weight[order]), self.hf_conv.bias[order],
                              stride=_UNSHUFFLE, padding=_UNSHUFFLE, activation="gelu")
        features = conv2d_fused(hidden, self.tail.weight[order], self.tail.bias[order],
                                padding=1, add=detail)
        cells = features.permute(0, 2, 3, 1)  # (1, rows, cols, 12·s²), a view
        pooled = torch.stack([cells.mean(dim=-1), cells.amax(dim=-1)], dim=1)
        gate = torch.sigmoid(self.spatial_attention(
            pooled.contiguous(memory_format=torch.channels_last)))
        # The skip (nearest-neighbour upscaling of x) in the same cell layout, by a one-hot
        # 2×2 stride-2 conv: exact, and far faster than a broadcasting copy into the output.
        skip = conv2d_fused(x, _nearest_skip_weight(s), None, stride=_UNSHUFFLE)

        def as_output_blocks(t: torch.Tensor) -> torch.Tensor:
            # (row, a, p, col, b, q, colour): pixel (s·(2·row + a) + p, s·(2·col + b) + q)
            return t.permute(0, 2, 3, 1)[0].view(rows, cols, 2, s, 2, s, 3).permute(
                0, 2, 3, 1, 4, 5, 6)

        out = torch.empty(rows, 2, s, cols, 2, s, 3)
        torch.addcmul(as_output_blocks(skip), as_output_blocks(features),
                      gate[0, 0].view(rows, 1, 1, cols, 1, 1, 1), out=out)
        return out.view(s * height, s * width, 3).permute(2, 0, 1)[None]

    def extra_repr(self) -> str:
        return (
            f"scale={self.scale}, temperature_schedule={self.temperature_schedule!r}, "
            f"anneal_fraction={self.anneal_fraction}"
        )


def _blur_padding(x: torch.Tensor) -> str:
    # Reflect, as torchvision's GaussianBlur in the release; reflect needs sides > pad.
    return "reflect" if min(x.shape[-2:]) > _BLUR_SIZE // 2 else "replicate"


def _as_pixel_conv(weight: torch.Tensor) -> torch.Tensor:
    """A 3×3 conv's weight on pixel-unshuffled cells (O, 3·4, 3, 3) as the equal 6×6
    stride-2 conv on the pixels (O, 3, 6, 6), padding 2: tap (u, v) of cell channel
    (c, a, b) reads pixel (2u + a, 2v + b) of the 6×6 window."""
    out = weight.shape[0]
    return (weight.view(out, 3, _UNSHUFFLE, _UNSHUFFLE, 3, 3).permute(0, 1, 4, 2, 5, 3)
            .reshape(out, 3, 3 * _UNSHUFFLE, 3 * _UNSHUFFLE))


@cache
def _nearest_skip_weight(scale: int) -> torch.Tensor:
    """One-hot (12·s², 3, 2, 2) weight: a 2×2 stride-2 conv that puts pixel (2·row + a,
    2·col + b) of each colour in every sub-pixel channel (a, p, b, q, colour) of its cell,
    i.e. nearest-neighbour upscaling by 2s in the reordered layout of :func:`_subpixel_order`.
    Made once per scale (cached: every fused forward uses it; never modified)."""
    weight = torch.zeros(2, scale, 2, scale, 3, 3, 2, 2)
    for a in range(2):
        for b in range(2):
            weight[a, :, b, :, :, :, a, b] = torch.eye(3)
    return weight.reshape(12 * scale * scale, 3, 2, 2)


@cache
def _subpixel_order(scale: int) -> torch.Tensor:
    """Old index of each sub-pixel channel in the order (a, p, b, q, colour).

    The model's channel c'·4 + a·2 + b (c' = colour·s² + p·s + q) lands, after pixel-shuffle
    2 then s, at output pixel (s·(2·row + a) + p, s·(2·col + b) + q) of its colour.
    """
    old = torch.arange(3 * scale * scale * _UNSHUFFLE**2).view(3, scale, scale, _UNSHUFFLE,
                                                                _UNSHUFFLE)
    return old.permute(3, 1, 4, 2, 0).reshape(-1)


@register(
    "dyconvsr",
    scales=(2, 3, 4),
    summary="DyConvSR: ~60 K params, one attention-mixed dynamic conv, HF branch, SA",
    paper="Doan & Nguyen, DyConvSR: Lightweight Image Super-Resolution with Dynamic "
    "Convolutions (preprint, ca. 2024)",
    # The fused fp32 path: 2.3x the official forward with AMX, where bf16 autocast gives 1.6x
    # (benchmarks/bench_dyconvsr_official.py, results/speed/).
    cpu_precision="fp32",
)
def dyconvsr(
    scale: int, temperature_schedule: str = "fixed", anneal_fraction: float = 0.1
) -> DyConvSR:
    """Build DyConvSR; config keys ``temperature_schedule`` and ``anneal_fraction``."""
    return DyConvSR(scale, temperature_schedule=temperature_schedule,
                    anneal_fraction=anneal_fraction)


# --------------------------------------------------------------------------------------------
# ONNX


class _DyConvSRGraph(nn.Module):
    def __init__(self, model: DyConvSR) -> None:
        super().__init__()
        self.model = model
        model.dynamic = BankSumConv(model.dynamic)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        h, w = lr.shape[-2], lr.shape[-1]
        s = self.model.scale
        # Even sides here, so the model's own (traced-as-constant) padding branch is a no-op;
        # replicate padding + crop is exactly what the model does for odd sides.
        sr = self.model(replicate_to_multiple(lr, 2))
        return sr[:, :, :s * h, :s * w]


@register_onnx(DyConvSR)
def dyconvsr_onnx(model: DyConvSR) -> OnnxAdapter:
    """The attention-mixed conv as a bank sum, the even-size padding size-independent."""
    return OnnxAdapter(_DyConvSRGraph(copy.deepcopy(model)),
                       reference=lambda lr: model(lr).float())
