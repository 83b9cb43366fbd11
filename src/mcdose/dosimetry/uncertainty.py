"""Uncertainty budget of the mean absorbed dose of each organ and lesion (EANM 2018).

After the EANM guidance (Gear et al. 2018 [1]_), the relative standard uncertainty of a
region's mean absorbed dose combines, in quadrature (independent terms), those of:

``calibration``
    the SPECT calibration factor (user-given relative standard uncertainty,
    ``--calibration-uncertainty``; not counted when not given);
``volume``
    the volume / segmentation: the region's boundary uncertain by half a voxel along each
    axis (``u(V) = Σ_faces A_face · s_axis / 2``, faces of the mask's surface); the mass
    scales with the volume and the dose with 1/mass (sensitivity 1: the activity of an
    organ VOI is taken as insensitive to its border, Gear et al. §"Absorbed dose");
``fit``
    the time-activity fit: the TIA's standard uncertainty from the parameter covariance
    (:mod:`~mcdose.dosimetry.timeintegration`), ``u(TIA)/TIA`` (several time points);
``recovery``
    the recovery correction of a lesion: ``u(RC)/RC`` (:mod:`~mcdose.dosimetry.recovery`,
    including the volume uncertainty through dRC/dV);
``mc``
    Monte Carlo statistics: from the per-voxel relative standard error ``σ_i``,
    ``u(D̄)/D̄ = sqrt(Σ (σ_i D_i)²) / Σ D_i`` (voxels independent; ``--method mc`` only).

Each term is None where it does not apply; the total is the quadrature sum of the others.

References
----------
.. [1] J. Gear et al., "EANM practical guidance on uncertainty analysis for molecular
   radiotherapy absorbed dose calculations", Eur. J. Nucl. Med. Mol. Imaging 45 (2018)
   2456-2474.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["TERMS", "combine", "mc_relative_uncertainty", "volume_uncertainty_ml"]

TERMS: tuple[str, ...] = ("calibration", "volume", "fit", "recovery", "mc")


def volume_uncertainty_ml(mask: np.ndarray, spacing_mm: Sequence[float]) -> float:
    """Standard uncertainty (ml) of a region's volume: its surface moved by half a voxel.

    Parameters
    ----------
    mask : ndarray of bool (z, y, x)
    spacing_mm : (sx, sy, sz)
        Voxel size (mm), x fastest as in :class:`mcdose.io.case.Geometry`.
    """
    m = np.pad(np.asarray(mask, dtype=bool), 1)
    sx, sy, sz = (float(v) for v in spacing_mm)
    total_mm3 = 0.0
    # axis 0 = z (faces of area sx·sy, normal step sz), 1 = y, 2 = x
    for axis, (area, step) in enumerate(((sx * sy, sz), (sx * sz, sy), (sy * sz, sx))):
        faces = int(np.count_nonzero(np.diff(m, axis=axis)))
        total_mm3 += faces * area * 0.5 * step
    return total_mm3 / 1000.0


def mc_relative_uncertainty(dose: np.ndarray, relative: np.ndarray | None,
                            mask: np.ndarray) -> float | None:
    """Relative standard uncertainty of the mean dose in ``mask`` from per-voxel MC errors."""
    if relative is None:
        return None
    d = np.asarray(dose, dtype=np.float64)[mask]
    r = np.asarray(relative, dtype=np.float64)[mask]
    total = float(d.sum())
    if not total > 0:
        return None
    return float(math.sqrt(float(np.sum((r * d) ** 2)))) / total


def combine(terms: Mapping[str, float | None]) -> float:
    """Quadrature sum of the terms that are not None (relative standard uncertainties)."""
    return math.sqrt(sum(float(v) ** 2 for v in terms.values() if v is not None))
