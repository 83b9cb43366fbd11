"""The residual CNN (DblurDoseNet-style): 3-D stem that collapses a slice pack, 2-D U-Net.

Architecture (Li, Fessler, Mikell, Wilderman, Dewaraja, "DblurDoseNet: a deep residual
learning network for voxel radionuclide dosimetry compensating for SPECT imaging
resolution", Med. Phys. 49 (2022) 1216, doi:10.1002/mp.15397):

* input: a *pack* of ``P = 11`` axial slices (5 each side of the centre slice, replicated at
  the volume ends) of two channels, normalised SPECT and density: ``(N, 2, P, H, W)``;
* stem: three ``Conv3d`` layers with kernels 5×7×7, 3×7×7, 3×7×7 (z, y, x), in-plane
  "same" padding and *no* padding in z, each followed by batch norm and ReLU; the depth
  shrinks from ``P`` to ``P − 8 = 3``; channels and depth are then folded into
  ``C·(P − 8)`` 2-D feature maps ("collapsing depth");
* a 2-D U-Net with 4 down/up levels, 16 initial filters, bilinear up-sampling (channels
  halved at the bottom as in the common PyTorch U-Net), double 3×3 conv + batch norm + ReLU
  per level, a final 1×1 conv to one channel, initialised to zero;
* output = U-Net output + normalised VDK centre slice: the network learns ``GT − VDK``
  (and starts from the VDK).

Because the stem has no padding in z, running it once over a whole (edge-replicated) volume
gives, for every centre slice, exactly the features of that slice's pack:
:meth:`ResidualDoseNet.forward_slab` uses this for inference, which is about ``P − 8`` times
cheaper in the stem than running every pack separately.

Widths, depth and pack size are set by :class:`ModelConfig`; the paper configuration has
1,106,737 parameters (stem 8-8-8 channels) (:func:`count_parameters`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from mcdose.errors import InputError

__all__ = ["ModelConfig", "ResidualDoseNet", "UNet2d", "build_model", "count_parameters"]

#: network input channels: normalised SPECT, normalised density
IN_CHANNELS = 2


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of :class:`ResidualDoseNet`.

    Attributes
    ----------
    pack_size
        Slices per pack ``P`` (odd); ``(P − 1) / 2`` each side of the centre slice.
    stem_channels
        Output channels of the Conv3d stem layers.
    stem_kernels
        Kernel ``(z, y, x)`` of each stem layer; z sizes are odd and their reductions
        ``Σ (k_z − 1)`` must be smaller than ``P``; y, x sizes are odd.
    unet_levels
        Down-sampling steps of the U-Net (4 in the paper); H, W are zero-padded internally
        to a multiple of ``2**unet_levels``.
    unet_width
        Filters of the first U-Net level (16 in the paper), doubled at every level.
    bilinear
        Bilinear up-sampling (True) or transposed convolutions (False).
    """

    pack_size: int = 11
    stem_channels: tuple[int, ...] = (8, 8, 8)
    stem_kernels: tuple[tuple[int, int, int], ...] = ((5, 7, 7), (3, 7, 7), (3, 7, 7))
    unet_levels: int = 4
    unet_width: int = 16
    bilinear: bool = True
    in_channels: int = field(default=IN_CHANNELS, init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stem_channels", tuple(int(c) for c in self.stem_channels))
        object.__setattr__(
            self, "stem_kernels", tuple(tuple(int(k) for k in ks) for ks in self.stem_kernels)
        )
        if self.pack_size < 1 or self.pack_size % 2 == 0:
            raise InputError(f"pack_size must be a positive odd number, got {self.pack_size}")
        if not self.stem_channels or len(self.stem_channels) != len(self.stem_kernels):
            raise InputError("stem_channels and stem_kernels need one entry per stem layer")
        if any(c < 1 for c in self.stem_channels):
            raise InputError(f"stem_channels must be positive, got {self.stem_channels}")
        for ks in self.stem_kernels:
            if len(ks) != 3 or any(k < 1 or k % 2 == 0 for k in ks):
                raise InputError(f"stem kernels must be 3 odd sizes (z, y, x), got {ks}")
        if self.depth_out < 1:
            raise InputError(
                f"pack_size {self.pack_size} is too small for stem kernels "
                f"{self.stem_kernels}: need more than {self.depth_reduction} slices"
            )
        if not 1 <= self.unet_levels <= 8:
            raise InputError(f"unet_levels must be 1..8, got {self.unet_levels}")
        if self.unet_width < 2 or (self.bilinear and self.unet_width % 2):
            raise InputError(f"unet_width must be an even number >= 2, got {self.unet_width}")

    @property
    def half_pack(self) -> int:
        """Slices each side of the centre: ``(P − 1) / 2``."""
        return (self.pack_size - 1) // 2

    @property
    def depth_reduction(self) -> int:
        """Slices the stem removes: ``Σ (k_z − 1)``."""
        return sum(ks[0] - 1 for ks in self.stem_kernels)

    @property
    def depth_out(self) -> int:
        """Depth left after the stem, folded into channels: ``P − Σ (k_z − 1)``."""
        return self.pack_size - self.depth_reduction

    @property
    def multiple(self) -> int:
        """In-plane sizes are padded to a multiple of this (``2**unet_levels``)."""
        return 2**self.unet_levels

    def to_dict(self) -> dict[str, object]:
        """Plain dict (lists, ints, bools) for the model file."""
        data = asdict(self)
        data.pop("in_channels")
        data["stem_channels"] = list(self.stem_channels)
        data["stem_kernels"] = [list(k) for k in self.stem_kernels]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``InputError``."""
        data = dict(data)
        data.pop("in_channels", None)
        known = {"pack_size", "stem_channels", "stem_kernels", "unet_levels", "unet_width",
                 "bilinear"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"unknown model architecture keys: {', '.join(unknown)}")
        try:
            return cls(**data)  # type: ignore[arg-type]
        except TypeError as exc:
            raise InputError(f"invalid model architecture: {exc}") from None


class DoubleConv(nn.Module):
    """(3×3 conv → batch norm → ReLU) × 2."""

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None):
        super().__init__()
        mid = mid_channels or out_channels
        self.block = nn.Sequential(
            nn.Conv2d(in_channels, mid, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class Up(nn.Module):
    """Up-sample ×2, concatenate the skip connection, double conv."""

    def __init__(self, in_channels: int, out_channels: int, bilinear: bool):
        super().__init__()
        if bilinear:
            self.up: nn.Module = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            self.conv = DoubleConv(in_channels, out_channels, in_channels // 2)
        else:
            self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, 2, stride=2)
            self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet2d(nn.Module):
    """2-D U-Net with ``levels`` down/up steps and ``width`` initial filters, one output.

    Input sizes must be multiples of ``2**levels`` (see :meth:`ResidualDoseNet.head`).
    """

    def __init__(self, in_channels: int, width: int = 16, levels: int = 4, bilinear: bool = True):
        super().__init__()
        factor = 2 if bilinear else 1
        self.inc = DoubleConv(in_channels, width)
        self.downs = nn.ModuleList()
        for i in range(1, levels + 1):
            out = width * 2**i
            if i == levels:
                out //= factor
            self.downs.append(nn.Sequential(nn.MaxPool2d(2), DoubleConv(width * 2 ** (i - 1), out)))
        self.ups = nn.ModuleList()
        for i in range(1, levels + 1):
            in_ch = width * 2 ** (levels - i + 1)
            out = width * 2 ** (levels - i) // factor if i < levels else width
            self.ups.append(Up(in_ch, out, bilinear))
        self.outc = nn.Conv2d(width, 1, kernel_size=1)
        nn.init.zeros_(self.outc.weight)
        nn.init.zeros_(self.outc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.outc(x)


class ResidualDoseNet(nn.Module):
    """Slice-pack residual dose network; see the module docstring.

    Parameters
    ----------
    config
        The architecture.
    """

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = config or ModelConfig()
        layers: list[nn.Module] = []
        channels = self.config.in_channels
        for out, (kz, ky, kx) in zip(
            self.config.stem_channels, self.config.stem_kernels, strict=True
        ):
            layers += [
                nn.Conv3d(channels, out, (kz, ky, kx), padding=(0, ky // 2, kx // 2), bias=False),
                nn.BatchNorm3d(out),
                nn.ReLU(inplace=True),
            ]
            channels = out
        self.stem = nn.Sequential(*layers)
        self.unet = UNet2d(
            channels * self.config.depth_out,
            width=self.config.unet_width,
            levels=self.config.unet_levels,
            bilinear=self.config.bilinear,
        )

    # ---------------------------------------------------------------------------------
    def head(self, features: torch.Tensor) -> torch.Tensor:
        """U-Net on 2-D features ``(N, C·D, H, W)`` → residual ``(N, 1, H, W)``.

        H and W are zero-padded to a multiple of ``2**unet_levels`` and cropped back.
        """
        h, w = features.shape[-2:]
        m = self.config.multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            features = F.pad(features, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        out = self.unet(features)
        if ph or pw:
            out = out[..., ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w]
        return out

    def forward(self, packs: torch.Tensor, vdk_center: torch.Tensor) -> torch.Tensor:
        """Predict normalised dose for a batch of packs.

        Parameters
        ----------
        packs
            ``(N, 2, P, H, W)``: normalised SPECT and density, ``P = pack_size``.
        vdk_center
            ``(N, 1, H, W)``: normalised VDK of the centre slices.

        Returns
        -------
        Tensor ``(N, 1, H, W)``
            ``vdk_center + residual`` (normalised dose; not clamped, see
            :func:`residualnet.infer.predict_case` for Gy/s).
        """
        if packs.ndim != 5 or packs.shape[1] != self.config.in_channels:
            raise ValueError(f"packs must be (N, 2, P, H, W), got {tuple(packs.shape)}")
        if packs.shape[2] != self.config.pack_size:
            raise ValueError(f"packs have {packs.shape[2]} slices, model expects "
                             f"{self.config.pack_size}")
        features = self.stem(packs)  # (N, C, D, H, W)
        n, c, d, h, w = features.shape
        residual = self.head(features.reshape(n, c * d, h, w))
        return vdk_center + residual.to(vdk_center.dtype)

    def forward_slab(self, slab: torch.Tensor, vdk_center: torch.Tensor) -> torch.Tensor:
        """Predict ``n`` consecutive slices from one slab, sharing the stem work.

        Parameters
        ----------
        slab
            ``(1, 2, n + P − 1, H, W)``: normalised SPECT and density of the centre slices
            with ``(P − 1) / 2`` slices (edge-replicated at the volume ends) each side.
        vdk_center
            ``(n, 1, H, W)``: normalised VDK of the ``n`` centre slices.

        Returns
        -------
        Tensor ``(n, 1, H, W)``
            Equal (up to float rounding) to :meth:`forward` on the ``n`` packs.
        """
        if slab.ndim != 5 or slab.shape[0] != 1 or slab.shape[1] != self.config.in_channels:
            raise ValueError(f"slab must be (1, 2, n + P - 1, H, W), got {tuple(slab.shape)}")
        features = self.stem(slab)  # (1, C, n + D - 1, H, W)
        d = self.config.depth_out
        windows = features.unfold(2, d, 1)  # (1, C, n, H, W, D)
        n = windows.shape[2]
        folded = windows[0].permute(1, 0, 4, 2, 3)  # (n, C, D, H, W)
        folded = folded.reshape(n, -1, *folded.shape[-2:])
        residual = self.head(folded)
        return vdk_center + residual.to(vdk_center.dtype)


def build_model(config: ModelConfig | None = None, *, seed: int | None = None) -> ResidualDoseNet:
    """Construct a network, initialised from ``seed`` when given (reproducible weights)."""
    if seed is None:
        return ResidualDoseNet(config)
    devices: list[int] = []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return ResidualDoseNet(config)


def count_parameters(model: nn.Module, *, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
