"""The kernel network: density around a source voxel → its dose kernel, as energy fractions.

Physics built in
----------------
The network predicts *energy fractions*: for a source voxel ``s`` and each offset ``o`` of the
``N³`` kernel, the fraction ``f_o(s)`` of the energy emitted per decay (``E_emit``, keV) that is
absorbed in voxel ``s + o``, plus one fraction ``f_esc`` for the energy absorbed outside the
``N³`` box (photons mostly).  A softmax over the ``N³ + 1`` logits makes every fraction
positive and their sum exactly 1, so **Σ_o K_o · m_o ≤ E_emit** for every predicted kernel —
energy is conserved by construction.  The dose kernel in Gy per decay is

    K_o(s) = f_o(s) · E_emit · 1.602176634e-16 J/keV / (ρ(s + o) · V · 1e-3 kg/g).

The logits are a learned prior (initialised from the mean training kernel, i.e. the
soft-tissue kernel) plus corrections from density features::

    logit_o(s) = prior_o + a_o · φ(s) + b_o · φ(s + o)

with ``φ`` (``channels`` per voxel) a small fully convolutional trunk over the density (3×3×3
convolutions, batch norm and LeakyReLU as in Melodia 2018; receptive field ``2·depth + 1``).
The first term says how the neighbourhood of the source redistributes its energy (lung
around it: farther; bone: closer), the second what the target voxel is.  Because ``φ`` is
convolutional, on a patient it is computed once per voxel (not once per patch), which makes
the superposition of a whole SPECT affordable (:mod:`lvdk.superpose`).

References
----------
.. [1] L. Melodia, "Deep Learning Estimation of Absorbed Dose for Nuclear Medicine
   Diagnostics", MSc thesis, 2018 (arXiv:1805.09108): 3-D CNN from 9³ density to 9³ dose
   kernels, IoU loss.
.. [2] A. Akhavanallaf, I. Shiri, H. Arabi, H. Zaidi, "Whole-body voxel-based internal
   dosimetry using deep learning", Eur. J. Nucl. Med. Mol. Imaging 48, 670 (2021).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

__all__ = ["KernelNet", "ModelConfig", "density_features"]

#: density below which a voxel is treated as air in the features, g/cm³
MIN_DENSITY_G_CM3 = 1e-4


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of :class:`KernelNet`.

    Attributes
    ----------
    size : int
        Kernel size N (odd).
    channels : int
        Feature channels of the trunk.
    depth : int
        3×3×3 convolutions in the trunk (receptive field 2·depth + 1 voxels).
    """

    size: int = 9
    channels: int = 8
    depth: int = 2

    @property
    def context(self) -> int:
        """Voxels of density needed beyond the kernel box on each side (= depth)."""
        return self.depth

    def to_dict(self) -> dict:
        return asdict(self)


def density_features(density: torch.Tensor) -> torch.Tensor:
    """Input channels from density (g/cm³): ``log(ρ/1.04)`` and ``ρ − 1``; adds a channel axis
    after the batch axis (``(B, Z, Y, X)`` → ``(B, 2, Z, Y, X)``)."""
    rho = density.clamp_min(MIN_DENSITY_G_CM3)
    return torch.stack([torch.log(rho / 1.04), rho - 1.0], dim=1)


class KernelNet(nn.Module):
    """Density patch → log energy fractions of the ``N³`` kernel and the escape fraction.

    Parameters
    ----------
    config : ModelConfig
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        c, n = self.config.channels, self.config.size
        layers: list[nn.Module] = []
        cin = 2
        for _ in range(self.config.depth):
            layers += [nn.Conv3d(cin, c, 3), nn.BatchNorm3d(c), nn.LeakyReLU(0.1)]
            cin = c
        self.trunk = nn.Sequential(*layers)
        k = n**3
        self.prior = nn.Parameter(torch.zeros(k + 1))
        self.source_head = nn.Linear(c, k + 1)
        self.target_weight = nn.Parameter(torch.zeros(k, c))
        nn.init.zeros_(self.source_head.weight)
        nn.init.zeros_(self.source_head.bias)

    @property
    def size(self) -> int:
        return self.config.size

    def features(self, density: torch.Tensor) -> torch.Tensor:
        """Trunk features of a density volume ``(B, Z, Y, X)`` (g/cm³), 'valid' convolution:
        ``(B, C, Z − 2·depth, Y − 2·depth, X − 2·depth)``."""
        return self.trunk(density_features(density))

    def logits_from_features(self, source: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, N³ + 1)`` from source features ``(B, C)`` and target features
        ``(B, N³, C)`` (the features at ``s + o`` for every offset, in C order)."""
        t = torch.einsum("bkc,kc->bk", targets, self.target_weight)
        t = torch.cat([t, torch.zeros_like(t[:, :1])], dim=1)
        return self.prior + self.source_head(source) + t

    def forward(self, density: torch.Tensor) -> torch.Tensor:
        """Log energy fractions ``(B, N³ + 1)`` (last: escape) of patches ``(B, M, M, M)``,
        ``M = N + 2·depth`` (the kernel box and its context), density in g/cm³."""
        n, d = self.config.size, self.config.depth
        if density.shape[-1] != n + 2 * d:
            raise ValueError(f"patches must be {n + 2 * d}³ (N + 2·depth), got "
                             f"{tuple(density.shape[1:])}")  # fmt: skip
        phi = self.features(density)  # (B, C, N, N, N)
        c = n // 2
        source = phi[:, :, c, c, c]
        targets = phi.flatten(2).transpose(1, 2)
        return torch.log_softmax(self.logits_from_features(source, targets), dim=1)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
