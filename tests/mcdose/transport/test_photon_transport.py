"""Photon transport validation: narrow-beam attenuation, Klein–Nishina, Rayleigh."""

import math

import numpy as np
import pytest
from scipy import integrate, stats

from mcdose.physics.constants import ELECTRON_REST_ENERGY_KEV
from mcdose.physics.photon_data import mass_attenuation
from tests.mcdose.transport.harness import (
    compton_samples,
    f32,
    narrow_beam_transmission,
    rayleigh_samples,
    slab_inputs,
)


@pytest.mark.parametrize("energy_keV", [112.95, 208.37])
def test_narrow_beam_transmission_through_water_equals_exp_minus_mu_x(energy_keV):
    # Woodcock tracking must reproduce Beer-Lambert attenuation exp(-mu x) for the two main
    # Lu-177 gamma lines (ICRP 107); mu from xraydb (Elam), which matches NIST XCOM water to
    # 0.1 % (shared/REFERENCES.md).  Slab 5 cm, 2e5 photons, tolerance 4 sigma (binomial).
    thickness = 5.0
    inputs = slab_inputs(thickness)
    n = 200_000
    t = narrow_beam_transmission(
        energy_keV, n, 11, inputs.voxels, f32(inputs.tables.mat_tab),
        f32(inputs.majorant), f32(inputs.params),
    )  # fmt: skip
    mu = float(mass_attenuation("water", np.array([energy_keV]))["total"][0])
    expected = math.exp(-mu * 1.0 * thickness)
    sigma = math.sqrt(expected * (1 - expected) / n)
    assert abs(t - expected) < 4 * sigma, (t, expected, sigma)


def test_narrow_beam_matches_xcom_at_200_keV_in_a_heterogeneous_majorant():
    # NIST XCOM: water mu/rho(200 keV) = 0.1370 cm^2/g (shared/REFERENCES.md).  The slab is
    # split into water and bone regions so that the majorant is set by bone (1.92 g/cm3)
    # and most flights in water are virtual: the transmission through the water part must
    # still be exp(-mu x).
    from mcdose.transport.setup import prepare_simulation

    slices = 20
    density = np.full((slices + 1, 1, 1), 1.0, np.float32)
    density[-1] = 1e-6  # a vacuum-like exit slice made of bone material at ~zero density
    materials = np.zeros(density.shape, np.uint8)
    materials[-1] = 1
    density_max_bone = 1.92
    inputs = prepare_simulation(
        density, np.ones_like(density), (1000.0, 1000.0, 2.5),
        materials=materials, material_names=("water", "cortical_bone"),
    )  # fmt: skip
    # raise the majorant as if a dense bone voxel existed somewhere
    from mcdose.transport.setup import woodcock_majorant

    majorant = woodcock_majorant(inputs.tables, np.array([1.0, density_max_bone]))
    n = 200_000
    t = narrow_beam_transmission(
        200.0, n, 5, inputs.voxels, f32(inputs.tables.mat_tab), f32(majorant),
        f32(inputs.params),
    )  # fmt: skip
    expected = math.exp(-0.1370 * 1.0 * 5.0)  # XCOM; the exit slice adds < 1e-6
    sigma = math.sqrt(expected * (1 - expected) / n)
    assert abs(t - expected) < 4 * sigma + 0.002 * expected, (t, expected)


def test_narrow_beam_through_air_around_a_body_box_equals_exp_minus_mu_x():
    # The beam starts in air outside the body box, where flights use the small outside
    # majorant and stop at the box's face: the uncollided fraction through 10 cm of dense
    # "air" (0.04 g/cm3, just below the box threshold, so that it attenuates by 5 %), 5 cm
    # water and 10 cm air must still be exp(-sum mu_i x_i) (Beer-Lambert; mu/rho from
    # xraydb, water 0.1370 cm^2/g at 200 keV as NIST XCOM).  2e5 photons, 4 sigma.
    from mcdose.physics import layout as L
    from mcdose.transport.setup import prepare_simulation

    density = np.full((50, 1, 1), 0.04, np.float32)  # 5 mm slices
    density[20:30] = 1.0
    materials = np.zeros(density.shape, np.uint8)
    materials[20:30] = 1
    inputs = prepare_simulation(
        density, np.ones_like(density), (1000.0, 1000.0, 5.0),
        materials=materials, material_names=("air", "water"),
    )  # fmt: skip
    p = inputs.params
    assert p[L.P_OUTSIDE_SCALE] < 0.1  # the box is in use
    assert (p[L.P_BOX_Z0], p[L.P_BOX_Z1]) == pytest.approx((10.0, 15.0))
    n = 200_000
    energy = 208.37
    t = narrow_beam_transmission(
        energy, n, 3, inputs.voxels, f32(inputs.tables.mat_tab), f32(inputs.majorant), f32(p),
    )  # fmt: skip
    mu = {m: float(mass_attenuation(m, np.array([energy]))["total"][0]) for m in ("air", "water")}
    expected = math.exp(-mu["water"] * 1.0 * 5.0 - mu["air"] * 0.04 * 20.0)
    sigma = math.sqrt(expected * (1 - expected) / n)
    assert abs(t - expected) < 4 * sigma, (t, expected, sigma)


def test_distance_to_the_body_box():
    from mcdose.physics import layout as L
    from mcdose.physics.fp import F_FAR
    from mcdose.transport.history import distance_to_body_box, in_body_box

    p = np.zeros(L.N_PARAMS, np.float32)
    p[[L.P_BOX_X0, L.P_BOX_Y0, L.P_BOX_Z0]] = 1.0
    p[[L.P_BOX_X1, L.P_BOX_Y1, L.P_BOX_Z1]] = 3.0
    f = np.float32
    assert distance_to_body_box(f(0), f(2), f(2), f(1), f(0), f(0), p) == pytest.approx(1.0)
    assert distance_to_body_box(f(5), f(2), f(2), f(-1), f(0), f(0), p) == pytest.approx(2.0)
    r = f(1 / math.sqrt(2))  # diagonally in through the edge region
    assert distance_to_body_box(f(0), f(0), f(2), r, r, f(0), p) == pytest.approx(math.sqrt(2))
    assert distance_to_body_box(f(0), f(2), f(2), f(-1), f(0), f(0), p) == F_FAR  # away
    assert distance_to_body_box(f(0), f(5), f(2), f(1), f(0), f(0), p) == F_FAR  # parallel
    assert distance_to_body_box(f(0), f(0), f(2), r, -r, f(0), p) == F_FAR  # passes by
    assert in_body_box(f(1), f(3), f(2), p) and not in_body_box(f(0.99), f(2), f(2), p)


def test_no_body_box_without_air_around_the_body():
    from mcdose.physics import layout as L

    p = slab_inputs(5.0).params
    assert p[L.P_OUTSIDE_SCALE] == 1.0 and p[L.P_INV_OUTSIDE_SCALE] == 1.0


def _kn_dsigma_domega(energy_keV, cos_t):
    """Klein-Nishina dσ/dΩ up to a constant (Klein & Nishina 1929), written in cos θ."""
    k = energy_keV / ELECTRON_REST_ENERGY_KEV
    ratio = 1.0 / (1.0 + k * (1.0 - cos_t))
    return ratio**2 * (ratio + 1.0 / ratio - (1.0 - cos_t**2))


@pytest.mark.parametrize("energy_keV", [55.0, 208.37, 500.0])
def test_compton_energy_spectrum_matches_klein_nishina(energy_keV):
    # Sampled E'/E histogram against the Klein-Nishina law integrated independently in
    # cos(theta) (E'/E = 1/(1 + k(1 - cos))); chi-square goodness of fit, p > 1e-3.
    inputs = slab_inputs(1.0)
    n = 200_000
    eps = compton_samples(inputs.tables.kn_table, f32(inputs.params), energy_keV, n, 3)
    k = energy_keV / ELECTRON_REST_ENERGY_KEV
    eps_min = 1.0 / (1.0 + 2.0 * k)
    assert eps.min() >= eps_min - 1e-12 and eps.max() <= 1.0
    edges_eps = np.linspace(eps_min, 1.0, 31)
    # eps edges -> cos edges
    cos_edges = 1.0 - (1.0 / edges_eps - 1.0) / k
    total = integrate.quad(lambda c: _kn_dsigma_domega(energy_keV, c), -1.0, 1.0)[0]
    expected = np.array(
        [
            integrate.quad(lambda c: _kn_dsigma_domega(energy_keV, c), lo, hi)[0] / total
            for lo, hi in zip(cos_edges[:-1], cos_edges[1:], strict=True)
        ]
    ) * n
    observed, _ = np.histogram(eps, bins=edges_eps)
    chi2 = ((observed - expected) ** 2 / expected).sum()
    p = stats.chi2.sf(chi2, len(observed) - 1)
    assert p > 1e-3, (chi2, p)


def test_rayleigh_mean_cosine_matches_form_factor_law():
    # <cos theta> of sampled Rayleigh deflections against direct integration of
    # (1 + cos^2)/2 F^2(q) with the molecular form factor (PENELOPE-2008 eq. 2.7), 5 sigma.
    from mcdose.physics.constants import HC_KEV_ANGSTROM
    from mcdose.physics.photon_data import form_factor_squared

    inputs = slab_inputs(1.0)
    for energy in (30.0, 100.0, 208.37):
        c = rayleigh_samples(inputs.tables.ray_table, f32(inputs.params), 0, energy, 100_000, 8)
        k = energy / HC_KEV_ANGSTROM

        def pdf(mu, k=k):
            q = k * math.sqrt(max(0.0, (1.0 - mu) / 2.0))
            return (1.0 + mu * mu) * float(form_factor_squared("water", np.array([q]))[0])

        norm = integrate.quad(pdf, -1, 1, limit=200, points=[0.9, 0.99, 0.999])[0]
        mean = integrate.quad(lambda m: m * pdf(m), -1, 1, limit=200,
                              points=[0.9, 0.99, 0.999])[0] / norm  # fmt: skip
        sigma = c.std() / math.sqrt(c.size)
        assert abs(c.mean() - mean) < 5 * sigma + 1e-3, (energy, c.mean(), mean)
