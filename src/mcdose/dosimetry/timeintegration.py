"""Time integration of activity over several SPECT/CT time points, and their registration.

Time-activity models (times ``t`` in hours after administration, activity ``A`` in MBq,
λ_p the physical decay constant of the nuclide):

``mono``
    ``A(t) = A0 · exp(−λ t)`` with λ ≥ λ_p (the effective clearance is never slower than
    physical decay); ``TIA = A0 / λ``.  Needs ≥ 2 time points.
``bi``
    uptake and washout, ``A(t) = A0 · (exp(−λ_e t) − exp(−λ_u t))`` with λ_e ≥ λ_p and
    λ_u > λ_e; ``TIA = A0 · (1/λ_e − 1/λ_u)``.  Needs ≥ 3 time points.
``tri``
    uptake and two washout phases, ``A(t) = A1 e^(−λ1 t) + A2 e^(−λ2 t) − (A1 + A2)
    e^(−λu t)`` with λ_p ≤ λ1 < λ2 < λu and A1, A2 ≥ 0 (so A(0) = 0 and A(t) ≥ 0);
    ``TIA = A1/λ1 + A2/λ2 − (A1 + A2)/λu``.  Needs ≥ 5 time points (organ level only).
``trapezoid``
    linear rise from 0 at ``t = 0`` to the first point, trapezoids between points, and
    physical decay after the last point: ``TIA = A_1 t_1 / 2 + Σ (A_i + A_{i+1})(t_{i+1} −
    t_i)/2 + A_n / λ_p``.  Needs ≥ 2 time points.
``auto``
    model selection by the corrected Akaike information criterion (Glatting et al. 2007
    [3]_, Burnham & Anderson): for least squares with ``n`` points, ``K`` fitted
    parameters and residual sum of squares SSR, ``AICc = n ln(SSR/n) + 2K + 2K(K+1)/(n −
    K − 1)``.  A model is a candidate only when ``n ≥ K + 2`` (the correction term is
    finite) — the number of time points guards against over-fitting: mono (K = 2) needs 4
    points, bi (K = 3) 5, tri (K = 5) 7.  The candidate with the smallest AICc wins; its
    Akaike weight ``w_i = exp(−Δ_i/2) / Σ_j exp(−Δ_j/2)`` is reported.  Fallback (stated):
    with fewer points than any candidate needs, the simplest model, mono, is used and no
    weight is given.  At voxel level the candidates are mono and bi only (tri's five
    parameters are not identifiable from one noisy voxel curve, and a vectorised search
    over five parameters is too costly); each voxel gets its own choice.

Every model's slowest clearance is at least physical decay (λ ≥ λ_p); the bi- and
tri-exponential models start from 0 at ``t = 0`` (uptake phase).

The fit uncertainty of an organ's TIA is propagated from the parameter covariance of
:func:`scipy.optimize.curve_fit` (residual-scaled, ``absolute_sigma=False``) by the first-
order (delta) method, ``u²(TIA) = g^T C g`` with ``g = ∂TIA/∂p`` (Gear et al. 2018 [2]_, eq.
for the propagation of fit parameters); with as many points as parameters it is not
estimable (reported as None).

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
    "aicc",
    "akaike_weights",
    "check_times",
    "fit_time_activity",
    "integrate_by_region",
    "integrate_voxels",
    "model_curve",
    "register_rigid",
    "time_activity_curve",
]

log = logging.getLogger(__name__)

INTEGRATION_METHODS: tuple[str, ...] = ("mono", "bi", "tri", "trapezoid", "auto")
MIN_TIME_POINTS = {"mono": 2, "bi": 3, "tri": 5, "trapezoid": 2, "auto": 2}
#: fitted parameters of each model (K of the AICc)
N_PARAMETERS = {"mono": 2, "bi": 3, "tri": 5}
#: models ``auto`` chooses among, at organ level and at voxel level
AUTO_CANDIDATES = ("mono", "bi", "tri")
AUTO_VOXEL_CANDIDATES = ("mono", "bi")
#: the stated fallback of ``auto`` when no candidate has enough points for its AICc
AUTO_FALLBACK = "mono"
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


def _tri(t: np.ndarray, a1: float, lam1: float, a2: float, d2: float, du: float) -> np.ndarray:
    lam2 = lam1 + d2
    lamu = lam2 + du
    return a1 * np.exp(-lam1 * t) + a2 * np.exp(-lam2 * t) - (a1 + a2) * np.exp(-lamu * t)


def _tia_of(method: str, p: Sequence[float]) -> float:
    """TIA (activity unit × h) of the model ``method`` with fit parameters ``p``."""
    if method == "mono":
        return p[0] / p[1]
    if method == "bi":
        return p[0] * (1.0 / p[1] - 1.0 / (p[1] + p[2]))
    lam2 = p[1] + p[3]
    lamu = lam2 + p[4]
    return p[0] / p[1] + p[2] / lam2 - (p[0] + p[2]) / lamu


_MODEL_FUNCTIONS = {"mono": _mono, "bi": _bi, "tri": _tri}


def aicc(ssr: Any, n: int, k: int) -> Any:
    """Corrected Akaike information criterion of a least-squares fit.

    ``AICc = n ln(SSR/n) + 2k + 2k(k+1)/(n − k − 1)`` (Burnham & Anderson 2002; Glatting
    et al., Med. Phys. 34 (2007) 4285); infinite when ``n ≤ k + 1`` (not a candidate).

    Parameters
    ----------
    ssr : float or ndarray
        Residual sum of squares (activity unit²), > 0.
    n : int
        Number of time points.
    k : int
        Number of fitted parameters.
    """
    if n <= k + 1:
        return np.full(np.shape(ssr), np.inf) if np.ndim(ssr) else math.inf
    return n * np.log(np.asarray(ssr) / n) + 2 * k + 2.0 * k * (k + 1) / (n - k - 1)


def akaike_weights(values: dict[str, float]) -> dict[str, float]:
    """Akaike weights ``exp(−Δ_i/2) / Σ exp(−Δ_j/2)`` of finite AICc values."""
    finite = {m: v for m, v in values.items() if math.isfinite(v)}
    if not finite:
        return {}
    best = min(finite.values())
    raw = {m: math.exp(-0.5 * (v - best)) for m, v in finite.items()}
    total = sum(raw.values())
    return {m: r / total for m, r in raw.items()}


def model_curve(method: str, parameters: dict[str, float], t: Any) -> np.ndarray | None:
    """Activity (MBq) of a fitted model at times ``t`` (h); None for trapezoid."""
    t = np.asarray(t, dtype=np.float64)
    p = parameters
    ln2 = math.log(2.0)
    if method == "mono" and "effective_half_life_h" in p:
        return _mono(t, p["A0_MBq"], ln2 / p["effective_half_life_h"])
    if method == "bi" and "uptake_half_life_h" in p:
        le, lu = ln2 / p["effective_half_life_h"], ln2 / p["uptake_half_life_h"]
        return _bi(t, p["A0_MBq"], le, lu - le)
    if method == "tri" and "half_life_2_h" in p:
        l1, l2 = ln2 / p["effective_half_life_h"], ln2 / p["half_life_2_h"]
        lu = ln2 / p["uptake_half_life_h"]
        return _tri(t, p["A1_MBq"], l1, p["A2_MBq"], l2 - l1, lu - l2)
    return None


@dataclass
class CurveFit:
    """A fitted (or integrated) time-activity curve.

    Attributes
    ----------
    method : str
        The model used (for ``auto``: the chosen one).
    tia_MBq_h : float
        Time-integrated activity, MBq·h (activity unit × h).
    parameters : dict
        ``A0_MBq``, ``effective_half_life_h`` (mono, bi; the slowest phase of tri),
        ``uptake_half_life_h`` (bi, tri), ``A1_MBq``, ``A2_MBq``, ``half_life_2_h`` (tri).
    fitted_MBq : list of float
        Model values at the time points (the measured ones for trapezoid).
    tia_sd_MBq_h : float or None
        Standard uncertainty of the TIA from the parameter covariance (None: not
        estimable, e.g. as many points as parameters, or trapezoid).
    aicc : float or None
        AICc of this model (None: too few points).
    aicc_weight : float or None
        Akaike weight of this model among the candidates (``auto`` only).
    candidates : dict
        ``auto``: model → ``{"aicc", "weight", "tia_MBq_h"}`` of every model tried.
    requested : str
        The model asked for (``auto`` or the model itself).
    """

    method: str
    tia_MBq_h: float
    parameters: dict[str, float] = field(default_factory=dict)
    fitted_MBq: list[float] = field(default_factory=list)
    tia_sd_MBq_h: float | None = None
    aicc: float | None = None
    aicc_weight: float | None = None
    candidates: dict[str, dict[str, Any]] = field(default_factory=dict)
    requested: str = ""

    def record(self) -> dict[str, Any]:
        """JSON-ready dict of the fit (report, provenance)."""
        return {"method": self.method, "requested": self.requested or self.method,
                "tia_MBq_h": self.tia_MBq_h, "tia_sd_MBq_h": self.tia_sd_MBq_h,
                "aicc": self.aicc, "aicc_weight": self.aicc_weight,
                "parameters": self.parameters, "fitted_MBq": self.fitted_MBq,
                "candidates": self.candidates}


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


def _tia_sd(method: str, popt: np.ndarray, pcov: Any, scale: float) -> float | None:
    """First-order propagation of the parameter covariance to the TIA (activity × h)."""
    if pcov is None:
        return None
    cov = np.asarray(pcov, dtype=np.float64)
    if cov.shape != (popt.size, popt.size) or not np.all(np.isfinite(cov)):
        return None
    grad = np.empty(popt.size)
    for i in range(popt.size):
        h = 1e-6 * max(abs(float(popt[i])), 1e-9)
        up, down = popt.copy(), popt.copy()
        up[i] += h
        down[i] -= h
        grad[i] = (_tia_of(method, up) - _tia_of(method, down)) / (2 * h)
    var = float(grad @ cov @ grad)
    return math.sqrt(var) * scale if var >= 0 and math.isfinite(var) else None


def _curve_fit(method: str, t: np.ndarray, y: np.ndarray, starts: list[list[float]],
               bounds: tuple[list[float], list[float]], maxfev: int
               ) -> tuple[np.ndarray, Any, float]:
    """Best of ``curve_fit`` from each start (SSR), its covariance and SSR."""
    from scipy.optimize import OptimizeWarning, curve_fit

    f = _MODEL_FUNCTIONS[method]
    best: tuple[np.ndarray, Any, float] | None = None
    lo, hi = np.asarray(bounds[0]), np.asarray(bounds[1])
    for p0 in starts:
        p0 = np.clip(np.asarray(p0, dtype=np.float64), lo, hi)
        try:
            with warnings.catch_warnings():  # an inestimable covariance is reported as None
                warnings.simplefilter("ignore", OptimizeWarning)
                warnings.simplefilter("ignore", RuntimeWarning)
                popt, pcov = curve_fit(f, t, y, p0=p0, bounds=bounds, maxfev=maxfev)
        except (RuntimeError, ValueError):
            popt, pcov = p0, None
        ssr = float(np.sum((f(t, *popt) - y) ** 2))
        if best is None or ssr < best[2]:
            best = (np.asarray(popt, dtype=np.float64), pcov, ssr)
    assert best is not None
    return best


def _fit_model(method: str, t: np.ndarray, y: np.ndarray, lam_p: float
               ) -> tuple[np.ndarray, Any, float]:
    """Least-squares fit of ``method`` to ``y`` (scaled activities): (popt, pcov, SSR)."""
    lam_max = max(math.log(2.0) / MIN_HALF_LIFE_H, 2.0 * lam_p)
    if method == "mono":
        a0, lam = _grid_mono(t, y[:, None], lam_p)
        return _curve_fit("mono", t, y, [[float(a0[0]), float(lam[0])]],
                          ([0.0, lam_p], [np.inf, lam_max]), 2000)
    a0, le, lu = _grid_bi(t, y[:, None], lam_p)
    bi_start = [float(a0[0]), float(le[0]), float(max(lu[0] - le[0], 1e-6))]
    if method == "bi":
        return _curve_fit("bi", t, y, [bi_start],
                          ([0.0, lam_p, 1e-6], [np.inf, lam_max, 10 * lam_max]), 4000)
    # tri: start from the bi-exponential fit split into two washout phases, and from a
    # fast + slow washout with a fast uptake
    a, lam_e, lam_u = bi_start[0], bi_start[1], bi_start[1] + bi_start[2]
    starts = [
        [0.7 * a, lam_e, 0.3 * a, 0.5 * (lam_u - lam_e), 0.5 * (lam_u - lam_e)],
        [0.5 * a, lam_e, 0.5 * a, 2.0 * lam_e, max(lam_u - 3.0 * lam_e, 4.0 * lam_e)],
        [0.3 * a, lam_p, 1.0 * a, 0.1, 2.0],
    ]
    return _curve_fit("tri", t, y, starts,
                      ([0.0, lam_p, 0.0, 1e-6, 1e-6],
                       [np.inf, lam_max, np.inf, 10 * lam_max, 10 * lam_max]), 8000)


def _parameters(method: str, p: np.ndarray, scale: float) -> dict[str, float]:
    ln2 = math.log(2.0)
    if method == "mono":
        return {"A0_MBq": p[0] * scale, "effective_half_life_h": ln2 / p[1]}
    if method == "bi":
        return {"A0_MBq": p[0] * scale, "effective_half_life_h": ln2 / p[1],
                "uptake_half_life_h": ln2 / (p[1] + p[2])}
    lam2 = p[1] + p[3]
    return {"A1_MBq": p[0] * scale, "effective_half_life_h": ln2 / p[1],
            "A2_MBq": p[2] * scale, "half_life_2_h": ln2 / lam2,
            "uptake_half_life_h": ln2 / (lam2 + p[4])}


def _fit_one(method: str, t: np.ndarray, a: np.ndarray, y: np.ndarray, scale: float,
             lam_p: float) -> CurveFit:
    popt, pcov, ssr_scaled = _fit_model(method, t, y, lam_p)
    tia = float(_tia_of(method, popt)) * scale
    fitted = (_MODEL_FUNCTIONS[method](t, *popt) * scale).tolist()
    ssr = max(ssr_scaled * scale * scale, _ssr_floor(a))
    value = aicc(ssr, t.size, N_PARAMETERS[method])
    sd = _tia_sd(method, popt, pcov, scale) if t.size > N_PARAMETERS[method] else None
    return CurveFit(method, tia, _parameters(method, popt, scale), fitted, tia_sd_MBq_h=sd,
                    aicc=float(value) if math.isfinite(value) else None, requested=method)


def _ssr_floor(a: Any) -> Any:
    """Smallest SSR used in the AICc (a perfect fit would give ln 0): (1e-6 · max |A|)² · n."""
    a = np.asarray(a, dtype=np.float64)
    return (1e-6 * np.max(np.abs(a), axis=0)) ** 2 * a.shape[0] + 1e-300


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
    method : {"mono", "bi", "tri", "trapezoid", "auto"}
        ``auto``: the model of smallest AICc among mono, bi, tri (module docstring).
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
    t = check_times(hours, method)
    a = np.asarray(activity_MBq, dtype=np.float64)
    if a.shape != t.shape:
        raise InputError(f"{t.size} time points but {a.size} activities")
    if np.any(~np.isfinite(a)) or np.any(a < 0):
        raise InputError("activities must be finite and >= 0")
    lam_p = math.log(2.0) / float(half_life_h)
    if method == "trapezoid":
        tia = float(_trapezoid_tia(t, a, lam_p))
        return CurveFit(method, tia, {}, a.tolist(), requested=method)
    if not np.any(a > 0):
        chosen = AUTO_FALLBACK if method == "auto" else method
        return CurveFit(chosen, 0.0, {"A0_MBq": 0.0}, [0.0] * t.size, tia_sd_MBq_h=0.0,
                        requested=method)
    scale = float(a.max())
    y = a / scale
    if method != "auto":
        return _fit_one(method, t, a, y, scale, lam_p)
    fits = {m: _fit_one(m, t, a, y, scale, lam_p) for m in AUTO_CANDIDATES
            if t.size >= MIN_TIME_POINTS[m] and t.size >= N_PARAMETERS[m] + 2}
    weights = akaike_weights({m: f.aicc for m, f in fits.items() if f.aicc is not None})
    if not weights:  # the stated fallback: too few points for any AICc
        fit = fits.get(AUTO_FALLBACK) or _fit_one(AUTO_FALLBACK, t, a, y, scale, lam_p)
    else:
        fit = fits[min(weights, key=lambda m: fits[m].aicc)]  # type: ignore[arg-type,return-value]
        fit.aicc_weight = weights[fit.method]
    fit.requested = "auto"
    fit.candidates = {m: {"aicc": f.aicc, "weight": weights.get(m), "tia_MBq_h": f.tia_MBq_h}
                      for m, f in fits.items()}
    return fit


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
    choices: dict[str, int] | None = None,
) -> np.ndarray:
    """Time-integrated activity per voxel (MBq·h, float32).

    Parameters
    ----------
    hours : sequence of float
        Time points (h after administration).
    stack : sequence of ndarray (z, y, x)
        Activity per voxel (MBq) at each time point, on one grid.
    method : {"mono", "bi", "trapezoid", "auto"}
        ``auto``: per voxel, mono or bi by AICc (``tri`` is organ-level only: refused).
    half_life_h : float
        Physical half-life (h).
    mask : ndarray of bool, optional
        Voxels to integrate (others get 0); default every voxel with activity.
    choices : dict, optional
        ``auto``: filled with the number of voxels that chose each model.

    Returns
    -------
    ndarray, float32 (z, y, x)
    """
    t = check_times(hours, method)
    if method == "tri":
        raise InputError("--integration tri is fitted per organ only; use --fit-level organ "
                         "(or --integration auto, which uses mono/bi per voxel)")
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
    models = _voxel_candidates(t.size) if method == "auto" else (method,)
    counts = dict.fromkeys(models, 0)
    chunk = _CHUNK_VOXELS["bi" if "bi" in models else "mono"]
    for c0 in range(0, idx.size, chunk):
        sel = idx[c0 : c0 + chunk]
        a = np.stack([f[sel] for f in flat]).astype(np.float64)  # (T, N)
        tias, scores = [], []
        for m in models:
            if m == "mono":
                a0, lam = _grid_mono(t, a, lam_p)
                fitted = a0[None, :] * np.exp(-np.outer(t, lam))
                tias.append(a0 / lam)
            else:
                a0, le, lu = _grid_bi(t, a, lam_p)
                fitted = a0[None, :] * (np.exp(-np.outer(t, le)) - np.exp(-np.outer(t, lu)))
                tias.append(a0 * (1.0 / le - 1.0 / lu))
            if len(models) > 1:
                ssr = np.maximum(np.sum((fitted - a) ** 2, axis=0), _ssr_floor(a))
                scores.append(aicc(ssr, t.size, N_PARAMETERS[m]))
        if len(models) == 1:
            result[c0 : c0 + sel.size] = tias[0]
            counts[models[0]] += sel.size
            continue
        best = np.argmin(np.stack(scores), axis=0)
        result[c0 : c0 + sel.size] = np.choose(best, tias)
        for i, m in enumerate(models):
            counts[m] += int(np.count_nonzero(best == i))
    out.reshape(-1)[idx] = result
    if choices is not None:
        choices.update(counts)
    return out


def _voxel_candidates(n: int) -> tuple[str, ...]:
    """Models ``auto`` compares per voxel with ``n`` time points (the fallback alone if none
    has enough points for its AICc)."""
    models = tuple(m for m in AUTO_VOXEL_CANDIDATES if n >= N_PARAMETERS[m] + 2)
    return models or (AUTO_FALLBACK,)


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
