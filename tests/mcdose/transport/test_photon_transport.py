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
