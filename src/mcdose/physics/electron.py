"""Condensed-history electron physics: pure scalar functions compiled for CPU and CUDA.

* energy after a step of mass thickness t from the CSDA range table (exact for continuous
  slowing down, no step-size bias): ``E' = R⁻¹(R(E) − t)``;
* step length control (fractional energy loss and a fraction of λ₁);
* angular deflection from the modified Wentzel distribution that honours the
  Goudsmit–Saunderson mean ``⟨cos θ⟩ = exp(−t/λ₁)`` (shared/PHYSICS.md).

References
----------
S. Goudsmit, J. L. Saunderson, Phys. Rev. 57 (1940) 24.
F. Salvat et al., PENELOPE-2008 (NEA 2009) §4.1 (modified Wentzel model, random hinge).
"""

from __future__ import annotations

import math

import numpy as np
from numba.extending import register_jitable

from mcdose.physics import layout as L
from mcdose.physics.fp import F0, F1, F2
from mcdose.physics.interp import grid_index, lerp_mat


@register_jitable
def energy_cell(params, energy):
    """Cell (i, f) of ``energy`` (keV) on the per-material energy grid."""
    return grid_index(
        math.log(energy), params[L.P_LOG_E_MIN], params[L.P_INV_DLOG_E], int(params[L.P_N_E])
    )


@register_jitable
def csda_range(mat_tab, params, m, energy):
    """CSDA range (g/cm²) of an electron of ``energy`` keV in material ``m``."""
    i, f = energy_cell(params, energy)
    return lerp_mat(mat_tab, m, L.E_RANGE, i, f)


@register_jitable
def range_cell(range_grid, params, m, residual_range):
    """Cell of ``residual_range`` (g/cm²) on material ``m``'s inverse-range grid.

    Returns
    -------
    tuple
        (k, g, scale): lower grid point, fraction, and — below the first grid point —
        the factor R/R_min by which the first entry is scaled (1.0 otherwise).
    """
    n = int(params[L.P_N_R])
    log_r_min = range_grid[m, L.RG_LOG_R_MIN]
    x = (math.log(residual_range) - log_r_min) * range_grid[m, L.RG_INV_DLOG_R]
    one = F1 + F0 * x  # 1 in the precision of the tables
    if x <= F0:
        # below the table (E < 1 keV): quantities taken ∝ R, a tiny region
        return 0, F0 * x, residual_range / math.exp(log_r_min)
    if x >= np.float32(n - 1):
        return n - 2, one, one
    k = int(x)
    return k, x - np.float32(k), one


@register_jitable
def energy_at_range(inv_range, range_grid, params, m, residual_range):
    """Energy (keV) whose CSDA range in material ``m`` is ``residual_range`` (g/cm²).

    Returns 0 for a non-positive residual range (the electron has stopped).
    """
    if residual_range <= F0:
        return F0 * residual_range
    k, g, scale = range_cell(range_grid, params, m, residual_range)
    row = L.IR_ENERGY
    return scale * (inv_range[m, row, k] * (F1 - g) + inv_range[m, row, k + 1] * g)


@register_jitable
def state_at_range(inv_range, range_grid, params, m, residual_range):
    """(energy keV, Q) of an electron with ``residual_range`` g/cm² left — one logarithm."""
    if residual_range <= F0:
        zero = F0 * residual_range
        return zero, zero
    k, g, scale = range_cell(range_grid, params, m, residual_range)
    e = scale * (inv_range[m, L.IR_ENERGY, k] * (F1 - g) + inv_range[m, L.IR_ENERGY, k + 1] * g)
    q = scale * (inv_range[m, L.IR_KAPPA, k] * (F1 - g) + inv_range[m, L.IR_KAPPA, k + 1] * g)
    return e, q


@register_jitable
def energy_after_step(mat_tab, inv_range, range_grid, params, m, energy, t):
    """Energy (keV) after a path of mass thickness ``t`` (g/cm²) in material ``m``.

    Never more than ``energy``: the range table and its inverse are interpolated on
    different grids, so for a very short step R⁻¹(R(E) − t) could otherwise exceed E by
    the interpolation error (≲ 1e-5 relative).
    """
    e_new = energy_at_range(
        inv_range, range_grid, params, m, csda_range(mat_tab, params, m, energy) - t
    )
    return e_new if e_new < energy else energy


@register_jitable
def transport_paths(mat_tab, params, m, energy):
    """Q(E): transport mean free paths travelled while slowing down from E to rest."""
    if energy <= F0:
        return F0 * energy
    i, f = energy_cell(params, energy)
    return lerp_mat(mat_tab, m, L.E_KAPPA, i, f)


@register_jitable
def step_limits(mat_tab, params, m, i, f):
    """Step-control quantities of an electron at energy cell (i, f) in material ``m``.

    The maximum step is the smaller of (a) the mass thickness over which the energy falls by
    the fraction ``params[P_STEP_FRAC]`` — on the uniform ln E grid the cell of
    E·(1 − frac) is a constant shift ``params[P_STEP_SHIFT]`` away, no logarithm needed —
    and (b) ``params[P_STEP_MS]`` transport mean free paths.

    Returns
    -------
    tuple
        (maximum step g/cm², CSDA range g/cm², bremsstrahlung Σ_b cm²/g, Q(E))
    """
    r = lerp_mat(mat_tab, m, L.E_RANGE, i, f)
    lam1 = lerp_mat(mat_tab, m, L.E_LAMBDA1, i, f)
    brems = lerp_mat(mat_tab, m, L.E_BREMS, i, f)
    q = lerp_mat(mat_tab, m, L.E_KAPPA, i, f)
    x = np.float32(i) + f + params[L.P_STEP_SHIFT]
    if x <= F0:
        r_low = mat_tab[m, L.E_RANGE, 0]
    else:
        j = int(x)
        r_low = lerp_mat(mat_tab, m, L.E_RANGE, j, x - np.float32(j))
    t_loss = r - r_low
    t_ms = params[L.P_STEP_MS] * lam1
    t = t_loss if t_loss < t_ms else t_ms
    if t > r:
        t = r
    return t, r, brems, q


@register_jitable
def sample_ms_cos_theta(ms_table, params, kappa, xi):
    """cos θ after a step of ``kappa`` transport mean free paths (κ = ∫ds/λ₁).

    Modified Wentzel sampling: A(κ) from the table (one logarithm), μ = Aξ/(1 − ξ + A),
    cos θ = 1 − 2μ; beyond ``P_MS_KAPPA_ISOTROPIC`` cos θ is uniform.
    """
    if kappa >= params[L.P_MS_KAPPA_ISOTROPIC]:
        return F2 * xi - F1
    if kappa <= F0:
        return F1 + F0 * xi
    n = int(params[L.P_MS_N_KAPPA])
    x = (math.log(kappa) - params[L.P_MS_LOG_KAPPA_MIN]) * params[L.P_MS_INV_DLOG_KAPPA]
    if x <= F0:
        # κ < 1e-10: A ∝ κ/ln(1/κ) ≈ proportional over this tiny range
        a = ms_table[0] * kappa / math.exp(params[L.P_MS_LOG_KAPPA_MIN])
    else:
        i = int(x)
        if i >= n - 1:
            i = n - 2
            x = np.float32(n - 1) + F0 * x
        f = x - np.float32(i)
        a = ms_table[i] * (F1 - f) + ms_table[i + 1] * f
    mu = a * xi / (F1 - xi + a)
    return F1 - F2 * mu
