"""Time integration of activity over several SPECT/CT time points, and their registration.

Time-activity models (times ``t`` in hours after administration, activity ``A`` in MBq,
λ_p the physical decay constant of the nuclide):

``mono``
    ``A(t) = A0 · exp(−λ t)`` with λ ≥ λ_p (the effective clearance is never slower than
    physical decay); ``TIA = A0 / λ``.  Needs ≥ 2 time points.
``bi``
    uptake and washout, ``A(t) = A0 · (exp(−λ_e t) − exp(−λ_u t))`` with λ_e ≥ λ_p and
    λ_u > λ_e; ``TIA = A0 · (1/λ_e − 1/λ_u)``.  Needs ≥ 3 time points.
``trapezoid``
    linear rise from 0 at ``t = 0`` to the first point, trapezoids between points, and
    physical decay after the last point: ``TIA = A_1 t_1 / 2 + Σ (A_i + A_{i+1})(t_{i+1} −
    t_i)/2 + A_n / λ_p``.  Needs ≥ 2 time points.

Fits are least squares on the activities (not their logarithms, so empty voxels and noise
are harmless).  Organ-level curves are fitted with :func:`scipy.optimize.curve_fit` within
bounds, started from a global grid search.  Voxel-level fits (millions of voxels) use the
grid search alone, vectorised: for every candidate (λ) or (λ_e, λ_u) the best ``A0`` is
linear least squares in closed form, and the candidate with the smallest residual wins —
bounded by construction, no starting values, no local minima.  The mono-exponential grid
has 384 log-spaced effective half-lives from the physical one down to 3 minutes, refined
by parabolic interpolation; the bi-exponential search has a 48 × 48 grid of log-spaced
(washout, uptake) half-lives, refined twice on local 7 × 7 grids (final steps of 2 %).

Later time points are brought onto the first one's dose grid either through a rigid
registration of their CT to the first CT (:func:`register_rigid`, SimpleITK, Mattes mutual
information, Euler 3-D transform, multi-resolution), or, without a CT, assumed aligned in
patient coordinates.

References
----------
.. [1] M. Lassmann et al., "EANM Dosimetry Committee guidance document: good practice of
   clinical dosimetry reporting", Eur. J. Nucl. Med. Mol. Imaging 38 (2011) 192.
.. [2] J. Gear et al., "EANM practical guidance on uncertainty analysis for molecular
   radiotherapy absorbed dose calculations", EJNMMI 45 (2018) 2456 (fit models).
.. [3] G. Glatting et al., "Choosing the optimal fit function: comparison of the Akaike
   information criterion and the F-test", Med. Phys. 34 (2007) 4285.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mcdose.errors import InputError
from mcdose.io.case import Geometry

__all__ = [
    "INTEGRATION_METHODS",
    "MIN_TIME_POINTS",
    "CurveFit",
    "check_times",
    "fit_time_activity",
    "integrate_by_region",
    "integrate_voxels",
    "register_rigid",
    "time_activity_curve",
]

log = logging.getLogger(__name__)

INTEGRATION_METHODS: tuple[str, ...] = ("mono", "bi", "trapezoid")
MIN_TIME_POINTS = {"mono": 2, "bi": 3, "trapezoid": 2}
#: shortest effective / uptake half-life considered (h)
MIN_HALF_LIFE_H = 0.05
_MONO_GRID = 384
_BI_GRID = 48
_BI_MIN_RATIO = 1.05
_REGISTRATION_SAMPLES = 200_000
#: CTs are registered on voxels of at least this size (mm)
_REGISTRATION_VOXEL_MM = 3.0
_CHUNK_VOXELS = {"mono": 4096, "bi": 1024}


# --------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------


def check_times(hours: Sequence[float], method: str | None = None,
                labels: Sequence[str] | None = None) -> np.ndarray:
    """Validate time points (h after administration): finite, ≥ 0, strictly increasing.

    Parameters
    ----------
    hours : sequence of float
    method : str, optional
        When given, the number of points must suit it (:data:`MIN_TIME_POINTS`).
    labels : sequence of str, optional
        How each time point is named in messages (e.g. the file names).

    Raises
    ------
    InputError
        One line naming the offending time point.
    """
    t = np.asarray([float(h) for h in hours], dtype=np.float64)
    names = list(labels) if labels is not None else [f"#{i + 1}" for i in range(t.size)]
    for i, h in enumerate(t):
        if not math.isfinite(h) or h < 0:
            raise InputError(f"time point {names[i]}: {h:g} h is not a time after "
                             f"administration (must be finite and >= 0)")
    for i in range(1, t.size):
        if not t[i] > t[i - 1]:
            raise InputError(
                f"time points out of order: {names[i]} at {t[i]:g} h comes after "
                f"{names[i - 1]} at {t[i - 1]:g} h; give them in increasing time"
            )
    if method is not None:
        if method not in INTEGRATION_METHODS:
            raise InputError(f"--integration must be one of {', '.join(INTEGRATION_METHODS)}, "
                             f"got {method!r}")
        need = MIN_TIME_POINTS[method]
        if t.size < need:
            raise InputError(f"--integration {method} needs at least {need} time points, got "
                             f"{t.size}")
    return t


# --------------------------------------------------------------------------------------
# model functions
# --------------------------------------------------------------------------------------


def _mono(t: np.ndarray, a0: float, lam: float) -> np.ndarray:
    return a0 * np.exp(-lam * t)


def _bi(t: np.ndarray, a0: float, lam_e: float, delta: float) -> np.ndarray:
    return a0 * (np.exp(-lam_e * t) - np.exp(-(lam_e + delta) * t))


def _trapezoid_tia(t: np.ndarray, a: np.ndarray, lam_p: float) -> np.ndarray:
    """TIA (activity unit × h) along the first axis of ``a`` (shape (T, ...))."""
    tia = a[0] * (0.5 * t[0])
    for i in range(1, t.size):
        tia = tia + 0.5 * (a[i - 1] + a[i]) * (t[i] - t[i - 1])
    return tia + a[-1] / lam_p


def _lambda_grid(lam_p: float, n: int) -> np.ndarray:
    lam_max = math.log(2.0) / MIN_HALF_LIFE_H
    lam_max = max(lam_max, 2.0 * lam_p)
    return np.exp(np.linspace(math.log(lam_p), math.log(lam_max), n))


@dataclass
class CurveFit:
    """A fitted (or integrated) time-activity curve.

    Attributes
    ----------
    method : str
    tia_MBq_h : float
        Time-integrated activity, MBq·h (activity unit × h).
    parameters : dict
        ``A0_MBq``, ``effective_half_life_h`` (mono, bi), ``uptake_half_life_h`` (bi).
    fitted_MBq : list of float
        Model values at the time points (the measured ones for trapezoid).
    """

    method: str
    tia_MBq_h: float
    parameters: dict[str, float] = field(default_factory=dict)
    fitted_MBq: list[float] = field(default_factory=list)


def _grid_mono(t: np.ndarray, a: np.ndarray, lam_p: float) -> tuple[np.ndarray, np.ndarray]:
    """Best (A0, λ) per column of ``a`` (T, N) by grid search + parabolic refinement."""
    lam = _lambda_grid(lam_p, _MONO_GRID)
    basis = np.exp(-np.outer(lam, t))  # (L, T)
    ff = np.sum(basis * basis, axis=1)  # (L,)
    fa = a.T @ basis.T  # (N, L)
    crit = np.where(fa > 0, fa * fa / ff[None, :], 0.0)
    best = np.argmax(crit, axis=1)
    n = a.shape[1]
    cols = np.arange(n)
    x = np.log(lam)
    xb = x[best].copy()
    inner = (best > 0) & (best < lam.size - 1)
    if inner.any():
        c0 = crit[cols[inner], best[inner] - 1]
        c1 = crit[cols[inner], best[inner]]
        c2 = crit[cols[inner], best[inner] + 1]
        denom = c0 - 2.0 * c1 + c2
        with np.errstate(divide="ignore", invalid="ignore"):
            offset = np.where(denom < 0, 0.5 * (c0 - c2) / denom, 0.0)
        offset = np.clip(np.nan_to_num(offset), -0.5, 0.5)
        xb[inner] += offset * (x[1] - x[0])
    lam_b = np.exp(xb)
    f = np.exp(-np.outer(t, lam_b))  # (T, N)
    a0 = np.maximum(np.sum(f * a, axis=0) / np.sum(f * f, axis=0), 0.0)
    return a0, lam_b


def _bi_pairs(lam_p: float) -> tuple[np.ndarray, np.ndarray]:
    lam = _lambda_grid(lam_p, _BI_GRID)
    le, lu = np.meshgrid(lam, lam, indexing="ij")
    keep = lu > le * _BI_MIN_RATIO
    return le[keep], lu[keep]


def _bi_criterion(t: np.ndarray, a: np.ndarray, le: np.ndarray, lu: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(criterion, A0) of candidates ``le, lu`` of shape (C, N) for columns of ``a``."""
    basis = np.exp(-le[:, None, :] * t[None, :, None]) - np.exp(
        -lu[:, None, :] * t[None, :, None])  # (C, T, N)
    ff = np.sum(basis * basis, axis=1)
    fa = np.sum(basis * a[None], axis=1)
    ok = (fa > 0) & (lu > le * _BI_MIN_RATIO) & (ff > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        crit = np.where(ok, fa * fa / ff, 0.0)
        a0 = np.where(ok, fa / ff, 0.0)
    return crit, a0


def _grid_bi(t: np.ndarray, a: np.ndarray, lam_p: float
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best (A0, λ_e, λ_u) per column of ``a`` (T, N): coarse grid, then two local grids."""
    le, lu = _bi_pairs(lam_p)
    basis = np.exp(-np.outer(le, t)) - np.exp(-np.outer(lu, t))  # (P, T)
    ff = np.sum(basis * basis, axis=1)
    fa = a.T @ basis.T  # (N, P): argmax along contiguous rows
    crit = np.where(fa > 0, fa * fa / ff[None, :], 0.0)
    best = np.argmax(crit, axis=1)
    cols = np.arange(a.shape[1])
    a0 = np.maximum(fa[cols, best] / ff[best], 0.0)
    x_e, x_u = np.log(le[best]), np.log(lu[best])
    lo, hi = math.log(lam_p), math.log(max(math.log(2.0) / MIN_HALF_LIFE_H, 2.0 * lam_p))
    step = (hi - lo) / (_BI_GRID - 1)
    offsets = np.linspace(-1.0, 1.0, 7)
    de, du = (g.ravel() for g in np.meshgrid(offsets, offsets, indexing="ij"))
    for _ in range(2):
        ce = np.clip(x_e[None, :] + de[:, None] * step, lo, hi)
        cu = np.clip(x_u[None, :] + du[:, None] * step, lo, hi)
        crit_l, a0_l = _bi_criterion(t, a, np.exp(ce), np.exp(cu))
        k = np.argmax(crit_l, axis=0)
        better = crit_l[k, cols] > 0
        x_e = np.where(better, ce[k, cols], x_e)
        x_u = np.where(better, cu[k, cols], x_u)
        a0 = np.where(better, a0_l[k, cols], a0)
        step /= 3.0
    return np.maximum(a0, 0.0), np.exp(x_e), np.exp(x_u)


# --------------------------------------------------------------------------------------
# organ level
# --------------------------------------------------------------------------------------


def fit_time_activity(
    hours: Sequence[float],
    activity_MBq: Sequence[float],
    method: str,
    half_life_h: float,
) -> CurveFit:
    """Fit (or integrate) one time-activity curve, e.g. an organ's.

    Parameters
    ----------
    hours : sequence of float
        Time points, h after administration (strictly increasing).
    activity_MBq : sequence of float
        Activity at those times (MBq), ≥ 0.
    method : {"mono", "bi", "trapezoid"}
    half_life_h : float
        Physical half-life of the nuclide (h).

    Returns
    -------
    CurveFit

    Raises
    ------
    InputError
        Bad times, too few points for the method, negative activity.
    """
    from scipy.optimize import OptimizeWarning, curve_fit

    t = check_times(hours, method)
    a = np.asarray(activity_MBq, dtype=np.float64)
    if a.shape != t.shape:
        raise InputError(f"{t.size} time points but {a.size} activities")
    if np.any(~np.isfinite(a)) or np.any(a < 0):
        raise InputError("activities must be finite and >= 0")
    lam_p = math.log(2.0) / float(half_life_h)
    if method == "trapezoid":
        tia = float(_trapezoid_tia(t, a, lam_p))
        return CurveFit(method, tia, {}, a.tolist())
    if not np.any(a > 0):
        return CurveFit(method, 0.0, {"A0_MBq": 0.0}, [0.0] * t.size)
    scale = float(a.max())
    y = a / scale
    lam_max = max(math.log(2.0) / MIN_HALF_LIFE_H, 2.0 * lam_p)
    if method == "mono":
        a0, lam = _grid_mono(t, y[:, None], lam_p)
        p0 = [float(a0[0]), float(np.clip(lam[0], lam_p, lam_max))]
        try:
            with warnings.catch_warnings():  # the covariance is not used
                warnings.simplefilter("ignore", OptimizeWarning)
                popt, _ = curve_fit(_mono, t, y, p0=p0,
                                    bounds=([0.0, lam_p], [np.inf, lam_max]), maxfev=2000)
        except (RuntimeError, ValueError):
            popt = p0
        a0f, lamf = float(popt[0]) * scale, float(popt[1])
        return CurveFit(
            method, a0f / lamf,
            {"A0_MBq": a0f, "effective_half_life_h": math.log(2.0) / lamf},
            (_mono(t, a0f, lamf)).tolist(),
        )
    if method == "bi":
        a0, le, lu = _grid_bi(t, y[:, None], lam_p)
        p0 = [float(a0[0]), float(le[0]), float(lu[0] - le[0])]
        try:
            with warnings.catch_warnings():  # the covariance is not used
                warnings.simplefilter("ignore", OptimizeWarning)
                popt, _ = curve_fit(
                    _bi, t, y, p0=p0,
                    bounds=([0.0, lam_p, 1e-6], [np.inf, lam_max, 10 * lam_max]), maxfev=4000)
        except (RuntimeError, ValueError):
            popt = p0
        a0f, lef, df = float(popt[0]) * scale, float(popt[1]), float(popt[2])
        luf = lef + df
        return CurveFit(
            method, a0f * (1.0 / lef - 1.0 / luf),
            {"A0_MBq": a0f, "effective_half_life_h": math.log(2.0) / lef,
             "uptake_half_life_h": math.log(2.0) / luf},
            _bi(t, a0f, lef, df).tolist(),
        )
    raise InputError(f"--integration must be one of {', '.join(INTEGRATION_METHODS)}, "
                     f"got {method!r}")


def time_activity_curve(stack: Sequence[np.ndarray], mask: np.ndarray) -> list[float]:
    """Total activity (MBq) in ``mask`` at each time point of ``stack``."""
    m = np.asarray(mask, dtype=bool)
    return [float(np.sum(np.asarray(a)[m], dtype=np.float64)) for a in stack]


# --------------------------------------------------------------------------------------
# voxel level
# --------------------------------------------------------------------------------------


def integrate_voxels(
    hours: Sequence[float],
    stack: Sequence[np.ndarray],
    method: str,
    half_life_h: float,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Time-integrated activity per voxel (MBq·h, float32).

    Parameters
    ----------
    hours : sequence of float
        Time points (h after administration).
    stack : sequence of ndarray (z, y, x)
        Activity per voxel (MBq) at each time point, on one grid.
    method : {"mono", "bi", "trapezoid"}
    half_life_h : float
        Physical half-life (h).
    mask : ndarray of bool, optional
        Voxels to integrate (others get 0); default every voxel with activity.

    Returns
    -------
    ndarray, float32 (z, y, x)
    """
    t = check_times(hours, method)
    if len(stack) != t.size:
        raise InputError(f"{t.size} time points but {len(stack)} activity maps")
    shape = np.asarray(stack[0]).shape
    lam_p = math.log(2.0) / float(half_life_h)
    out = np.zeros(shape, dtype=np.float32)
    if method == "trapezoid":
        a = np.stack([np.asarray(x, dtype=np.float64) for x in stack])
        tia = _trapezoid_tia(t, a, lam_p)
        out[...] = tia
        if mask is not None:
            out[~mask] = 0.0
        return out
    active = np.zeros(shape, dtype=bool)
    for x in stack:
        active |= np.asarray(x) > 0
    if mask is not None:
        active &= mask
    idx = np.flatnonzero(active)
    flat = [np.asarray(x).reshape(-1) for x in stack]
    result = np.zeros(idx.size, dtype=np.float64)
    chunk = _CHUNK_VOXELS[method]
    for c0 in range(0, idx.size, chunk):
        sel = idx[c0 : c0 + chunk]
        a = np.stack([f[sel] for f in flat]).astype(np.float64)  # (T, N)
        if method == "mono":
            a0, lam = _grid_mono(t, a, lam_p)
            result[c0 : c0 + sel.size] = a0 / lam
        else:
            a0, le, lu = _grid_bi(t, a, lam_p)
            result[c0 : c0 + sel.size] = a0 * (1.0 / le - 1.0 / lu)
    out.reshape(-1)[idx] = result
    return out


def integrate_by_region(
    hours: Sequence[float],
    stack: Sequence[np.ndarray],
    labels: np.ndarray,
    method: str,
    half_life_h: float,
    body: np.ndarray | None = None,
    reference: int = 0,
) -> tuple[np.ndarray, dict[int, CurveFit]]:
    """Time-integrated activity per voxel from organ-level fits.

    Each region's (label value's) total activity curve is fitted; its voxels get the
    activity of the reference time point times the region's ``TIA / A_ref`` (h).  Voxels
    in ``body`` without a label form region 0 (the remainder of the body).

    Returns
    -------
    tia : ndarray, float32 (z, y, x)
        MBq·h per voxel.
    fits : dict
        Label value → :class:`CurveFit` (0: the remainder).
    """
    t = check_times(hours, method)
    if len(stack) != t.size:
        raise InputError(f"{t.size} time points but {len(stack)} activity maps")
    labels = np.asarray(labels)
    area = labels.copy()
    if body is not None:
        area[(labels == 0) & ~body] = -1
    ref = np.asarray(stack[reference], dtype=np.float32)
    out = np.zeros(labels.shape, dtype=np.float32)
    fits: dict[int, CurveFit] = {}
    for value in np.unique(area):
        if value < 0:
            continue
        mask = area == value
        curve = time_activity_curve(stack, mask)
        fit = fit_time_activity(t, curve, method, half_life_h)
        fits[int(value)] = fit
        if curve[reference] > 0:
            out[mask] = ref[mask] * np.float32(fit.tia_MBq_h / curve[reference])
    return out, fits


# --------------------------------------------------------------------------------------
# registration
# --------------------------------------------------------------------------------------


def _coarsen(image: Any) -> Any:
    """Smooth and resample an image to voxels of at least :data:`_REGISTRATION_VOXEL_MM`.

    The SPECT voxels (≈ 4-5 mm) set the accuracy needed; registering a 512 × 512 × 300 CT at
    its own resolution would take minutes.
    """
    import SimpleITK as sitk

    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)
    target = np.maximum(spacing, _REGISTRATION_VOXEL_MM)
    if np.allclose(target, spacing):
        return image
    sigma = np.sqrt(np.maximum(target**2 - spacing**2, 0.0) / 12.0)
    smooth = sitk.DiscreteGaussian(image, [float(v) ** 2 for v in sigma], 32, 0.01, True)
    size = np.asarray(image.GetSize(), dtype=np.float64)
    new_size = [max(1, int(round(n))) for n in size * spacing / target]
    # keep the physical extent: the first voxel centre moves by half the size change
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    origin = (np.asarray(image.GetOrigin()) + direction @ ((target - spacing) / 2.0))
    return sitk.Resample(smooth, new_size, sitk.Transform(), sitk.sitkLinear,
                         [float(v) for v in origin], [float(v) for v in target],
                         image.GetDirection(), -1024.0, sitk.sitkFloat32)


def register_rigid(
    fixed_hu: np.ndarray,
    fixed_geometry: Geometry,
    moving_hu: np.ndarray,
    moving_geometry: Geometry,
    *,
    seed: int = 0,
    iterations: int = 200,
) -> tuple[Any, dict[str, Any]]:
    """Rigid registration of a later CT (moving) to the first CT (fixed).

    Mattes mutual information (32 bins), regular-step gradient descent on an Euler 3-D
    transform started at identity (same patient on the same kind of couch, in scanner
    coordinates), on copies smoothed and resampled to voxels of at least 3 mm,
    multi-resolution (shrink 8-4-2-1 as far as the image is large enough), about 2·10⁵
    random metric samples per level.

    Parameters
    ----------
    fixed_hu, moving_hu : ndarray (z, y, x)
        CT numbers (HU).
    fixed_geometry, moving_geometry : Geometry
    seed : int
        Seed of the metric's random sampling.
    iterations : int
        Optimizer iterations per level.

    Returns
    -------
    transform : SimpleITK.Transform
        Maps fixed (first time point) physical points to moving physical points — what
        :func:`SimpleITK.Resample` needs to bring the moving time point's images onto the
        first one's grid.
    info : dict
        ``translation_mm`` (x, y, z), ``rotation_deg``, ``metric``, ``iterations``.
    """
    import SimpleITK as sitk

    from mcdose.io.images import to_sitk

    fixed = _coarsen(to_sitk(np.clip(fixed_hu, -1024, 2000).astype(np.float32),
                             fixed_geometry))
    moving = _coarsen(to_sitk(np.clip(moving_hu, -1024, 2000).astype(np.float32),
                              moving_geometry))
    size = fixed.GetSize()
    centre = fixed.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2.0 for s in size])
    initial = sitk.Euler3DTransform()
    initial.SetCenter(centre)
    shrink = [f for f in (8, 4, 2) if min(size) // f >= 12] + [1]
    n_voxels = float(np.prod(size))
    # about _REGISTRATION_SAMPLES metric samples per level (at most a quarter of the voxels):
    # a 512 x 512 x 300 CT is registered in seconds, a small one uses many of its voxels
    fractions = [min(0.25, _REGISTRATION_SAMPLES * f**3 / n_voxels) for f in shrink]
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentagePerLevel(fractions, int(seed))
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=4.0, minStep=1e-3, numberOfIterations=int(iterations),
        relaxationFactor=0.6, gradientMagnitudeTolerance=1e-8)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(shrink)
    reg.SetSmoothingSigmasPerLevel([max(f - 1, 0) for f in shrink])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    reg.SetInitialTransform(initial, inPlace=False)
    try:
        transform = reg.Execute(fixed, moving)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise InputError(f"CT registration failed ({lines[-1] if lines else exc}); do the CTs "
                         f"overlap?") from None
    euler = sitk.Euler3DTransform(sitk.CompositeTransform(transform).GetNthTransform(0)) \
        if transform.GetName() == "CompositeTransform" else sitk.Euler3DTransform(transform)
    info = {
        "translation_mm": [float(v) for v in euler.GetTranslation()],
        "rotation_deg": [math.degrees(v) for v in (euler.GetAngleX(), euler.GetAngleY(),
                                                   euler.GetAngleZ())],
        "metric": float(reg.GetMetricValue()),
        "iterations": int(reg.GetOptimizerIteration()),
        "stop": reg.GetOptimizerStopConditionDescription(),
    }
    return transform, info
