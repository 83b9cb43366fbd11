"""Photon interaction data: mass attenuation coefficients and coherent form factors.

Partial mass attenuation coefficients come from the Elam, Ravel & Sieber tables shipped with
``xraydb`` (elements mixed by mass fraction).  Those tables end at 800 keV (xraydb warns
above and returns the 800 keV values), so above 800 keV this module continues each element
with standard physics, matched to the Elam value at 800 keV:

- incoherent: the Klein–Nishina cross section per electron times Z (the Elam/KN ratio at
  800 keV, 0.9986–1.0005 for H…Ca, is kept as a constant factor);
- coherent: ∝ E⁻² (the form-factor limit; Elam's own slope at 700–800 keV is −1.99…−2.00);
- photoelectric: the power law of the last Elam interval (≈ E⁻²·³; < 0.02 % of μ here);
- pair production in the nuclear field (a separate ``pair`` entry, zero below 2 m_e c²):
  Maximon's (1968) Born cross section, exact near threshold, high-energy expansion above
  4 m_e c²; triplet production (< 1 % of pair below 3 MeV) is neglected.

With these, water μ/ρ agrees with NIST (Hubbell & Seltzer) within 0.2 % from 10 keV to 3 MeV
(see the tests).

Coherent scattering angles are sampled by the engine from the molecular form factor in the
independent-atom approximation, :func:`form_factor_squared`, built from xraydb's
Waasmaier–Kirfel atomic form factors ``f0``.

References
----------
.. [1] W. T. Elam, B. D. Ravel and J. R. Sieber, "A new atomic database for X-ray spectroscopic
   calculations", Radiat. Phys. Chem. 63, 121 (2002) (the xraydb ``mu_elam`` tables).
.. [2] D. Waasmaier and A. Kirfel, "New analytical scattering-factor functions for free atoms
   and ions", Acta Cryst. A51, 416 (1995) (xraydb ``f0``; fitted for sin(θ/2)/λ ≤ 6 Å⁻¹).
.. [3] O. Klein and Y. Nishina, Z. Phys. 52, 853 (1929).
.. [4] L. C. Maximon, "Simple analytic expressions for the total Born approximation cross
   section for pair production in a Coulomb field", J. Res. NBS 72B, 79 (1968); as used in
   J. H. Hubbell, H. A. Gimm and I. Øverbø, J. Phys. Chem. Ref. Data 9, 1023 (1980) and the
   PENELOPE-2018 manual (NEA/MBDAV/R(2019)1), section 2.4.
.. [5] J. H. Hubbell and S. M. Seltzer, NIST Standard Reference Database 126 (2004):
   reference values for the tests.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np

from mcdose.errors import InputError
from mcdose.materials import Material, get_material
from mcdose.physics.constants import (
    AVOGADRO,
    BOHR_RADIUS_CM,
    CLASSICAL_ELECTRON_RADIUS_CM,
    ELECTRON_REST_ENERGY_KEV,
    FINE_STRUCTURE_CONSTANT,
    HC_KEV_ANGSTROM,
)

__all__ = [
    "ELAM_MAX_ENERGY_KEV",
    "FORM_FACTOR_FIT_MAX_Q",
    "atomic_form_factor",
    "coherent_cross_section_from_form_factor",
    "form_factor_squared",
    "klein_nishina_cross_section",
    "mass_attenuation",
    "momentum_transfer",
    "pair_cross_section",
]

#: Highest energy of the Elam tables in xraydb (keV); above it see the module notes.
ELAM_MAX_ENERGY_KEV: float = 800.0

#: Upper end (Å⁻¹) of the Waasmaier–Kirfel fit of the atomic form factors; beyond it the
#: form factor is continued with a hydrogen-like K-shell shape (see :func:`atomic_form_factor`).
FORM_FACTOR_FIT_MAX_Q: float = 6.0

_KINDS = ("photo", "incoh", "coh")


def _as_material(material: Material | str) -> Material:
    return material if isinstance(material, Material) else get_material(material)


def _energies(energy_keV: np.ndarray | float, what: str = "energy_keV") -> np.ndarray:
    e = np.asarray(energy_keV, dtype=np.float64)
    if e.size == 0:
        return e
    if not np.all(np.isfinite(e)) or np.min(e) <= 0.0:
        raise InputError(f"{what} must be finite and > 0")
    return e


# ---------------------------------------------------------------------------------------
# analytic cross sections
# ---------------------------------------------------------------------------------------


def klein_nishina_cross_section(energy_keV: np.ndarray | float) -> np.ndarray:
    """Klein–Nishina total Compton cross section per free electron (cm²).

    Parameters
    ----------
    energy_keV : array_like
        Photon energy in keV (> 0).

    Returns
    -------
    numpy.ndarray
        σ_KN in cm² per electron, same shape as ``energy_keV``.

    References
    ----------
    .. [1] O. Klein and Y. Nishina, Z. Phys. 52, 853 (1929); e.g. F. H. Attix, "Introduction to
       Radiological Physics and Radiation Dosimetry" (1986), eq. 7.23.
    """
    k = _energies(energy_keV) / ELECTRON_REST_ENERGY_KEV
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        l2k = np.log1p(2.0 * k)
        bracket = (1.0 + k) / k**2 * (2.0 * (1.0 + k) / (1.0 + 2.0 * k) - l2k / k)
        bracket = bracket + l2k / (2.0 * k) - (1.0 + 3.0 * k) / (1.0 + 2.0 * k) ** 2
    # Below k = 1e-3 (E < 0.5 keV) the closed form cancels badly: Thomson-limit series
    # σ_T (1 − 2k + 26k²/5).
    series = (4.0 / 3.0) * (1.0 - 2.0 * k + 5.2 * k**2)
    return 2.0 * math.pi * CLASSICAL_ELECTRON_RADIUS_CM**2 * np.where(k < 1e-3, series, bracket)


def pair_cross_section(z: np.ndarray | float, energy_keV: np.ndarray | float) -> np.ndarray:
    """Pair-production cross section in the field of a nucleus of charge Z (cm² per atom).

    Maximon's (1968) Born-approximation formulas without screening (screening is < 1 % below
    5 MeV): the threshold expansion for k = E/(m_e c²) < 4 and the asymptotic expansion for
    k ≥ 4 (they join within 0.3 % at k = 4).  Zero below 2 m_e c² = 1021.998 keV.

    Parameters
    ----------
    z : array_like
        Atomic number(s).
    energy_keV : array_like
        Photon energy in keV; broadcast against ``z``.

    Returns
    -------
    numpy.ndarray
        Cross section in cm² per atom.

    References
    ----------
    .. [1] L. C. Maximon, J. Res. NBS 72B, 79 (1968), eqs. (2.9) and (2.10) (Born
       approximation); PENELOPE-2018 manual, eqs. (2.100)–(2.101).
    """
    z = np.asarray(z, dtype=np.float64)
    k = _energies(energy_keV) / ELECTRON_REST_ENERGY_KEV
    k = np.broadcast_to(k, np.broadcast_shapes(k.shape, z.shape)).astype(np.float64)
    out = np.zeros_like(k)
    pref = FINE_STRUCTURE_CONSTANT * CLASSICAL_ELECTRON_RADIUS_CM**2

    low = (k > 2.0) & (k < 4.0)
    if np.any(low):
        kl = k[low]
        eps = (2.0 * kl - 4.0) / (2.0 + kl + 2.0 * np.sqrt(2.0 * kl))
        series = 1.0 + eps / 2.0 + 23.0 * eps**2 / 40.0 + 11.0 * eps**3 / 60.0
        series += 29.0 * eps**4 / 960.0
        out[low] = (2.0 * math.pi / 3.0) * ((kl - 2.0) / kl) ** 3 * series
    high = k >= 4.0
    if np.any(high):
        kh = k[high]
        lk = np.log(2.0 * kh)
        zeta3 = 1.2020569031595942
        r = 2.0 / kh
        val = 28.0 / 9.0 * lk - 218.0 / 27.0
        val += r**2 * (
            6.0 * lk - 3.5 + 2.0 / 3.0 * lk**3 - lk**2 - math.pi**2 / 3.0 * lk
            + 2.0 * zeta3 + math.pi**2 / 6.0
        )  # fmt: skip
        val -= r**4 * (3.0 / 16.0 * lk + 1.0 / 8.0)
        val -= r**6 * (29.0 / (9.0 * 256.0) * lk - 77.0 / (27.0 * 512.0))
        out[high] = val
    return pref * z**2 * out


# ---------------------------------------------------------------------------------------
# Elam tables (cached per element, kind and energy grid)
# ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _elam_cached(symbol: str, kind: str, energies_keV_bytes: bytes) -> np.ndarray:
    import xraydb

    e_keV = np.frombuffer(energies_keV_bytes, dtype=np.float64)
    with warnings.catch_warnings():
        # xraydb warns for E > 800 keV; those energies are handled by _element_mu below.
        warnings.filterwarnings("ignore", message="Elam tables are unreliable", module="xraydb")
        out = np.asarray(xraydb.mu_elam(symbol, e_keV * 1e3, kind=kind), dtype=np.float64)
    out = np.atleast_1d(out).copy()
    out.setflags(write=False)
    return out


def _elam(symbol: str, kind: str, e_keV: np.ndarray) -> np.ndarray:
    return _elam_cached(symbol, kind, np.ascontiguousarray(e_keV, dtype=np.float64).tobytes())


@functools.cache
def _high_energy_anchor(symbol: str) -> dict[str, float]:
    """Elam values at 700 and 800 keV that anchor the continuation above 800 keV."""
    from mcdose.materials import atomic_number, atomic_weight

    e = np.array([700.0, ELAM_MAX_ENERGY_KEV])
    photo = _elam(symbol, "photo", e)
    coh = _elam(symbol, "coh", e)
    incoh = _elam(symbol, "incoh", e)
    z = atomic_number(symbol)
    electrons_per_gram = AVOGADRO * z / atomic_weight(symbol)
    kn800 = float(klein_nishina_cross_section(ELAM_MAX_ENERGY_KEV))
    slope = math.log(photo[1] / photo[0]) / math.log(ELAM_MAX_ENERGY_KEV / 700.0)
    return {
        "photo800": float(photo[1]),
        "photo_slope": min(slope, -1.0),
        "coh800": float(coh[1]),
        "incoh_factor": float(incoh[1]) / (electrons_per_gram * kn800),
        "electrons_per_gram": electrons_per_gram,
        "atoms_per_gram": AVOGADRO / atomic_weight(symbol),
        "z": float(z),
    }


def _element_mu(symbol: str, e_keV: np.ndarray) -> dict[str, np.ndarray]:
    """Partial mass attenuation coefficients of one element (cm²/g) on a 1-D energy grid."""
    lo = e_keV <= ELAM_MAX_ENERGY_KEV
    out = {kind: np.zeros_like(e_keV) for kind in (*_KINDS, "pair")}
    if np.any(lo):
        for kind in _KINDS:
            out[kind][lo] = _elam(symbol, kind, e_keV[lo])
    hi = ~lo
    if np.any(hi):
        a = _high_energy_anchor(symbol)
        eh = e_keV[hi]
        ratio = ELAM_MAX_ENERGY_KEV / eh
        out["photo"][hi] = a["photo800"] * ratio ** (-a["photo_slope"])
        out["coh"][hi] = a["coh800"] * ratio**2
        out["incoh"][hi] = (
            a["incoh_factor"] * a["electrons_per_gram"] * klein_nishina_cross_section(eh)
        )
        out["pair"][hi] = a["atoms_per_gram"] * pair_cross_section(a["z"], eh)
    return out


def mass_attenuation(
    material: Material | str, energy_keV: np.ndarray | float
) -> dict[str, np.ndarray]:
    """Partial and total photon mass attenuation coefficients of a material.

    Parameters
    ----------
    material : Material or str
        A :class:`~mcdose.materials.Material` or the name of a built-in one.
    energy_keV : array_like
        Photon energies in keV (> 0); accurate from 1 keV to 3 MeV (see module notes).

    Returns
    -------
    dict of str to numpy.ndarray
        Arrays shaped like ``energy_keV``, in cm²/g: ``photo`` (photoelectric absorption),
        ``incoh`` (Compton, bound electrons), ``coh`` (Rayleigh), ``pair`` (pair production in
        the nuclear field; zero below 1022 keV) and ``total`` (their sum).

    Notes
    -----
    Engines that do not model pair production should treat the ``pair`` part as absorption
    followed by two 511 keV photons; it is zero for every Lu-177 photon.

    References
    ----------
    .. [1] W. T. Elam, B. D. Ravel and J. R. Sieber, Radiat. Phys. Chem. 63, 121 (2002).
    .. [2] L. C. Maximon, J. Res. NBS 72B, 79 (1968).
    """
    mat = _as_material(material)
    e = _energies(energy_keV)
    flat = np.ascontiguousarray(e.ravel())
    result = {kind: np.zeros_like(flat) for kind in (*_KINDS, "pair")}
    for el, w in mat.mass_fractions.items():
        mu = _element_mu(el, flat)
        for kind in result:
            result[kind] += w * mu[kind]
    result["total"] = result["photo"] + result["incoh"] + result["coh"] + result["pair"]
    return {kind: v.reshape(e.shape) for kind, v in result.items()}


# ---------------------------------------------------------------------------------------
# coherent scattering form factors
# ---------------------------------------------------------------------------------------


def momentum_transfer(energy_keV: np.ndarray | float, cos_theta: np.ndarray | float) -> np.ndarray:
    """Momentum-transfer variable q = sin(θ/2)/λ in Å⁻¹ (the argument of xraydb's ``f0``).

    Parameters
    ----------
    energy_keV : array_like
        Photon energy in keV.
    cos_theta : array_like
        Cosine of the scattering angle; broadcast against ``energy_keV``.

    Returns
    -------
    numpy.ndarray
        q = (E / hc) · sqrt((1 − cos θ)/2), Å⁻¹.
    """
    e = _energies(energy_keV)
    mu = np.asarray(cos_theta, dtype=np.float64)
    return e / HC_KEV_ANGSTROM * np.sqrt(np.clip((1.0 - mu) / 2.0, 0.0, 1.0))


def _k_shell_tail(symbol: str, q: np.ndarray, q0: float) -> np.ndarray:
    """Ratio f(q)/f(q₀) of a hydrogen-like K shell, [(4 + (K₀a)²)/(4 + (Ka)²)]², K = 4πq."""
    from mcdose.materials import atomic_number

    a = BOHR_RADIUS_CM * 1e8 / max(atomic_number(symbol) - 0.3, 0.7)  # Å, Slater screening
    k0a2 = (4.0 * math.pi * q0 * a) ** 2
    ka2 = (4.0 * math.pi * q * a) ** 2
    return ((4.0 + k0a2) / (4.0 + ka2)) ** 2


def atomic_form_factor(symbol: str, q_per_angstrom: np.ndarray | float) -> np.ndarray:
    """Atomic form factor f(q) of a neutral atom (electrons), q = sin(θ/2)/λ in Å⁻¹.

    xraydb's Waasmaier–Kirfel fit for q ≤ 6 Å⁻¹.  Beyond, the fit is not valid (it tends to
    a constant and turns negative for some elements), so it is continued with the shape of
    the hydrogen-like 1s form factor, which dominates at large q:
    f(q) = f(q₀)·[(4 + (K₀a)²)/(4 + (Ka)²)]², K = 4πq, a = a₀/(Z − 0.3) (Slater-screened
    K-shell radius), q₀ = 6 Å⁻¹; asymptotically f ∝ q⁻⁴.  Negative values are clipped to 0.
    The tail carries little weight: F²(q₀)/F²(0) = f(q₀)²/Z² < 1e-3 for H…Ca.

    Parameters
    ----------
    symbol : str
        Element symbol.
    q_per_angstrom : array_like
        Momentum transfer q ≥ 0 in Å⁻¹.

    Returns
    -------
    numpy.ndarray
        f(q) in electrons, same shape as ``q_per_angstrom`` (f(0) ≈ Z).

    References
    ----------
    .. [1] D. Waasmaier and A. Kirfel, Acta Cryst. A51, 416 (1995).
    .. [2] Hydrogenic 1s form factor 16/(4 + K²a²)², e.g. J. H. Hubbell et al., J. Phys. Chem.
       Ref. Data 4, 471 (1975); Slater screening constant 0.30 for 1s.
    """
    import xraydb

    q = np.asarray(q_per_angstrom, dtype=np.float64)
    if q.size and (not np.all(np.isfinite(q)) or np.min(q) < 0.0):
        raise InputError("q_per_angstrom must be finite and >= 0")
    q0 = FORM_FACTOR_FIT_MAX_Q
    f = np.asarray(xraydb.f0(symbol, np.minimum(q, q0)), dtype=np.float64).reshape(q.shape)
    beyond = q > q0
    if np.any(beyond):
        f0_edge = max(float(np.asarray(xraydb.f0(symbol, q0)).ravel()[0]), 0.0)
        f = np.where(beyond, f0_edge * _k_shell_tail(symbol, np.maximum(q, q0), q0), f)
    return np.maximum(f, 0.0)


@functools.lru_cache(maxsize=64)
def _form_factor_weights(material: Material) -> tuple[tuple[str, float], ...]:
    """(element, w_i/A_i / Σ_j (w_j/A_j) f_j(0)²) pairs for the normalised F²."""
    from mcdose.materials import atomic_weight

    pairs = [(el, w / atomic_weight(el)) for el, w in material.mass_fractions.items()]
    f0_sq = sum(c * float(atomic_form_factor(el, 0.0)) ** 2 for el, c in pairs)
    return tuple((el, c / f0_sq) for el, c in pairs)


def form_factor_squared(material: Material | str, q_per_angstrom: np.ndarray | float) -> np.ndarray:
    """Normalised molecular coherent form factor squared, F²(q)/F²(0).

    Independent-atom approximation per gram of material:
    ``F²(q) = Σ_i (w_i/A_i) f_i(q)²`` with the atomic form factors of
    :func:`atomic_form_factor`; the result equals 1 at q = 0 and falls monotonically.

    Parameters
    ----------
    material : Material or str
        The material.
    q_per_angstrom : array_like
        q = sin(θ/2)/λ in Å⁻¹ (≥ 0), see :func:`momentum_transfer`.

    Returns
    -------
    numpy.ndarray
        F²(q)/F²(0), dimensionless, same shape as ``q_per_angstrom``.

    Notes
    -----
    The Rayleigh differential cross section per gram is
    ``dσ/dΩ = N_A F²(0) · r_e² (1 + cos²θ)/2 · F²(q)/F²(0)``; integrated over angles it
    reproduces xraydb's coherent attenuation within 2 % at 100–300 keV (see
    :func:`coherent_cross_section_from_form_factor`).

    References
    ----------
    .. [1] J. H. Hubbell and I. Øverbø, J. Phys. Chem. Ref. Data 8, 69 (1979).
    """
    mat = _as_material(material)
    q = np.asarray(q_per_angstrom, dtype=np.float64)
    out = np.zeros(q.shape, dtype=np.float64)
    for el, c in _form_factor_weights(mat):
        out += c * atomic_form_factor(el, q) ** 2
    return out


def coherent_cross_section_from_form_factor(
    material: Material | str, energy_keV: np.ndarray | float, n_points: int = 4000
) -> np.ndarray:
    """Coherent mass attenuation coefficient (cm²/g) integrated from the form factors.

    ``σ/ρ = π r_e² N_A Σ_i (w_i/A_i) ∫₋₁¹ (1 + μ²) f_i(q(μ))² dμ``, integrated in q on a
    geometric grid.  Used to check that the angular distribution the engine samples
    (:func:`form_factor_squared`) is consistent with the tabulated coherent attenuation.

    Parameters
    ----------
    material : Material or str
        The material.
    energy_keV : array_like
        Photon energies in keV.
    n_points : int, optional
        Quadrature points per energy.

    Returns
    -------
    numpy.ndarray
        Coherent mass attenuation coefficient in cm²/g, shaped like ``energy_keV``.
    """
    from mcdose.materials import atomic_weight

    mat = _as_material(material)
    e = _energies(energy_keV)
    out = np.empty(e.size)
    for i, ei in enumerate(e.ravel()):
        k = ei / HC_KEV_ANGSTROM  # q at θ = π
        q = np.concatenate(([0.0], np.geomspace(1e-5 * k, k, n_points)))
        mu = 1.0 - 2.0 * (q / k) ** 2
        f2 = sum(
            w / atomic_weight(el) * atomic_form_factor(el, q) ** 2
            for el, w in mat.mass_fractions.items()
        )
        integrand = (1.0 + mu**2) * f2 * 4.0 * q / k**2  # dμ = −4q dq / k²
        out[i] = math.pi * CLASSICAL_ELECTRON_RADIUS_CM**2 * AVOGADRO * np.trapezoid(integrand, q)
    return out.reshape(e.shape)
