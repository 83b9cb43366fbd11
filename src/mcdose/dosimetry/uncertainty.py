"""Uncertainty budget of the mean absorbed dose of each organ and lesion (EANM 2018).

After the EANM guidance (Gear et al. 2018 [1]_), the relative standard uncertainty of a
region's mean absorbed dose combines, in quadrature (independent terms), those of:

``calibration``
    the SPECT calibration factor (user-given relative standard uncertainty,
    ``--calibration-uncertainty``; not counted when not given);
``volume``
    the volume / segmentation: the region's boundary position known to within ± half a
    voxel of the image it was drawn on (the CT, usually), a rectangular distribution of
    standard deviation ``σ = s/√12`` per axis (GUM 4.3.7); ``u(V) = A·σ`` with the surface
    area A estimated from the mask's voxel faces on the dose grid divided by 3/2 (the mean
    of |n_x| + |n_y| + |n_z| over directions: a staircase surface has 3/2 the area of a
    smooth one).  The mass scales with the volume and the dose with 1/mass (sensitivity 1:
    the activity of an organ VOI is taken as insensitive to its border, as in Gear et al.'s
    worked example);
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

__all__ = ["TERMS", "combine", "mc_relative_uncertainty", "surface_area_mm2",
           "volume_uncertainty_ml"]

TERMS: tuple[str, ...] = ("calibration", "volume", "fit", "recovery", "mc")


#: voxel-face area of a digitised smooth surface / its true area (mean |n_x|+|n_y|+|n_z|)
STAIRCASE_AREA_RATIO = 1.5


def surface_area_mm2(mask: np.ndarray, spacing_mm: Sequence[float]) -> float:
    """Surface area (mm²) of a mask: its voxel faces divided by :data:`STAIRCASE_AREA_RATIO`."""
    m = np.pad(np.asarray(mask, dtype=bool), 1)
    sx, sy, sz = (float(v) for v in spacing_mm)
    area = 0.0
    for axis, face in enumerate((sx * sy, sx * sz, sy * sz)):  # normals z, y, x
        area += int(np.count_nonzero(np.diff(m, axis=axis))) * face
    return area / STAIRCASE_AREA_RATIO


def volume_uncertainty_ml(mask: np.ndarray, spacing_mm: Sequence[float],
                          drawn_spacing_mm: Sequence[float] | None = None) -> float:
    """Standard uncertainty (ml) of a region's volume from its segmentation.

    Parameters
    ----------
    mask : ndarray of bool (z, y, x)
        The region on the dose grid.
    spacing_mm : (sx, sy, sz)
        Voxel size of the dose grid (mm), x first as in :class:`mcdose.io.case.Geometry`.
    drawn_spacing_mm : (sx, sy, sz), optional
        Voxel size of the image the region was drawn on (default: the dose grid's); the
        boundary is uncertain by ± half of it (σ = s/√12, the mean over the axes).
    """
    drawn = spacing_mm if drawn_spacing_mm is None else drawn_spacing_mm
    sigma_mm = float(np.mean([float(v) for v in drawn])) / math.sqrt(12.0)
    return surface_area_mm2(mask, spacing_mm) * sigma_mm / 1000.0


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
