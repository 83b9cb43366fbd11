"""Tests for mcdose.physics.electron_data against NIST ESTAR and closed-form checks."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from scipy.integrate import quad

from mcdose.errors import InputError
from mcdose.materials import MATERIALS, Material
from mcdose.physics import electron_data as ed
from mcdose.physics.constants import (
    BOHR_RADIUS_CM,
    CLASSICAL_ELECTRON_RADIUS_CM,
    ELECTRON_REST_ENERGY_KEV,
    FINE_STRUCTURE_CONSTANT,
    HBAR_C_KEV_CM,
)
from mcdose.physics.electron_data import (
    collision_stopping_power,
    csda_range,
    density_effect,
    density_effect_parameters,
    elastic_cross_section,
    electron_beta_gamma,
    first_transport_mfp,
    plasma_energy_eV,
    radiation_yield,
    radiative_stopping_power,
    screening_parameter,
    total_stopping_power,
    transport_cross_section,
)

# ESTAR (NIST SRD 124), liquid water, I = 75 eV: kinetic energy (keV), collision and radiative
# stopping power (MeV cm²/g), CSDA range (g/cm²), radiation yield.  The rows at 10 … 500 keV
# (collision, range) are those of REFERENCES.md.
ESTAR_WATER = np.array(
    [
        (10.0, 22.56, 3.898e-3, 2.515e-4, 9.408e-5),
        (12.5, 18.97, 3.927e-3, 3.728e-4, 1.133e-4),
        (25.0, 11.09, 3.974e-3, 1.272e-3, 1.990e-4),
        (50.0, 6.603, 4.031e-3, 4.320e-3, 3.435e-4),
        (70.0, 5.207, 4.098e-3, 7.762e-3, 4.453e-4),
        (100.0, 4.115, 4.228e-3, 1.431e-2, 5.842e-4),
        (125.0, 3.591, 4.355e-3, 2.083e-2, 6.912e-4),
        (150.0, 3.238, 4.494e-3, 2.817e-2, 7.926e-4),
        (175.0, 2.984, 4.643e-3, 3.622e-2, 8.894e-4),
        (200.0, 2.793, 4.801e-3, 4.488e-2, 9.826e-4),
        (250.0, 2.528, 5.141e-3, 6.372e-2, 1.161e-3),
        (300.0, 2.355, 5.514e-3, 8.421e-2, 1.331e-3),
        (350.0, 2.235, 5.914e-3, 1.060e-1, 1.496e-3),
        (450.0, 2.083, 6.787e-3, 1.523e-1, 1.818e-3),
        (500.0, 2.034, 7.257e-3, 1.766e-1, 1.976e-3),
        (700.0, 1.917, 9.313e-3, 2.778e-1, 2.608e-3),
        (900.0, 1.864, 1.159e-2, 3.832e-1, 3.251e-3),
        (1000.0, 1.849, 1.280e-2, 4.367e-1, 3.579e-3),
        (1250.0, 1.829, 1.600e-2, 5.717e-1, 4.416e-3),
        (1750.0, 1.821, 2.303e-2, 8.432e-1, 6.171e-3),
        (2000.0, 1.824, 2.678e-2, 9.785e-1, 7.085e-3),
        (2500.0, 1.834, 3.468e-2, 1.247e00, 8.969e-3),
        (3000.0, 1.846, 4.299e-2, 1.514e00, 1.092e-2),
    ]
)
E_W, SCOL_W, SRAD_W, RANGE_W, YIELD_W = ESTAR_WATER.T
LOW = E_W <= 500.0

# ESTAR toluene (C7H8, I = 62.5 eV, 0.8669 g/cm³) and 10 % Cu in toluene (I = 74.6 eV):
# materials that are not in the radiative table, to test the Z² scaling and the general
# (Sternheimer–Peierls) density effect.
TOLUENE = Material("toluene", 0.8669, {"H": 0.087510, "C": 0.912490}, 62.5, "ESTAR")
CU_TOLUENE = Material(
    "cu10_toluene", 1.68, {"H": 0.9 * 0.087510, "C": 0.9 * 0.912490, "Cu": 0.1}, 74.6, "ESTAR"
)


# ----------------------------------------------------------------------------- collision


def test_collision_stopping_power_water_matches_estar_to_500_keV():
    # REFERENCES.md asks for 2 %; measured |Δ| ≤ 0.02 % (the same Bethe formula as ESTAR).
    s = collision_stopping_power("water", E_W[LOW])
    np.testing.assert_allclose(s, SCOL_W[LOW], rtol=5e-3)


def test_collision_stopping_power_water_above_500_keV():
    # Above 0.55 MeV the density effect matters; the SBS84 parameterisation of δ is within
    # Δδ ≈ 0.1 of ESTAR's exact Sternheimer calculation: measured −0.5 % … 0 % to 3 MeV.
    s = collision_stopping_power("water", E_W[~LOW])
    np.testing.assert_allclose(s, SCOL_W[~LOW], rtol=1e-2)


def test_collision_stopping_power_general_density_effect_toluene():
    # ESTAR toluene: 22.85 (10 keV), 4.124 (100 keV), 1.830 (1 MeV).  The Sternheimer–Peierls
    # general δ used for materials outside the SBS84 list: measured +0.02, +0.01, +0.46 %.
    e = np.array([10.0, 100.0, 1000.0])
    s = collision_stopping_power(TOLUENE, e)
    np.testing.assert_allclose(s, [22.85, 4.124, 1.830], rtol=6e-3)


def test_density_effect_parameters_reproduce_sbs84():
    # C̄ = 2 ln(I/ħω_p) + 1 from the material's I and density reproduces the SBS84 table
    # (water 3.5017, air 10.5961, ICRU four-component soft tissue 3.5087): this checks the
    # plasma energy (water 21.469 eV, SBS84) and the electron densities.
    assert plasma_energy_eV("water") == pytest.approx(21.469, abs=2e-3)
    for name, cbar in [("water", 3.5017), ("air", 10.5961), ("soft_tissue", 3.5087)]:
        par = density_effect_parameters(name)
        assert par.cbar == pytest.approx(cbar, abs=2e-4)
    lung = density_effect_parameters("lung")  # 0.26 g/cm³: δ sets in at higher βγ
    assert lung.x0 > density_effect_parameters("water").x0 + 0.25


def test_density_effect_behaviour():
    e = np.array([10.0, 300.0, 1000.0, 3000.0])
    for name in MATERIALS:
        d = density_effect(name, e)
        assert d[0] == 0.0
        assert np.all(np.diff(d) >= 0.0)
    # water: δ = 0 below X0 = 0.24 (T ≈ 0.55 MeV), then δ(3 MeV) ≈ 1.29 (SBS84 fit)
    assert density_effect("water", 500.0) == 0.0
    assert density_effect("water", 3000.0) == pytest.approx(1.29, abs=0.02)


def test_collision_below_1_keV_is_continued_as_one_over_e():
    s1 = collision_stopping_power("water", 1.0)
    np.testing.assert_allclose(collision_stopping_power("water", [0.5, 0.25]), [2 * s1, 4 * s1])


# ----------------------------------------------------------------------------- radiative


def test_radiative_stopping_power_water_matches_estar():
    # Scaled from ESTAR water itself (a spline in ln T through 33 tabulated points): measured
    # |Δ| ≤ 0.05 % at the ESTAR energies between the knots (12.5 keV … 2.5 MeV).
    np.testing.assert_allclose(radiative_stopping_power("water", E_W), SRAD_W, rtol=2e-3)


def test_radiative_stopping_power_z_scaling_other_materials():
    # ESTAR toluene (C7H8): measured +1.4 % (10 keV) … −3.2 % (3 MeV).
    e = np.array([10.0, 100.0, 300.0, 1000.0, 3000.0])
    tol = [2.960e-3, 3.222e-3, 4.258e-3, 1.006e-2, 3.419e-2]
    np.testing.assert_allclose(radiative_stopping_power(TOLUENE, e), tol, rtol=0.05)
    # ESTAR 10 % Cu in toluene (Z = 29 at 10 % by mass, a harsh test of Z² scaling):
    # measured +6.0 % (10 keV), −3.3 % (100 keV), −1.0 % (1 MeV), +0.7 % (3 MeV).
    cu = [3.877e-3, 4.610e-3, 6.004e-3, 1.363e-2, 4.502e-2]
    np.testing.assert_allclose(radiative_stopping_power(CU_TOLUENE, e), cu, rtol=0.10)


def test_radiation_yield_water():
    # ESTAR radiation yield, water: measured +0.01 % (500 keV), +0.23 % (1 MeV), +0.19 %
    # (3 MeV); +3.5 % at 10 keV, where the part below 10 keV (φ_rad held at its 10 keV value)
    # dominates the integral.
    y = radiation_yield("water", E_W)
    np.testing.assert_allclose(y[E_W >= 25.0], YIELD_W[E_W >= 25.0], rtol=0.01)
    np.testing.assert_allclose(y[E_W < 25.0], YIELD_W[E_W < 25.0], rtol=0.05)
    # PHYSICS.md: ≈ 0.2 % at 500 keV in water.
    assert radiation_yield("water", 500.0) == pytest.approx(0.002, rel=0.05)
    # Y-90 β⁻ (mean 0.93 MeV, endpoint 2.28 MeV): 0.34 % at the mean, 0.82 % at the endpoint
    # (ESTAR 0.325 % at 0.9 MeV); PHYSICS.md's "≈ 1 %" is the order of magnitude.
    y = radiation_yield("water", np.array([930.0, 2280.0]))
    assert 0.003 < y[0] < 0.004
    assert 0.007 < y[1] < 0.01


def test_total_is_sum_of_parts():
    e = np.geomspace(1.0, 3000.0, 50)
    for name in MATERIALS:
        np.testing.assert_allclose(
            total_stopping_power(name, e),
            collision_stopping_power(name, e) + radiative_stopping_power(name, e),
            rtol=1e-14,
        )


# ----------------------------------------------------------------------------- range


def test_csda_range_water_matches_estar_to_500_keV():
    # REFERENCES.md asks for 2 %; measured |Δ| ≤ 0.03 % (ESTAR's own low-energy treatment).
    np.testing.assert_allclose(csda_range("water", E_W[LOW]), RANGE_W[LOW], rtol=5e-3)


def test_csda_range_water_above_500_keV():
    # measured +0.1 … +0.3 % (follows the −0.5 % in S_col from the density-effect fit)
    np.testing.assert_allclose(csda_range("water", E_W[~LOW]), RANGE_W[~LOW], rtol=1e-2)


def test_lu177_maximum_beta_range():
    # REFERENCES.md / PHYSICS.md: ≤ 1.8 mm in water at the 497.8 keV endpoint (measured 1.75 mm).
    r_mm = float(csda_range("water", 497.8)) / MATERIALS["water"].density_g_cm3 * 10.0
    assert r_mm == pytest.approx(1.8, abs=0.08)


def test_csda_range_is_the_integral_of_inverse_stopping_power():
    for name in ("water", "lung", "cortical_bone"):
        e = np.geomspace(1.5, 3000.0, 40)
        h = 1e-4 * e
        deriv = (csda_range(name, e + h) - csda_range(name, e - h)) / (2 * h)
        np.testing.assert_allclose(deriv, 1e-3 / total_stopping_power(name, e), rtol=1e-4)
        r = csda_range(name, np.geomspace(0.01, 1e5, 500))
        assert np.all(np.diff(r) > 0)
    # below 1 keV: R ∝ E² joined continuously to R(1 keV) = 1 keV/(2 S_tot(1 keV))
    r1 = float(csda_range("water", 1.0))
    assert r1 == pytest.approx(1.0 / (2e3 * float(total_stopping_power("water", 1.0))))
    assert csda_range("water", 0.5) == pytest.approx(r1 / 4.0)
    assert csda_range("water", 1.0 + 1e-9) == pytest.approx(r1, rel=1e-6)


def test_shapes_and_input_validation():
    e = np.array([[10.0, 100.0], [1000.0, 3000.0]])
    for fn in (collision_stopping_power, radiative_stopping_power, csda_range, radiation_yield):
        assert fn("water", e).shape == (2, 2)
        assert fn("water", 100.0).shape == ()
    assert first_transport_mfp("muscle", e).shape == (2, 2)
    for bad in (0.0, -5.0, np.nan, 2e5):
        with pytest.raises(InputError, match="energy_keV"):
            csda_range("water", np.array([10.0, bad]))
    with pytest.raises(InputError, match="unknown material"):
        collision_stopping_power("unobtainium", 100.0)


# ----------------------------------------------------------------------------- kinematics


def test_electron_kinematics():
    mc2 = ELECTRON_REST_ENERGY_KEV
    beta2, gamma, p = electron_beta_gamma(np.array([mc2, 100.0]))
    assert beta2[0] == pytest.approx(0.75)
    assert gamma[0] == pytest.approx(2.0)
    assert p[0] == pytest.approx(math.sqrt(3.0) * mc2)
    # p² = E² − (mc²)² with E = T + mc²
    assert p[1] ** 2 == pytest.approx((100.0 + mc2) ** 2 - mc2**2)
    assert beta2[1] == pytest.approx(p[1] ** 2 / (100.0 + mc2) ** 2)


# ----------------------------------------------------------------------------- elastic


def test_screening_parameter_formula():
    # η = ¼ (ħ/(p a))² (1.13 + 3.76 (αZ/β)²), a = 0.8853 a₀ Z^(-1/3) (PHYSICS.md), oxygen at
    # 100 keV evaluated by hand: p = 334.96 keV/c, β² = 0.30054 → η = 1.854e-4.
    assert screening_parameter(8, 100.0) == pytest.approx(1.854e-4, rel=1e-3)
    z = np.array([1.0, 8.0, 20.0])
    e = np.array([10.0, 100.0, 1000.0])[:, None]
    eta = screening_parameter(z, e)
    assert eta.shape == (3, 3)
    beta2, _, p = electron_beta_gamma(e)
    a = 0.8853 * BOHR_RADIUS_CM * z ** (-1 / 3)
    ref = (
        0.25
        * (HBAR_C_KEV_CM / (p * a)) ** 2
        * (1.13 + 3.76 * (FINE_STRUCTURE_CONSTANT * z) ** 2 / beta2)
    )
    np.testing.assert_allclose(eta, ref, rtol=1e-12)
    assert np.all(np.diff(eta, axis=0) < 0)  # less screening angle at higher energy


def _screened_rutherford_integrals(z: float, energy_keV: float) -> tuple[float, float]:
    """∫ dσ/dΩ dΩ and ∫ (1 − cos θ) dσ/dΩ dΩ by quadrature (cm²)."""
    beta2, gamma, _ = electron_beta_gamma(energy_keV)
    c = z * (z + 1) * CLASSICAL_ELECTRON_RADIUS_CM**2 / (beta2**2 * gamma**2)
    eta = float(screening_parameter(z, energy_keV))

    # u = 1 − cos θ ∈ [0, 2], dΩ = 2π du; integrate in t = ln u (peak at u ~ η)
    def dsigma(t, power):
        u = math.exp(t)
        return 2 * math.pi * c * u ** (power + 1) / (u + 2 * eta) ** 2

    lo, hi = math.log(eta * 1e-12), math.log(2.0)
    pts = [math.log(eta)]
    total = quad(dsigma, lo, hi, args=(0,), points=pts, limit=200, epsrel=1e-10)[0]
    first = quad(dsigma, lo, hi, args=(1,), points=pts, limit=200, epsrel=1e-10)[0]
    return total, first


@pytest.mark.parametrize("z", [1, 8, 20])
@pytest.mark.parametrize("energy_keV", [10.0, 100.0, 1000.0])
def test_transport_cross_section_equals_numerical_integral(z, energy_keV):
    total, first = _screened_rutherford_integrals(z, energy_keV)
    assert float(transport_cross_section(z, energy_keV)) == pytest.approx(first, rel=1e-6)
    assert float(elastic_cross_section(z, energy_keV)) == pytest.approx(total, rel=1e-6)


def test_first_transport_mfp_water():
    e = np.geomspace(1.0, 3000.0, 200)
    lam = first_transport_mfp("water", e)
    assert np.all(np.diff(lam) > 0)  # monotonic in energy
    # hand evaluation at 100 keV: Σ N_i σ₁,i = 3.343e22·2.112e-21 + 6.686e22·6.97e-23 per g
    assert float(first_transport_mfp("water", 100.0)) == pytest.approx(1.329e-2, rel=2e-3)
    # No tabulated λ₁ was found to cite; Molière-screened Rutherford transport paths are of
    # the order of the CSDA range for 0.1–0.5 MeV electrons in water (measured R/λ₁ =
    # 1.08, 1.06, 1.04, 0.99 at 100, 200, 300, 500 keV): after one range the direction is
    # randomised, ⟨cos θ⟩ = exp(−R/λ₁) ≈ 0.35.
    e = np.array([100.0, 200.0, 300.0, 500.0])
    ratio = csda_range("water", e) / first_transport_mfp("water", e)
    assert np.all((ratio > 0.9) & (ratio < 1.2))


def test_first_transport_mfp_scales_with_composition():
    # Higher Z scatters more per gram: bone < water < adipose (H-rich, low Z) at 300 keV.
    lam = {n: float(first_transport_mfp(n, 300.0)) for n in ("cortical_bone", "water", "adipose")}
    assert lam["cortical_bone"] < lam["water"] < lam["adipose"]
    # density independent in g/cm²: lung and its composition at any density agree
    dense_lung = Material("lung_dense", 1.05, dict(MATERIALS["lung"].mass_fractions), 75.2)
    assert first_transport_mfp(dense_lung, 300.0) == pytest.approx(
        first_transport_mfp("lung", 300.0), rel=1e-12
    )


# ----------------------------------------------------------------------------- speed


def test_fast_enough_for_table_building():
    # 1000 energies × 7 materials "well under a second", from cold caches.
    ed._integral_tables.cache_clear()
    ed.density_effect_parameters.cache_clear()
    e = np.geomspace(1.0, 3000.0, 1000)
    start = time.perf_counter()
    for name in MATERIALS:
        collision_stopping_power(name, e)
        radiative_stopping_power(name, e)
        csda_range(name, e)
        radiation_yield(name, e)
        first_transport_mfp(name, e)
    assert time.perf_counter() - start < 1.0
