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

from numba.extending import register_jitable

from mcdose.physics import layout as L
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
def energy_at_range(inv_range, range_grid, params, m, residual_range):
    """Energy (keV) whose CSDA range in material ``m`` is ``residual_range`` (g/cm²).

    Returns 0 for a non-positive residual range (the electron has stopped).
    """
    if residual_range <= 0.0:
        return 0.0
    n = int(params[L.P_N_R])
    x = (math.log(residual_range) - range_grid[m, L.RG_LOG_R_MIN]) * range_grid[m, L.RG_INV_DLOG_R]
    if x <= 0.0:
        # below the table: R ∝ E^(1+a) ≈ linear scaling in this tiny region
        r0 = math.exp(range_grid[m, L.RG_LOG_R_MIN])
        return inv_range[m, 0] * residual_range / r0
    if x >= n - 1:
        return inv_range[m, n - 1]
    i = int(x)
    f = x - i
    return inv_range[m, i] * (1.0 - f) + inv_range[m, i + 1] * f


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
    if energy <= 0.0:
        return 0.0
    i, f = energy_cell(params, energy)
    return lerp_mat(mat_tab, m, L.E_KAPPA, i, f)


@register_jitable
def step_limits(mat_tab, inv_range, range_grid, params, m, energy):
    """Maximum step (g/cm²), range (g/cm²), λ₁ (g/cm²) and bremsstrahlung Σ_b (cm²/g).

    The step is the smaller of (a) the mass thickness over which the energy falls by the
    fraction ``params[P_STEP_FRAC]`` and (b) ``params[P_STEP_MS]`` transport mean free paths.
    """
    i, f = energy_cell(params, energy)
    r = lerp_mat(mat_tab, m, L.E_RANGE, i, f)
    lam1 = lerp_mat(mat_tab, m, L.E_LAMBDA1, i, f)
    brems = lerp_mat(mat_tab, m, L.E_BREMS, i, f)
    e_low = energy * (1.0 - params[L.P_STEP_FRAC])
    j, g = energy_cell(params, e_low)
    t_loss = r - lerp_mat(mat_tab, m, L.E_RANGE, j, g)
    t_ms = params[L.P_STEP_MS] * lam1
    t = t_loss if t_loss < t_ms else t_ms
    if t > r:
        t = r
    return t, r, lam1, brems


@register_jitable
def sample_ms_cos_theta(ms_table, params, t_over_lambda1, xi):
    """cos θ after a path of ``t_over_lambda1`` transport mean free paths.

    Modified Wentzel sampling: q = (1 − e^(−s/λ₁))/2, A from the table, then
    μ = Aξ/(1 − ξ + A) and cos θ = 1 − 2μ; beyond ``P_MS_Q_ISOTROPIC`` cos θ is uniform.
    """
    q = 0.5 * (1.0 - math.exp(-t_over_lambda1))
    if q >= params[L.P_MS_Q_ISOTROPIC]:
        return 2.0 * xi - 1.0
    if q <= 0.0:
        return 1.0
    n = int(params[L.P_MS_N_Q])
    x = (math.log(q) - params[L.P_MS_LOG_Q_MIN]) * params[L.P_MS_INV_DLOG_Q]
    if x <= 0.0:
        # tiny q: A ln(1/A) ≈ q; the first table entry is accurate enough, scaled linearly
        a = math.exp(ms_table[0]) * q / math.exp(params[L.P_MS_LOG_Q_MIN])
    else:
        if x >= n - 1:
            x = n - 1.000001
        i = int(x)
        f = x - i
        a = math.exp(ms_table[i] * (1.0 - f) + ms_table[i + 1] * f)
    mu = a * xi / (1.0 - xi + a)
    return 1.0 - 2.0 * mu
