"""Physics tables packed for the transport kernels.

:func:`build_physics_tables` evaluates the physics data of :mod:`mcdose.physics.photon_data`
and :mod:`mcdose.physics.electron_data` once per material on a grid uniform in ln E, and
precomputes the inverse cumulative distributions that let the kernels sample Compton and
Rayleigh angles and multiple-scattering deflections without rejection loops (rejection-free
sampling keeps GPU warps together).  The arrays are laid out as
:mod:`mcdose.physics.layout` describes; :class:`PhysicsTables` holds them.

Models (see docs/physics.md and shared/PHYSICS.md)
-------------------------------------------------
* Continuous electron energy loss uses the *restricted* stopping power
  ``S_r = S_col + S_rad · min(1, k_c/E)``: bremsstrahlung photons below ``k_c`` are absorbed
  along the track, those above ``k_c`` are produced explicitly with a 1/k spectrum, i.e. a
  number ``Σ_b = (S_rad/E) · ln(E/k_c)`` per unit mass thickness, carrying on average
  ``S_rad (1 − k_c/E)`` — together the electron loses ``S_col + S_rad`` on average.
* The CSDA range table is the integral of ``1/S_r``; a step of mass thickness t ends at
  ``E' = R⁻¹(R(E) − t)`` (exact for continuous slowing down).
* Multiple scattering: the one-parameter modified Wentzel distribution
  ``f(μ) ∝ 1/(μ + A)²`` on μ = (1 − cos θ)/2 ∈ [0, 1] reproduces the Goudsmit–Saunderson
  mean ``⟨cos θ⟩ = exp(−t/λ₁)`` when ``A[(1 + A) ln(1 + 1/A) − 1] = (1 − exp(−t/λ₁))/2 = q``.
  The table stores A on a grid in ln κ, κ = t/λ₁ the step's transport mean free paths.

References
----------
O. Klein and Y. Nishina, Z. Phys. 52 (1929) 853 (Compton scattering).
F. Salvat, J. M. Fernández-Varea, J. Sempau, PENELOPE-2008, NEA (2009), §3.2 (modified
Wentzel model) and §2.1 (Rayleigh sampling from atomic form factors).
J. Sempau et al., "DPM, a fast, accurate Monte Carlo code optimized for photon and electron
radiotherapy treatment planning dose calculations", Phys. Med. Biol. 45 (2000) 2263.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from mcdose.physics import layout as L
from mcdose.physics.constants import ELECTRON_REST_ENERGY_KEV, HC_KEV_ANGSTROM

#: Lowest energy of every table, keV.
TABLE_E_MIN_KEV = 1.0
#: Grid points per decade of energy for the per-material tables.
POINTS_PER_DECADE = 256


@dataclass(frozen=True)
class PhysicsTables:
    """Engine arrays for one set of materials (float64 unless stated).

    Attributes
    ----------
    material_names : tuple of str
        Material of index m (the values of the material map).
    energy_keV : ndarray, shape (n_e,)
        Energy grid, uniform in ln E, keV.
    mat_tab : ndarray, shape (n_mat, N_QUANTITIES, n_e)
        Per-material quantities, see :mod:`mcdose.physics.layout` (MU_*, E_*).
    inv_range : ndarray, shape (n_mat, 2, n_r)
        At ranges uniform in ln R (``range_grid`` gives the grid): electron energy (keV,
        row ``IR_ENERGY``) and Q(E) (row ``IR_KAPPA``).
    range_grid : ndarray, shape (n_mat, 2)
        ``ln R_min`` (R in g/cm²) and ``1/Δln R`` of each material's inverse-range grid.
    kn_table : ndarray, shape (n_kn, n_xi)
        Compton ε = E'/E at cumulative probabilities ξ_j = j/(n_xi − 1).
    ray_table : ndarray, shape (n_mat, n_ray, n_xi)
        Rayleigh cos θ at cumulative probabilities ξ_j.
    ms_table : ndarray, shape (n_kappa,)
        A of the modified Wentzel distribution on a grid uniform in ln κ.
    params : ndarray, shape (N_PARAMS,)
        Grid scalars and cutoffs (geometry/source entries are filled by the transport setup).
    """

    material_names: tuple[str, ...]
    energy_keV: np.ndarray
    mat_tab: np.ndarray
    inv_range: np.ndarray
    range_grid: np.ndarray
    kn_table: np.ndarray
    ray_table: np.ndarray
    ms_table: np.ndarray
    params: np.ndarray

    @property
    def max_energy_keV(self) -> float:
        """Upper end of the energy grid, keV."""
        return float(self.energy_keV[-1])


def log_grid(e_min: float, e_max: float, points_per_decade: int) -> np.ndarray:
    """Grid uniform in ln E from ``e_min`` to at least ``e_max`` (same units)."""
    n = max(2, int(math.ceil(math.log10(e_max / e_min) * points_per_decade)) + 1)
    return np.exp(np.linspace(math.log(e_min), math.log(e_max), n))


# ----------------------------------------------------------------------------- Compton


def klein_nishina_dsigma_deps(energy_keV: float, eps: np.ndarray) -> np.ndarray:
    """Klein–Nishina cross section differential in ε = E'/E, up to a constant factor.

    ``dσ/dε ∝ 1/ε + ε − sin²θ`` with ``cos θ = 1 − (1 − ε)/(κ ε)``, κ = E/mₑc², for
    ε ∈ [1/(1 + 2κ), 1] (Klein & Nishina 1929; PENELOPE-2008 eq. 2.26).
    """
    kappa = energy_keV / ELECTRON_REST_ENERGY_KEV
    cos_t = 1.0 - (1.0 - eps) / (kappa * eps)
    return 1.0 / eps + eps - (1.0 - cos_t * cos_t)


def compton_inverse_cdf(energies_keV: np.ndarray, n_xi: int = 257) -> np.ndarray:
    """ε = E'/E at cumulative probabilities ξ_j = j/(n_xi − 1) of the Klein–Nishina law.

    Returns
    -------
    ndarray, shape (len(energies_keV), n_xi)
    """
    xi = np.linspace(0.0, 1.0, n_xi)
    out = np.empty((len(energies_keV), n_xi))
    for k, energy in enumerate(energies_keV):
        kappa = energy / ELECTRON_REST_ENERGY_KEV
        eps_min = 1.0 / (1.0 + 2.0 * kappa)
        eps = np.geomspace(eps_min, 1.0, 4001)
        pdf = klein_nishina_dsigma_deps(energy, eps)
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(eps))])
        cdf /= cdf[-1]
        out[k] = np.interp(xi, cdf, eps)
        out[k, 0], out[k, -1] = eps_min, 1.0
    return out


# ----------------------------------------------------------------------------- Rayleigh


def rayleigh_inverse_cdf(material: str, energies_keV: np.ndarray, n_xi: int = 1025) -> np.ndarray:
    """cos θ at cumulative probabilities ξ_j for coherent scattering in ``material``.

    The angular law is ``p(cos θ) ∝ (1 + cos²θ)/2 · F²(q)`` with the molecular form factor
    in the independent-atom approximation, ``q = sin(θ/2)/λ`` (PENELOPE-2008 §2.1).  It is
    integrated on a grid in x = q², on which it is smooth, and inverted.

    Returns
    -------
    ndarray, shape (len(energies_keV), n_xi); row k gives cos θ increasing with ξ... from −1
    (ξ = 0) to +1 (ξ = 1).
    """
    from mcdose.physics.photon_data import form_factor_squared

    xi = np.linspace(0.0, 1.0, n_xi)
    out = np.empty((len(energies_keV), n_xi))
    for k, energy in enumerate(energies_keV):
        kk = energy / HC_KEV_ANGSTROM  # 1/λ in 1/Å; q_max = 1/λ at θ = π
        x = np.concatenate([[0.0], np.geomspace(kk * kk * 1e-8, kk * kk, 3000)])
        mu = 1.0 - 2.0 * x / (kk * kk)  # cos θ, from +1 (x = 0) down to −1
        pdf = (1.0 + mu * mu) * form_factor_squared(material, np.sqrt(x))
        # cumulative from cos θ = −1 upward (reverse the grid)
        xr, pr, mr = x[::-1], pdf[::-1], mu[::-1]
        seg = 0.5 * (pr[1:] + pr[:-1]) * -np.diff(xr)
        cdf = np.concatenate([[0.0], np.cumsum(seg)])
        cdf /= cdf[-1]
        out[k] = np.clip(np.interp(xi, cdf, mr), -1.0, 1.0)
        out[k, 0], out[k, -1] = -1.0, 1.0
    return out


# ----------------------------------------------------------------------- multiple scattering


def wentzel_mean_mu(a: np.ndarray) -> np.ndarray:
    """⟨μ⟩ = A[(1 + A) ln(1 + 1/A) − 1] of f(μ) = A(1 + A)/(μ + A)² on [0, 1]."""
    a = np.asarray(a, dtype=float)
    return a * ((1.0 + a) * np.log1p(1.0 / a) - 1.0)


def wentzel_screening_for(q: np.ndarray) -> np.ndarray:
    """Solve ``wentzel_mean_mu(A) = q`` for A (0 < q < 1/2) by bisection in ln A."""
    q = np.asarray(q, dtype=float)
    lo = np.full(q.shape, -60.0)
    hi = np.full(q.shape, 40.0)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        too_big = wentzel_mean_mu(np.exp(mid)) > q
        hi = np.where(too_big, mid, hi)
        lo = np.where(too_big, lo, mid)
    return np.exp(0.5 * (lo + hi))


MS_KAPPA_MIN = 1e-10
#: Beyond κ = −ln(1 − 2·0.499) ≈ 6.2 transport mean free paths ⟨cos θ⟩ < 0.002: isotropic.
MS_KAPPA_ISOTROPIC = -math.log(1.0 - 2.0 * 0.499)


def ms_screening_table(n: int = 1024) -> tuple[np.ndarray, float, float]:
    """A(κ) of the modified Wentzel distribution on a grid uniform in ln κ.

    κ is the number of transport mean free paths of a step; A solves
    ``A[(1 + A) ln(1 + 1/A) − 1] = (1 − e^(−κ))/2``.  A itself is tabulated (not ln A) so
    that a lookup is one logarithm and a linear interpolation: on this grid (Δln κ ≈ 0.024)
    the interpolation error is below 1e-4 relative.

    Returns
    -------
    (table, ln κ_min, 1/Δln κ)
    """
    log_k = np.linspace(math.log(MS_KAPPA_MIN), math.log(MS_KAPPA_ISOTROPIC), n)
    q = 0.5 * -np.expm1(-np.exp(log_k))
    return wentzel_screening_for(q), float(log_k[0]), float(1.0 / (log_k[1] - log_k[0]))


# ----------------------------------------------------------------------------- electrons


def restricted_stopping_and_brems(
    material: str, energy_keV: np.ndarray, k_cut_keV: float
) -> tuple[np.ndarray, np.ndarray]:
    """Restricted stopping power (keV cm²/g) and bremsstrahlung number cross section (cm²/g).

    See the module docstring: ``S_r = S_col + S_rad·min(1, k_c/E)``,
    ``Σ_b = (S_rad/E)·ln(E/k_c)`` for E > k_c, else 0.
    """
    from mcdose.physics.electron_data import (
        collision_stopping_power,
        radiative_stopping_power,
    )

    s_col = 1000.0 * np.asarray(collision_stopping_power(material, energy_keV))  # keV cm²/g
    s_rad = 1000.0 * np.asarray(radiative_stopping_power(material, energy_keV))
    ratio = np.minimum(1.0, k_cut_keV / energy_keV)
    s_r = s_col + s_rad * ratio
    log_ratio = np.log(np.maximum(energy_keV / k_cut_keV, 1.0))
    brems = np.where(energy_keV > k_cut_keV, s_rad / energy_keV * log_ratio, 0.0)
    return s_r, brems


def csda_range_from_stopping(energy_keV: np.ndarray, stopping: np.ndarray) -> np.ndarray:
    """Cumulative ∫ dE/S on a log grid (g/cm² for S in keV cm²/g).

    Below the first grid energy E₀ the stopping power is taken as a power law
    ``S ∝ E^(−a)`` with the local slope, giving ``R(E₀) = E₀ / (S(E₀)(1 + a))``.
    """
    log_e = np.log(energy_keV)
    a = -(math.log(stopping[1]) - math.log(stopping[0])) / (log_e[1] - log_e[0])
    a = min(max(a, 0.0), 1.0)
    r0 = energy_keV[0] / (stopping[0] * (1.0 + a))
    integrand = energy_keV / stopping  # dR/d ln E
    steps = 0.5 * (integrand[1:] + integrand[:-1]) * np.diff(log_e)
    return r0 + np.concatenate([[0.0], np.cumsum(steps)])


def scattering_integral(
    energy_keV: np.ndarray, stopping: np.ndarray, lambda1: np.ndarray
) -> np.ndarray:
    """Q(E) = ∫₀^E dE'/(S(E') λ₁(E')): transport mean free paths travelled while slowing down.

    In the continuous-slowing-down approximation a step from E to E' traverses exactly
    κ = Q(E) − Q(E') transport mean free paths, whatever its length, so the
    Goudsmit–Saunderson mean ⟨cos θ⟩ = exp(−κ) of a long step (with λ₁ varying along it)
    is honoured.  Below the first grid energy λ₁·S ∝ E^b is extrapolated as a power law.
    (The same idea as DPM's steps measured in transport mean free paths, Sempau et al. 2000.)
    """
    log_e = np.log(energy_keV)
    integrand = energy_keV / (stopping * lambda1)  # dQ/d ln E
    b = (math.log(integrand[1]) - math.log(integrand[0])) / (log_e[1] - log_e[0])
    q0 = integrand[0] / b if b > 0 else 0.0
    steps = 0.5 * (integrand[1:] + integrand[:-1]) * np.diff(log_e)
    return q0 + np.concatenate([[0.0], np.cumsum(steps)])


# ----------------------------------------------------------------------------- assembly


@functools.lru_cache(maxsize=16)
def _build(material_names: tuple[str, ...], e_max_keV: float, k_cut_keV: float) -> PhysicsTables:
    from mcdose.physics.electron_data import first_transport_mfp
    from mcdose.physics.photon_data import mass_attenuation

    energy = log_grid(TABLE_E_MIN_KEV, e_max_keV, POINTS_PER_DECADE)
    n_e = len(energy)
    n_mat = len(material_names)
    mat_tab = np.zeros((n_mat, L.N_QUANTITIES, n_e))
    inv_range = np.zeros((n_mat, 2, n_e))
    range_grid = np.zeros((n_mat, 2))
    for m, name in enumerate(material_names):
        mu = mass_attenuation(name, energy)
        mat_tab[m, L.MU_PHOTO] = mu["photo"]
        mat_tab[m, L.MU_INCOH] = mu["incoh"]
        mat_tab[m, L.MU_COH] = mu["coh"]
        # total as the sum of the sampled parts, so that selection probabilities add to 1
        mat_tab[m, L.MU_TOTAL] = mu["photo"] + mu["incoh"] + mu["coh"]
        s_r, brems = restricted_stopping_and_brems(name, energy, k_cut_keV)
        rng = csda_range_from_stopping(energy, s_r)
        mat_tab[m, L.E_STOP] = s_r
        mat_tab[m, L.E_RANGE] = rng
        mat_tab[m, L.E_LAMBDA1] = first_transport_mfp(name, energy)
        mat_tab[m, L.E_BREMS] = brems
        mat_tab[m, L.E_KAPPA] = scattering_integral(energy, s_r, mat_tab[m, L.E_LAMBDA1])
        log_r = np.linspace(math.log(rng[0]), math.log(rng[-1]), n_e)
        e_of_r = np.exp(np.interp(log_r, np.log(rng), np.log(energy)))
        e_of_r[0], e_of_r[-1] = energy[0], energy[-1]
        inv_range[m, L.IR_ENERGY] = e_of_r
        inv_range[m, L.IR_KAPPA] = np.interp(np.log(e_of_r), np.log(energy), mat_tab[m, L.E_KAPPA])
        range_grid[m] = (log_r[0], 1.0 / (log_r[1] - log_r[0]))

    kn_energy = log_grid(TABLE_E_MIN_KEV, e_max_keV, 48)
    kn_table = compton_inverse_cdf(kn_energy)
    ray_energy = log_grid(TABLE_E_MIN_KEV, e_max_keV, 24)
    ray_table = np.stack([rayleigh_inverse_cdf(name, ray_energy) for name in material_names])
    ms_table, ms_log_kappa_min, ms_inv_dlog_kappa = ms_screening_table()

    params = np.zeros(L.N_PARAMS)
    params[L.P_OUTSIDE_SCALE] = params[L.P_INV_OUTSIDE_SCALE] = 1.0  # no body box (setup sets one)
    params[L.P_LOG_E_MIN] = math.log(energy[0])
    params[L.P_INV_DLOG_E] = 1.0 / (math.log(energy[1]) - math.log(energy[0]))
    params[L.P_N_E] = n_e
    params[L.P_N_R] = n_e
    params[L.P_KN_LOG_E_MIN] = math.log(kn_energy[0])
    params[L.P_KN_INV_DLOG_E] = 1.0 / (math.log(kn_energy[1]) - math.log(kn_energy[0]))
    params[L.P_KN_N_E] = len(kn_energy)
    params[L.P_RAY_LOG_E_MIN] = math.log(ray_energy[0])
    params[L.P_RAY_INV_DLOG_E] = 1.0 / (math.log(ray_energy[1]) - math.log(ray_energy[0]))
    params[L.P_RAY_N_E] = len(ray_energy)
    params[L.P_MS_LOG_KAPPA_MIN] = ms_log_kappa_min
    params[L.P_MS_INV_DLOG_KAPPA] = ms_inv_dlog_kappa
    params[L.P_MS_N_KAPPA] = len(ms_table)
    params[L.P_MS_KAPPA_ISOTROPIC] = MS_KAPPA_ISOTROPIC
    params[L.P_BREMS_K_CUT] = k_cut_keV
    for array in (energy, mat_tab, inv_range, range_grid, kn_table, ray_table, ms_table):
        array.setflags(write=False)
    return PhysicsTables(
        material_names=material_names,
        energy_keV=energy,
        mat_tab=mat_tab,
        inv_range=inv_range,
        range_grid=range_grid,
        kn_table=kn_table,
        ray_table=ray_table,
        ms_table=ms_table,
        params=params,
    )


def build_physics_tables(
    material_names: tuple[str, ...] | list[str],
    max_energy_keV: float,
    *,
    brems_cut_keV: float = 10.0,
) -> PhysicsTables:
    """Tables for ``material_names`` covering 1 keV to at least ``max_energy_keV``.

    The upper end is rounded up to a value of the form 2ⁿ·100 keV (≥ 1.05 × max) so that
    nuclides of similar energy share a cached table set.

    Parameters
    ----------
    material_names
        Names from :data:`mcdose.materials.MATERIALS`, in material-map index order.
    max_energy_keV
        Highest particle energy that will be transported, keV.
    brems_cut_keV
        Bremsstrahlung photons below this energy are absorbed along the track, keV.

    Returns
    -------
    PhysicsTables
        Read-only arrays; ``params`` is a fresh copy the caller may complete.
    """
    target = max(100.0, 1.05 * float(max_energy_keV))
    e_max = 100.0 * 2.0 ** math.ceil(math.log2(target / 100.0))
    tables = _build(tuple(material_names), e_max, float(brems_cut_keV))
    return PhysicsTables(**{**tables.__dict__, "params": tables.params.copy()})
