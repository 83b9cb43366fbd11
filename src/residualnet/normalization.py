"""Input/output normalisation of the residual CNN: exact, documented and invertible.

Following DblurDoseNet (Li et al., Med. Phys. 49 (2022) 1216), the SPECT image is divided by
its sum, which makes the network independent of the count level and of the administered
activity, and the dose maps are scaled by the same per-case factor.  For one case with SPECT
``A`` (MBq per voxel), density ``ρ`` (g/cm³) and dose-rate maps ``D`` (VDK, ground truth,
prediction; Gy/s)::

    S     = Σ_v A_v                         (MBq, whole volume, float64)
    Â_v   = c_A · A_v / S                   (network input 1)
    ρ̂_v   = ρ_v / (1 g/cm³)                 (network input 2, unscaled)
    D̂_v   = c_D · D_v / S                   (VDK input, GT target, network output)
    D_v   = D̂_v · S / c_D                   (inverse, applied to the prediction)

``c_A`` (dimensionless) and ``c_D`` (MBq·s/Gy) are constants of the model, fitted once on the
training split and stored in the model file: ``c_A = 1 / median_cases(max_v A_v / S)`` and
``c_D = 1 / median_cases(max_v VDK_v / S)``, which brings a typical case's SPECT maximum and
dose maximum to 1, the range of the density input.  VDK, ground truth and prediction share
``c_D``, so the network's residual is in the same units as the VDK it corrects and the
inverse is one multiplication.

The paper scales SPECT and doses by *one* constant; its maps were in commensurate units.
Ours are MBq and Gy/s, whose ratio (≈ 8·10⁻³ Gy s⁻¹ MBq⁻¹ for Lu-177 in a 0.98×0.98×3 mm
voxel) depends on nuclide and voxel volume, so by default the two constants are fitted
separately; ``fit_normalization(..., single_constant=True)`` reproduces the paper literally
(``c_A = c_D``, dose in the range of density).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

from mcdose.errors import InputError

__all__ = ["CaseScale", "Normalization", "fit_normalization"]


@dataclass(frozen=True)
class CaseScale:
    """Per-case statistics from which the normalisation constants are fitted.

    Attributes
    ----------
    spect_sum_MBq
        ``S``: sum of the SPECT image over the whole volume (MBq).
    spect_max_fraction
        ``max_v A_v / S`` (dimensionless).
    vdk_max_Gy_s_per_MBq
        ``max_v VDK_v / S`` (Gy s⁻¹ MBq⁻¹); NaN when the case has no VDK.
    """

    spect_sum_MBq: float
    spect_max_fraction: float
    vdk_max_Gy_s_per_MBq: float = math.nan


@dataclass(frozen=True)
class Normalization:
    """The constants of the normalisation (see the module docstring for the formulas).

    Attributes
    ----------
    spect_scale
        ``c_A`` (dimensionless), applied to ``A / S``.
    dose_scale
        ``c_D`` (MBq·s/Gy), applied to ``D / S`` for VDK, ground truth and prediction.
    density_scale
        Divides the density (g/cm³); 1 (density is used as is).
    method
        ``"sum"``: the per-case factor ``S`` is the SPECT sum.
    """

    spect_scale: float
    dose_scale: float
    density_scale: float = 1.0
    method: str = "sum"

    def __post_init__(self) -> None:
        for name in ("spect_scale", "dose_scale", "density_scale"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise InputError(f"normalisation {name} must be a positive number, got {value!r}")
        if self.method != "sum":
            raise InputError(f"unknown normalisation method {self.method!r} (expected 'sum')")

    # -- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, object]:
        """Plain dict (stored in the model file)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Normalization:
        """Inverse of :meth:`to_dict`; unknown or missing keys raise ``InputError``."""
        try:
            return cls(
                spect_scale=float(data["spect_scale"]),  # type: ignore[arg-type]
                dose_scale=float(data["dose_scale"]),  # type: ignore[arg-type]
                density_scale=float(data.get("density_scale", 1.0)),  # type: ignore[arg-type]
                method=str(data.get("method", "sum")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"invalid normalisation record: {exc}") from None

    # -- per-case factor -----------------------------------------------------------------
    @staticmethod
    def check_total(total_MBq: float) -> float:
        """Validate ``S`` (MBq): finite and positive."""
        total = float(total_MBq)
        if not (math.isfinite(total) and total > 0):
            raise InputError(
                f"the SPECT image sums to {total!r} MBq; it must be positive to normalise"
            )
        return total

    def spect_factor(self, total_MBq: float) -> float:
        """``c_A / S`` (1/MBq): multiply SPECT (MBq per voxel) by this."""
        return self.spect_scale / self.check_total(total_MBq)

    def dose_factor(self, total_MBq: float) -> float:
        """``c_D / S`` (s/Gy): multiply a dose-rate map (Gy/s) by this."""
        return self.dose_scale / self.check_total(total_MBq)

    def density_factor(self) -> float:
        """``1 / density_scale`` (cm³/g)."""
        return 1.0 / self.density_scale

    # -- arrays (NumPy): float64 arithmetic; float32 result unless the input is float64 -------
    # The inverse is exact up to rounding: to double precision for float64 arrays, to one
    # float32 rounding (≤ 1 ulp, relative 6e-8) when the normalised array is stored as float32.
    def normalize_spect(self, spect: np.ndarray, total_MBq: float) -> np.ndarray:
        """``Â = c_A · A / S``."""
        return _scaled(spect, self.spect_factor(total_MBq))

    def normalize_density(self, density: np.ndarray) -> np.ndarray:
        """``ρ̂ = ρ / density_scale``."""
        return _scaled(density, self.density_factor())

    def normalize_dose(self, dose: np.ndarray, total_MBq: float) -> np.ndarray:
        """``D̂ = c_D · D / S`` (VDK, ground truth)."""
        return _scaled(dose, self.dose_factor(total_MBq))

    def denormalize_dose(self, dose_normalized: np.ndarray, total_MBq: float) -> np.ndarray:
        """``D = D̂ · S / c_D`` (Gy/s): the inverse of :meth:`normalize_dose`."""
        return _scaled(dose_normalized, self.check_total(total_MBq) / self.dose_scale)


def _scaled(array: np.ndarray, factor: float) -> np.ndarray:
    """``array · factor`` computed in float64; float64 in → float64 out, else float32."""
    array = np.asarray(array)
    out = array.astype(np.float64, copy=False) * factor
    return out if array.dtype == np.float64 else out.astype(np.float32)


def fit_normalization(
    scales: Iterable[CaseScale], *, single_constant: bool = False
) -> Normalization:
    """Fit ``c_A`` and ``c_D`` on the training cases.

    Parameters
    ----------
    scales
        One :class:`CaseScale` per training case.
    single_constant
        Use ``c_D`` for SPECT as well (the paper's single constant).

    Returns
    -------
    Normalization
        ``c_A = 1 / median(spect_max_fraction)``, ``c_D = 1 / median(vdk_max_Gy_s_per_MBq)``.
    """
    scales = list(scales)
    if not scales:
        raise InputError("cannot fit the normalisation: no training cases")
    spect_max = np.array([s.spect_max_fraction for s in scales], dtype=np.float64)
    vdk_max = np.array([s.vdk_max_Gy_s_per_MBq for s in scales], dtype=np.float64)
    vdk_max = vdk_max[np.isfinite(vdk_max) & (vdk_max > 0)]
    if not np.all(np.isfinite(spect_max) & (spect_max > 0)):
        raise InputError("cannot fit the normalisation: a training SPECT image is empty")
    if vdk_max.size == 0:
        raise InputError("cannot fit the normalisation: the training VDK doses are all zero")
    dose_scale = float(1.0 / np.median(vdk_max))
    spect_scale = dose_scale if single_constant else float(1.0 / np.median(spect_max))
    return Normalization(spect_scale=spect_scale, dose_scale=dose_scale)
