"""DDet: dual-path dynamic enhancement network for real-world SR.

Model card
==========

Paper
-----
Yukai Shi, Haoyu Zhong, Zhijing Yang, Xiaojun Yang, Liang Lin, "DDet: Dual-path Dynamic
Enhancement Network for Real-World Image Super-Resolution", IEEE Signal Processing Letters
27, 2020 (arXiv:2002.11079). Authors' release: github.com/ykshi/DDet (Caffe prototxts and
models; the kernel-prediction and shuffle layers and the test script are Cai et al.'s RealSR
code, github.com/csjcai/RealSR).

DDet works on the LR image already brought to the HR size (the RealSR protocol), so the
network maps HR-size in to HR-size out; :class:`DDet` adds MATLAB bicubic upscaling and the
Y/CbCr handling around it, :class:`DDetCore` is the network alone.

Architecture (paper Fig. 1, with the release's layer details)
-------------------------------------------------------------
::

            ┌─ CDM  G_Dil: conv 64 ─ReLU─ conv 64 ─ReLU─ conv C ──(+)── I_Rev ────────────┐
            │                                               I_LR ──┘    (Eq. 2, 10)       │
    I_LR ───┤                                                                             │
            │  MDA  G_Sat (Eq. 3, 5, 6):                                                  │
            └─ unshuffle ×4 ─ conv 64 ─┬─ 16 × [conv 64 ─ReLU─ conv 64 (+)] ─ conv ─(+)─┐ │
                                       └───────────────── long skip ─────────────────┘  │ │
               ┌────────────────────────────────────────────────────────────────────────┘ │
               └─ shuffle ×4 ─ conv 64 ─ReLU─ conv M ─ReLU─┬─ head k1 → K1 (k1² ch)       │
                                                           ├─ head k2 → K2 (k2² ch)       │
                                                           └─ head k3 → K3 (k3² ch)       │
                                                                  (Eq. 7, 8)              │
    I'_Att = Σ_n g(I_Rev | K_n)     per-pixel k_n×k_n filtering of I_Rev (Eq. 9) ◄────────┘
    I_Att  = F_PR(I'_Att) = conv C(ReLU(conv 64(I'_Att)))                  (Eq. 4, 11)

C = 1 (Y) or 3 (RGB); M = 64 at x2, 128 at x3/x4 (release); every conv is 3×3 with bias;
the residual blocks have no batch norm and no scaling; the summation of Eq. 9 has weight 1
for every kernel size; there is no skip from the input to the output. The dynamic kernels are
applied as predicted (no softmax or normalisation), with zero padding, row-major taps and
one kernel per pixel shared by the channels (``dynsr.ops.dynamic_filter``).

Paper's results (RealSR v2 test set, Y channel)
-----------------------------------------------
* Table I: x2 34.37 dB / 0.932, x3 31.08 / 0.880, x4 29.23 / 0.837 (LP-KPN: 33.49 / 30.60 /
  29.05; KPN(K=7): 33.42 / 30.49 / 28.84).
* Table II (ablation, x2 PSNR): plain KPN(K=7) 33.43, + post-refinement 33.80, + CDM 34.28,
  + MDA (full DDet) 34.37. Registered here as ``kpn7``, ``kpn7-pr``, ``kpn7-pr-cdm``, ``ddet``.
* Table III (x3): 0.123 s per frame, 5.7 MB of parameters. The table's sizes are fp32 bytes
  in units of 10⁶ (Cai et al.'s KPN(K=7) trunk below has 1,295,473 parameters = 5.18 MB,
  listed as 5.2), so 5.7 MB ≈ 1.43 M parameters. The release's x2 network has 1,428,919
  (5.72 MB), which matches; its x3/x4 networks (M = 128) have 1,559,159 (6.24 MB).
  ``ddet`` (paper kernels 3/5/7, one conv per head): 1,354,453 at x2, 1,439,189 at x3/x4.

Registered names
----------------
=================  ==========================================================================
``ddet``           paper: kernel sizes (3, 5, 7), one conv per head, Y channel, CDM + PR
``ddet-release``   release: kernel sizes (9, 7, 5); 9×9 head one conv, 7×7 head conv 49 +
                   ReLU + conv 49, 5×5 head conv 32 + ReLU + conv 25 (``head_hidden``)
``ddet-rgb``       ``ddet`` on RGB (``in_channels=3``; kernels shared by the three channels)
``kpn7``           Table II "plain": KPN(K=7) of Cai et al. (one 7×7 kernel on the input)
``kpn7-pr``        Table II "w/ PR": ``kpn7`` + post-refinement
``kpn7-pr-cdm``    Table II "w/ CDM": ``kpn7-pr`` + CDM (``ddet`` adds the multi-scale heads)
=================  ==========================================================================

For real LR/HR pairs (the paper's setting: LR registered and upsampled onto the HR grid, as
RealSR and City100 store it) the same networks have ``-real`` names, trained on such pairs
(``configs/*_real_cpu.yaml``, ``docs/real_pairs.md``):

====================  =======================================================================
``ddet-real``         ``ddet`` (Y, kernels 3/5/7, CDM + PR)
``kpn7-real``         ``kpn7`` (Table II "plain")
``kpn7-pr-real``      ``kpn7-pr`` (Table II "w/ PR")
``kpn7-pr-cdm-real``  ``kpn7-pr-cdm`` (Table II "w/ CDM")
``ddet-rgb-real``     ``ddet-rgb``, fine-tuned on the pairs from the x2 weights
====================  =======================================================================

They are registered at scales 1 to 4. Scale 1 takes an image already on the HR grid (the LR
of a pair, as it is); scale s bicubic-upscales an ordinary LR image by s first, which is all
the factor changes: M is 64 at every scale, so one set of weights (trained at scale 1, listed
under x1 in the weights manifest) serves every factor.

Config keys (any name): ``in_channels`` (1 or 3), ``kernel_sizes``, ``head_hidden`` (per
kernel size: 0 = one conv, n = conv n + ReLU + conv k²), ``num_blocks`` (16), ``channels``
(64), ``predictor_channels`` (M; default 64 at x2, 128 otherwise), ``cdm``, ``post_refine``,
``identity_init`` (True; deviation 7).

Deviations
----------
From the paper (including what it leaves open):

1. Kernel heads: the paper only says Υ_Dyn has 9, 25 and 49 channels (Eq. 7-8) and gives
   Eq. 6 as "conv, ×4 upscale, conv". ``ddet`` reads that literally: one 3×3 conv per
   kernel size on the shared features, as in KPN(K=7), its ablation baseline. The release
   instead gives two of its three heads a hidden layer (``ddet-release``).
2. Layers the paper does not specify are taken from the release: the first trunk conv has
   no ReLU, the long skip around the 16 blocks plus the conv before it, the two convs after
   the ×4 shuffle (64, then M = 64/128 channels, both with ReLU), ReLUs after the first two
   CDM convs, post-refinement as conv 64 + ReLU + conv C (the paper: "a 3×3 convolution").
3. The ablation's "plain" model is "the structure of KPN(K=7)" (Sec. III): Cai et al.'s
   KPN(K=7) already has this unshuffle/residual trunk, so every variant here shares the
   trunk and "+ MDA" is the step from one 7×7 kernel to the multi-scale heads. Cai et al.
   use M = 64 at every scale; the ``kpn7*`` names follow DDet's M rule, which is the same at
   x2, where Table II was measured (pass ``predictor_channels=64`` for their x3/x4 model).
   dynsr's x3/x4 CPU recipes (``configs/ddet_x{3,4}_cpu.yaml``) use M = 64 too, so that the
   whole trained x2 network starts their fine-tuning; the manifest records it.
4. Sizes that are not multiples of 4: the release's test script crops the images to a
   multiple of 4 (``modcrop``). dynsr pads the trunk's input at the bottom and right by
   replication and crops the trunk's output back after the ×4 shuffle; CDM, the filtering
   and the post-refinement see the image unpadded. Identical to the release on multiples
   of 4.
5. Y mode input: the release feeds MATLAB ``im2double(rgb2ycbcr(uint8 image))``, i.e. Y in
   [16/255, 235/255] rounded to whole grey levels. dynsr feeds the same scale (studio-range
   Y / 255, ``dynsr.ops.rgb_to_ycbcr``) but unrounded. The release evaluates Y only; dynsr
   puts the network's Y together with the bicubic Cb/Cr and returns RGB. The colour
   conversions run in float32 even under autocast.
6. ``ddet-rgb`` (3 channels, one kernel per pixel shared by R, G, B; trunk input 48
   channels, CDM and PR 3 → 64 → 3) is dynsr's, neither in the paper nor the release.
7. Initialisation (the paper gives none): PyTorch's default init, except that with
   ``identity_init`` (default) CDM starts adding nothing and PR starts as the identity (see
   :meth:`DDetCore.start_as_identity`), so the untrained DDet is a plain KPN and each part
   can only add to it. Without it, the PR (conv-ReLU-conv, no skip) must first learn to pass
   the image through: measured on the x2 CPU recipe, DDet's L1 loss over its first 100
   iterations was 0.33 against the plain KPN's 0.14, and it was still 0.03 dB behind the KPN
   on Set5 (real-like) after 10,000 iterations (26.565 against 26.591 dB). The release
   keeps PR gentle its own way (MSRA weights, zero biases, biases and the last PR conv at
   learning rate ×0.1); its training schedule is not modelled.
8. The output is not clamped (the release's ``im2uint8`` clamps when measuring); callers
   round and clamp when they save or measure.

From the release (``ddet-release`` keeps its kernel sizes and heads; besides 4-8 above):

* Only the release's x2 and x4 prototxts could be read (M = 64 and 128); x3 is taken to be
  like x4 (M = 128), as dynsr's METHODS.md says.
* Matcaffe hands MATLAB arrays to Caffe with height and width swapped, so the released
  caffemodels were run on transposed images: porting them would need the conv weights
  transposed (kh ↔ kw), the kernel taps reordered (u·k + v ↔ v·k + u) and the sub-pixel order
  of both ×4 shuffles swapped. dynsr ships no ported weights.
* The release's PixelConv layer (zero padding k//2, row-major im2col taps, no
  normalisation) equals ``dynamic_filter`` for one channel; its Dtow layer has
  ``pixel_unshuffle``/``pixel_shuffle`` channel order. Not deviations, noted for porting.
"""

from __future__ import annotations

import copy
import types
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dynsr.models.blocks import ResidualBlock, conv3x3
from dynsr.models.registry import OnnxAdapter, register, register_onnx
from dynsr.ops.color import rgb_to_ycbcr, ycbcr_to_rgb
from dynsr.ops.dynamic import dynamic_filter
from dynsr.ops.resize import imresize
from dynsr.ops.traceable import replicate_to_multiple, traceable_filter, traceable_upscale

__all__ = ["DDet", "DDetCore", "build_ddet"]

# The MDA trunk works at 1/4 of the HR size (Eq. 5): pixel-unshuffle/shuffle factor.
TRUNK_FACTOR = 4
PAPER = (
    "Shi, Zhong, Yang, Yang, Lin: DDet: Dual-path Dynamic Enhancement Network for "
    "Real-World Image Super-Resolution, IEEE SPL 2020"
)




def _kernel_head(in_channels: int, kernel_size: int, hidden: int) -> nn.Sequential:
    """Predictor of one k×k kernel per pixel: k² output channels, tap t = u·k + v."""
    taps = kernel_size * kernel_size
    if hidden == 0:
        return nn.Sequential(conv3x3(in_channels, taps))
    return nn.Sequential(conv3x3(in_channels, hidden), nn.ReLU(), conv3x3(hidden, taps))


class DDetCore(nn.Module):
    """The DDet network on HR-size input: (B, C, H, W) → (B, C, H, W), any H, W ≥ 1.

    C = ``in_channels``: 1 for the Y channel scaled as the release feeds it (studio-range Y
    / 255, in [16/255, 235/255]), or 3 for RGB in [0, 1]. RealSR-style training pairs (LR
    already at the HR size) go straight here. The three stages are public so that they can
    be inspected separately: :meth:`predict_kernels` (MDA, Eq. 3), :meth:`reveal` (CDM,
    Eq. 2) and :meth:`aggregate` (Eq. 9); :meth:`forward` chains them and adds the
    post-refinement (Eq. 4, 11).
    """

    def __init__(
        self,
        in_channels: int = 1,
        kernel_sizes: Sequence[int] = (3, 5, 7),
        head_hidden: Sequence[int] | None = None,
        num_blocks: int = 16,
        channels: int = 64,
        predictor_channels: int = 64,
        cdm: bool = True,
        post_refine: bool = True,
        identity_init: bool = True,
    ) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"DDet: in_channels must be 1 (Y) or 3 (RGB), got {in_channels}")
        kernel_sizes = tuple(int(k) for k in kernel_sizes)
        if not kernel_sizes or any(k < 1 or k % 2 == 0 for k in kernel_sizes):
            raise ValueError(f"DDet: kernel_sizes must be odd and positive, got {kernel_sizes}")
        hidden = tuple(int(h or 0) for h in head_hidden) if head_hidden else (0,) * len(
            kernel_sizes
        )
        if len(hidden) != len(kernel_sizes):
            raise ValueError(
                f"DDet: head_hidden {tuple(head_hidden or ())} needs one entry per kernel size "
                f"{kernel_sizes}"
            )
        if channels % (TRUNK_FACTOR * TRUNK_FACTOR):
            raise ValueError(f"DDet: channels must be a multiple of 16, got {channels}")
        self.in_channels = in_channels
        self.kernel_sizes = kernel_sizes
        self.head_hidden = hidden

        # MDA feature extractor G_Sat (Eq. 5, 6): 1/4-resolution residual trunk.
        self.unshuffle = nn.PixelUnshuffle(TRUNK_FACTOR)
        self.trunk_in = conv3x3(in_channels * TRUNK_FACTOR**2, channels)
        self.blocks = nn.Sequential(*(ResidualBlock(channels) for _ in range(num_blocks)))
        self.trunk_out = conv3x3(channels, channels)
        self.shuffle = nn.PixelShuffle(TRUNK_FACTOR)
        self.predictor = nn.Sequential(
            conv3x3(channels // TRUNK_FACTOR**2, channels),
            nn.ReLU(),
            conv3x3(channels, predictor_channels),
            nn.ReLU(),
        )
        self.kernel_heads = nn.ModuleList(
            _kernel_head(predictor_channels, size, width)
            for size, width in zip(kernel_sizes, hidden, strict=True)
        )
        # CDM G_Dil (Eq. 10): a residual correction of the input before it is filtered.
        self.cdm = (
            nn.Sequential(
                conv3x3(in_channels, channels),
                nn.ReLU(),
                conv3x3(channels, channels),
                nn.ReLU(),
                conv3x3(channels, in_channels),
            )
            if cdm
            else None
        )
        # Post-refinement F_PR (Eq. 11).
        self.refine = (
            nn.Sequential(
                conv3x3(in_channels, channels), nn.ReLU(), conv3x3(channels, in_channels)
            )
            if post_refine
            else None
        )
        if identity_init:
            self.start_as_identity()

    @torch.no_grad()
    def start_as_identity(self) -> None:
        """Make CDM add nothing and PR pass its input through, as at the start of training
        (deviation 7): CDM's last conv is zeroed, and PR's first conv gets C channels that
        copy the input and C that negate it, which its last conv recombines,
        ReLU(x) − ReLU(−x) = x, all its other weights from the hidden layer being zero. The
        remaining hidden channels keep their random start and get gradients at once."""
        c = self.in_channels
        if self.cdm is not None:
            self.cdm[-1].weight.zero_()
            self.cdm[-1].bias.zero_()
        if self.refine is not None:
            first, last = self.refine[0], self.refine[-1]
            middle = first.kernel_size[0] // 2
            first.weight[: 2 * c].zero_()
            first.bias[: 2 * c].zero_()
            last.weight.zero_()
            last.bias.zero_()
            for i in range(c):
                first.weight[i, i, middle, middle] = 1.0
                first.weight[c + i, i, middle, middle] = -1.0
                last.weight[i, i, middle, middle] = 1.0
                last.weight[i, c + i, middle, middle] = -1.0

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"DDet core expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )

    def predict_kernels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """K_Dyn = G_Sat(I_LR) (Eq. 3): one (B, k², H, W) kernel tensor per kernel size."""
        self._check(x)
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % TRUNK_FACTOR, -w % TRUNK_FACTOR
        # Pixel-unshuffle needs multiples of 4; replicate-padding (instead of the release's
        # modcrop) keeps every pixel and adds no artificial edge for the trunk to react to.
        padded = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else x
        first = self.trunk_in(self.unshuffle(padded))
        trunk = self.trunk_out(self.blocks(first)) + first  # long skip
        features = self.predictor(self.shuffle(trunk)[..., :h, :w])
        # Kernels stay in the layout the convs give (contiguous, or channels_last on the fast
        # path): a .contiguous() copy of channels_last kernels costs more than the banded
        # transposition inside dynamic_filter (360×640, k=7, fp32, 1 thread: 35 ms for the
        # copy alone vs 9.5 ms for the whole filtering).
        return [head(features) for head in self.kernel_heads]

    def reveal(self, x: torch.Tensor) -> torch.Tensor:
        """I_Rev = G_Dil(I_LR) + I_LR (Eq. 2, 10); the input itself when CDM is off."""
        self._check(x)
        return x if self.cdm is None else x + self.cdm(x)

    def aggregate(self, image: torch.Tensor, kernels: Sequence[torch.Tensor]) -> torch.Tensor:
        """I'_Att = Σ_n g(image | K_n) (Eq. 9): per-pixel filtering, summed with weight 1."""
        if len(kernels) != len(self.kernel_sizes):
            raise ValueError(f"DDet: {len(kernels)} kernel sets for sizes {self.kernel_sizes}")
        out = dynamic_filter(image, kernels[0], self.kernel_sizes[0])
        for kernel, size in zip(kernels[1:], self.kernel_sizes[1:], strict=True):
            out = out + dynamic_filter(image, kernel, size)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """I_Att = F_PR(Σ_n g(I_Rev | K_n)) (Eq. 4, 9, 11), same shape as x."""
        attended = self.aggregate(self.reveal(x), self.predict_kernels(x))
        return attended if self.refine is None else self.refine(attended)


class DDet(nn.Module):
    """DDet as a dynsr upscaler: RGB LR (B, 3, h, w) in [0, 1] → RGB (B, 3, s·h, s·w).

    :meth:`forward` upscales with MATLAB bicubic and calls :meth:`forward_prescaled`, which
    takes RGB already at the HR size (RealSR pairs). With ``in_channels=1`` the network sees
    the Y channel only and the chroma of the result is the input's (bicubic) Cb/Cr; with 3 it
    sees RGB. ``core`` is the bare network (see :class:`DDetCore`). Config: see the module
    docstring.
    """

    def __init__(
        self,
        scale: int,
        in_channels: int = 1,
        kernel_sizes: Sequence[int] = (3, 5, 7),
        head_hidden: Sequence[int] | None = None,
        num_blocks: int = 16,
        channels: int = 64,
        predictor_channels: int | None = None,
        cdm: bool = True,
        post_refine: bool = True,
        identity_init: bool = True,
    ) -> None:
        super().__init__()
        self.scale = int(scale)
        if predictor_channels is None:
            # The release widens the last shared layer at x3/x4 (prototxt conv36).
            predictor_channels = 64 if self.scale == 2 else 128
        self.core = DDetCore(
            in_channels=in_channels,
            kernel_sizes=kernel_sizes,
            head_hidden=head_hidden,
            num_blocks=num_blocks,
            channels=channels,
            predictor_channels=predictor_channels,
            cdm=cdm,
            post_refine=post_refine,
            identity_init=identity_init,
        )

    @property
    def in_channels(self) -> int:
        return self.core.in_channels

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """Bicubic ×scale (MATLAB ``imresize``), then :meth:`forward_prescaled`. At scale 1
        (the ``-real`` models on a pair's LR, already on the HR grid) the input goes as is."""
        self._check_rgb(lr)
        return self.forward_prescaled(lr if self.scale == 1 else imresize(lr, self.scale))

    def forward_prescaled(self, x: torch.Tensor) -> torch.Tensor:
        """RGB (B, 3, H, W) at the HR size → RGB (B, 3, H, W), in x's dtype."""
        self._check_rgb(x)
        if self.in_channels == 3:
            return self.core(x).to(x.dtype)
        # Colour conversions are matrix products, which autocast would run in bf16 (±0.5
        # grey level on Y and on the returned chroma): keep them in x's float dtype.
        with torch.autocast(x.device.type, enabled=False):
            ycbcr = rgb_to_ycbcr(x)
            luma = ycbcr[:, :1] / 255.0  # release input scale: [16/255, 235/255]
        sr_luma = self.core(luma).to(x.dtype) * 255.0
        with torch.autocast(x.device.type, enabled=False):
            return ycbcr_to_rgb(torch.cat([sr_luma, ycbcr[:, 1:]], dim=1))

    @staticmethod
    def _check_rgb(x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"DDet expects an RGB batch (B, 3, H, W), got {tuple(x.shape)}")


_SCALES = (2, 3, 4)
# Real-pair models: x1 is the pair's LR as it is (already on the HR grid), x2-x4 a photo
# bicubic-upscaled first; one network for all (M fixed at 64).
_REAL_SCALES = (1, 2, 3, 4)


@register("kpn7-pr-cdm", _SCALES, "DDet ablation (Table II 'w/ CDM'): KPN(K=7) + PR + CDM",
          PAPER, kernel_sizes=(7,))
@register("kpn7-pr", _SCALES, "DDet ablation (Table II 'w/ PR'): KPN(K=7) + post-refinement",
          PAPER, kernel_sizes=(7,), cdm=False)
@register("kpn7", _SCALES, "DDet ablation (Table II 'plain'): KPN(K=7) of Cai et al., Y",
          PAPER, kernel_sizes=(7,), cdm=False, post_refine=False)
@register("ddet-rgb", _SCALES, "DDet (paper kernels 3/5/7) on RGB, kernels shared by channels",
          PAPER, in_channels=3)
@register("ddet-release", _SCALES, "DDet as released: kernels 9/7/5 with the release's heads, Y",
          PAPER, kernel_sizes=(9, 7, 5), head_hidden=(0, 49, 32))
@register("ddet", _SCALES, "DDet (paper: dynamic kernels 3/5/7 + CDM + PR), Y channel", PAPER)
@register("ddet-rgb-real", _REAL_SCALES, "ddet-rgb for real pairs: x1 = input on the HR grid, "
          "xS = bicubic xS first", PAPER, in_channels=3, predictor_channels=64)
@register("kpn7-pr-cdm-real", _REAL_SCALES, "kpn7-pr-cdm (Table II 'w/ CDM') for real pairs, Y",
          PAPER, kernel_sizes=(7,), predictor_channels=64)
@register("kpn7-pr-real", _REAL_SCALES, "kpn7-pr (Table II 'w/ PR') for real pairs, Y", PAPER,
          kernel_sizes=(7,), cdm=False, predictor_channels=64)
@register("kpn7-real", _REAL_SCALES, "kpn7 (Table II 'plain') for real pairs, Y", PAPER,
          kernel_sizes=(7,), cdm=False, post_refine=False, predictor_channels=64)
@register("ddet-real", _REAL_SCALES, "DDet (paper) for real pairs, Y: x1 = input on the HR "
          "grid, xS = bicubic xS first", PAPER, predictor_channels=64)
def build_ddet(scale: int, **config) -> DDet:
    """Builder behind every DDet name; ``config`` as in :class:`DDet`."""
    return DDet(scale=scale, **config)


# --------------------------------------------------------------------------------------------
# ONNX


def _traceable_predict_kernels(core: DDetCore, x: torch.Tensor) -> list[torch.Tensor]:
    # DDetCore.predict_kernels with the multiple-of-4 padding made size-independent.
    h, w = x.shape[-2], x.shape[-1]
    padded = replicate_to_multiple(x, TRUNK_FACTOR)
    first = core.trunk_in(core.unshuffle(padded))
    trunk = core.trunk_out(core.blocks(first)) + first
    features = core.predictor(core.shuffle(trunk)[:, :, :h, :w])
    return [head(features) for head in core.kernel_heads]


def _traceable_aggregate(core: DDetCore, image: torch.Tensor,
                         kernels: Sequence[torch.Tensor]) -> torch.Tensor:
    out = None
    for kernel, size in zip(kernels, core.kernel_sizes, strict=True):
        term = traceable_filter(image, kernel, size)
        out = term if out is None else out + term
    return out  # type: ignore[return-value]


class _DDetGraph(nn.Module):
    def __init__(self, model: DDet) -> None:
        super().__init__()
        self.model = model
        core = model.core
        # Instance-level overrides on a private copy: the registered classes stay untouched.
        core.predict_kernels = types.MethodType(_traceable_predict_kernels, core)
        core.aggregate = types.MethodType(_traceable_aggregate, core)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.model.forward_prescaled(traceable_upscale(lr, self.model.scale))


@register_onnx(DDet)
def ddet_onnx(model: DDet) -> OnnxAdapter:
    """The bicubic pre-upscale inside the graph (polyphase), the trunk's padding and the
    dynamic filtering size-independent."""
    return OnnxAdapter(_DDetGraph(copy.deepcopy(model)), reference=lambda lr: model(lr).float())
