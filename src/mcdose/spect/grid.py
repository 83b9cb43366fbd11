"""The cubic SPECT grid over a case, and the maps between the two grids.

Both grids share the case's orientation (``direction``), so every map is separable and works
in index space along each axis:

* case → SPECT, activity: exact volume-overlap rebinning (sum-preserving for everything
  inside the SPECT field of view);
* case → SPECT, density: the overlap-weighted mean (space outside the case counts as air);
* SPECT → case: trilinear interpolation of the activity *concentration*, times the case
  voxel volume.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import numpy as np

from mcdose.errors import InputError

# Elemental mass fractions for the attenuation map.  Water: stoichiometric H2O.  Cortical
# bone: ICRU Report 46 (1992), density 1.92 g/cm³.
_WATER = {"H": 0.111894, "O": 0.888106}
_CORTICAL_BONE = {
    "H": 0.034, "C": 0.155, "N": 0.042, "O": 0.435, "Na": 0.001,
    "Mg": 0.002, "P": 0.103, "S": 0.003, "Ca": 0.225,
}  # fmt: skip
_WATER_DENSITY = 1.0
_BONE_DENSITY = 1.92


@dataclasses.dataclass(frozen=True)
class SpectGrid:
    """A cubic-voxel grid aligned with, and centred on, a case grid.

    Attributes
    ----------
    shape
        ``(nz, ny, nx)`` with ``ny == nx`` (square transaxial matrix).
    pixel_mm
        Voxel edge in mm.
    offset_mm
        ``(x, y, z)`` position of the first SPECT voxel centre relative to the first case
        voxel centre, in mm along the case's own axes.
    """

    shape: tuple[int, int, int]
    pixel_mm: float
    offset_mm: tuple[float, float, float]

    @property
    def voxel_volume_cm3(self) -> float:
        """Volume of one SPECT voxel in cm³."""
        return (self.pixel_mm / 10.0) ** 3

    def origin_mm(self, geometry: Any) -> tuple[float, float, float]:
        """Physical ``(x, y, z)`` position (mm) of the first SPECT voxel centre."""
        direction = np.asarray(getattr(geometry, "direction", np.eye(3).ravel()), float)
        origin = np.asarray(getattr(geometry, "origin_mm", (0.0, 0.0, 0.0)), float)
        position = origin + direction.reshape(3, 3) @ np.asarray(self.offset_mm, float)
        return tuple(float(v) for v in position)

    def to_dict(self, geometry: Any | None = None) -> dict[str, Any]:
        """JSON-ready description (``origin_mm`` and ``direction`` when ``geometry`` is given)."""
        out: dict[str, Any] = {
            "shape_zyx": list(self.shape),
            "spacing_mm": [self.pixel_mm] * 3,
            "offset_mm": list(self.offset_mm),
        }
        if geometry is not None:
            out["origin_mm"] = list(self.origin_mm(geometry))
            out["direction"] = [float(v) for v in getattr(geometry, "direction", np.eye(3).ravel())]
        return out


def spacing_of(geometry: Any) -> tuple[float, float, float]:
    """``(x, y, z)`` voxel spacing in mm of any object with ``spacing_mm``; validated."""
    try:
        spacing = tuple(float(v) for v in geometry.spacing_mm)
    except (AttributeError, TypeError) as exc:
        raise InputError("geometry must have spacing_mm = (x, y, z) in mm") from exc
    if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise InputError(f"geometry.spacing_mm must be three positive numbers, got {spacing}")
    return spacing  # type: ignore[return-value]


def make_spect_grid(
    case_shape: tuple[int, int, int],
    spacing_mm: tuple[float, float, float],
    pixel_mm: float,
    matrix: int | None = None,
) -> SpectGrid:
    """The smallest cubic grid of ``pixel_mm`` voxels centred on the case that covers it.

    Parameters
    ----------
    case_shape
        ``(nz, ny, nx)`` of the case.
    spacing_mm
        ``(x, y, z)`` case spacing in mm.
    pixel_mm
        SPECT voxel size in mm.
    matrix
        Transaxial matrix size; ``None`` for the smallest that covers the case.

    Returns
    -------
    SpectGrid
    """
    nz, ny, nx = case_shape
    sx, sy, sz = spacing_mm
    needed_xy = math.ceil(max(nx * sx, ny * sy) / pixel_mm - 1e-9)
    if matrix is None:
        n_xy = needed_xy
    elif matrix < needed_xy:
        raise InputError(
            f"SpectProtocol.matrix={matrix} × {pixel_mm} mm does not cover the case "
            f"({nx * sx:.1f} × {ny * sy:.1f} mm); use at least {needed_xy} or matrix=None"
        )
    else:
        n_xy = matrix
    n_z = max(1, math.ceil(nz * sz / pixel_mm - 1e-9))
    counts = (n_xy, n_xy, n_z)
    # both grids share their centre: first SPECT centre minus first case centre, per axis
    offset = tuple(
        ((n - 1) * s - (m - 1) * pixel_mm) / 2.0
        for n, s, m in zip((nx, ny, nz), (sx, sy, sz), counts, strict=True)
    )
    return SpectGrid(shape=(n_z, n_xy, n_xy), pixel_mm=float(pixel_mm), offset_mm=offset)


def _overlap_matrix(
    n_case: int, s_case: float, n_spect: int, p: float, offset: float
) -> np.ndarray:
    """Lengths (mm) of the overlaps between SPECT bins (rows) and case bins (columns)."""
    case_edges = (np.arange(n_case + 1) - 0.5) * s_case
    spect_edges = offset - p / 2.0 + np.arange(n_spect + 1) * p
    lo = np.maximum(spect_edges[:-1, None], case_edges[None, :-1])
    hi = np.minimum(spect_edges[1:, None], case_edges[None, 1:])
    return np.clip(hi - lo, 0.0, None)


def _linear_matrix(
    n_case: int, s_case: float, n_spect: int, p: float, offset: float
) -> np.ndarray:
    """Linear-interpolation weights from SPECT voxel centres to case voxel centres.

    Case centres beyond the outermost SPECT centre take that voxel's value (no extrapolation).
    """
    weights = np.zeros((n_case, n_spect))
    if n_spect == 1:
        weights[:, 0] = 1.0
        return weights
    u = np.clip((np.arange(n_case) * s_case - offset) / p, 0.0, n_spect - 1.0)
    j0 = np.minimum(np.floor(u).astype(int), n_spect - 2)
    frac = u - j0
    rows = np.arange(n_case)
    weights[rows, j0] = 1.0 - frac
    weights[rows, j0 + 1] += frac
    return weights


def _apply_separable(
    array: np.ndarray, mz: np.ndarray, my: np.ndarray, mx: np.ndarray
) -> np.ndarray:
    """``out[Z,Y,X] = Σ mz[Z,z] my[Y,y] mx[X,x] array[z,y,x]``, in float32."""
    a = np.asarray(array, dtype=np.float32)
    mz, my, mx = (np.asarray(m, dtype=np.float32) for m in (mz, my, mx))
    # contract the axis that shrinks the data most first
    steps = sorted(
        ((0, mz), (1, my), (2, mx)), key=lambda item: item[1].shape[0] / item[1].shape[1]
    )
    for axis, matrix in steps:
        a = np.moveaxis(np.tensordot(matrix, a, axes=([1], [axis])), 0, axis)
    return np.ascontiguousarray(a, dtype=np.float32)


def _axis_matrices(grid: SpectGrid, case_shape, spacing_mm, kind: str) -> tuple[np.ndarray, ...]:
    nz, ny, nx = case_shape
    mz_, my_, mx_ = grid.shape
    build = {"overlap": _overlap_matrix, "linear": _linear_matrix}[kind]
    p = grid.pixel_mm
    ox, oy, oz = grid.offset_mm
    sx, sy, sz = spacing_mm
    return (
        build(nz, sz, mz_, p, oz),
        build(ny, sy, my_, p, oy),
        build(nx, sx, mx_, p, ox),
    )


def rebin_sum(array: np.ndarray, spacing_mm, grid: SpectGrid) -> np.ndarray:
    """Rebin a per-voxel quantity (e.g. MBq per voxel) onto ``grid``, preserving its sum.

    Parameters
    ----------
    array
        ``(z, y, x)`` values per case voxel.
    spacing_mm
        ``(x, y, z)`` case spacing in mm.
    grid
        Target SPECT grid (must cover the case for the sum to be preserved exactly).

    Returns
    -------
    numpy.ndarray
        ``grid.shape`` float32, each SPECT voxel holding the volume-weighted share of the
        case voxels it overlaps.
    """
    mats = _axis_matrices(grid, array.shape, spacing_mm, "overlap")
    sx, sy, sz = spacing_mm
    return _apply_separable(array, mats[0] / sz, mats[1] / sy, mats[2] / sx)


def rebin_mean(array: np.ndarray, spacing_mm, grid: SpectGrid) -> np.ndarray:
    """Volume-weighted mean of an intensive quantity (e.g. density) on ``grid``.

    The part of a SPECT voxel outside the case counts as zero (air).
    """
    mats = _axis_matrices(grid, array.shape, spacing_mm, "overlap")
    p = grid.pixel_mm
    return _apply_separable(array, mats[0] / p, mats[1] / p, mats[2] / p)


def interpolate_to_case(
    array: np.ndarray, grid: SpectGrid, case_shape, spacing_mm
) -> np.ndarray:
    """Trilinear interpolation of a SPECT-grid image at the case voxel centres.

    Parameters
    ----------
    array
        ``grid.shape`` image of an intensive quantity (e.g. MBq/mL).
    grid
        Its grid.
    case_shape, spacing_mm
        Case ``(nz, ny, nx)`` and ``(x, y, z)`` spacing in mm.

    Returns
    -------
    numpy.ndarray
        ``case_shape`` float32.
    """
    mats = _axis_matrices(grid, case_shape, spacing_mm, "linear")
    return _apply_separable(array, *mats)


@functools.lru_cache(maxsize=16)
def _mass_attenuation(fractions: tuple[tuple[str, float], ...], energy_keV: float) -> float:
    import xraydb

    return float(
        sum(w * xraydb.mu_elam(el, energy_keV * 1000.0, kind="total") for el, w in fractions)
    )


def mass_attenuation_cm2_g(density_g_cm3: np.ndarray, energy_keV: float) -> np.ndarray:
    """Narrow-beam μ/ρ (cm²/g, total with coherent) assigned from density.

    Water's μ/ρ up to 1.0 g/cm³ (air, lung, adipose and soft tissue are within 1 % of water
    at 208 keV, where Compton scattering dominates), ICRU-46 cortical bone's from 1.92 g/cm³,
    linear in density between.  Elemental cross sections: xraydb (Elam, Ravel & Sieber 2002).
    At 208.4 keV water is 0.1351 cm²/g (NIST XCOM 0.1351) and cortical bone 0.1287 cm²/g.
    """
    water = _mass_attenuation(tuple(_WATER.items()), float(energy_keV))
    bone = _mass_attenuation(tuple(_CORTICAL_BONE.items()), float(energy_keV))
    t = np.clip((density_g_cm3 - _WATER_DENSITY) / (_BONE_DENSITY - _WATER_DENSITY), 0.0, 1.0)
    return (water + t * (bone - water)).astype(np.float32)


def attenuation_map_per_cm(density_g_cm3: np.ndarray, energy_keV: float) -> np.ndarray:
    """Linear attenuation coefficient μ (cm⁻¹) at ``energy_keV`` from a density map (g/cm³)."""
    density = np.asarray(density_g_cm3, dtype=np.float32)
    return (density * mass_attenuation_cm2_g(density, energy_keV)).astype(np.float32)
