"""Electron transport validation: multiple scattering, CSDA range, transmission."""

import math

import numpy as np
import pytest

from mcdose.transport.setup import TransportOptions
from tests.mcdose.transport.harness import electron_transmission, f32, ms_samples, slab_inputs


@pytest.mark.parametrize("t_over_lambda", [0.01, 0.1, 0.5, 1.0, 3.0])
def test_multiple_scattering_mean_cosine_is_goudsmit_saunderson(t_over_lambda):
    # Goudsmit & Saunderson (1940): <cos theta> = exp(-s / lambda_1) after a path s
    # (shared/PHYSICS.md).  1e5 samples, tolerance 5 sigma.
    inputs = slab_inputs(1.0)
    c = ms_samples(inputs.tables.ms_table, f32(inputs.params), t_over_lambda, 100_000, 21)
    expected = math.exp(-t_over_lambda)
    sigma = c.std() / math.sqrt(c.size)
    assert abs(c.mean() - expected) < 5 * sigma + 2e-3 * expected, (c.mean(), expected)
    assert c.min() >= -1.0 and c.max() <= 1.0


# NIST ESTAR CSDA ranges in water (shared/REFERENCES.md), g/cm^2
ESTAR_RANGE = {100.0: 1.431e-2, 300.0: 8.421e-2, 500.0: 0.1766}


def _tabata_extrapolated_range_factor(energy_keV: float, z: float) -> float:
    """r_ex / r_CSDA from Tabata, Andreo & Shinoda, NIM B 119 (1996) 463, eq. 2, Table 1."""
    b = (0.0, 0.3879, 0.2178, 0.4541, 0.03068, 3.326e-16, 13.24, 1.316, 14.03, 0.7406,
         4.294e-3, 1.684, 0.2264, 0.6127, 0.1207)  # fmt: skip
    t0 = energy_keV / 510.99895
    lz = math.log(z)
    a1 = b[1] * z ** b[2]
    a2 = b[3] + b[4] * z
    a3 = b[5] * z ** (b[6] - b[7] * lz)
    a4 = b[8] / z ** b[9]
    a5 = b[10] * z ** (b[11] - b[12] * lz)
    a6 = b[13] * z ** b[14]
    return 1.0 / (a1 + a2 / (1.0 + a3 / t0**a4 + a5 * t0**a6))


# Tabata's effective atomic number of a compound, Z_eff = sum(w Z^2/A) / sum(w Z/A)
# (Tabata et al. 1996, sec. 4): 6.60 for water.
WATER_Z_EFF = 6.60


def _extrapolated_range(fractions: np.ndarray, eta: np.ndarray, half_width: int = 2) -> float:
    """Tangent of the transmission curve at its steepest point, intersected with eta = 0."""
    slope = np.convolve(np.gradient(eta, fractions), np.ones(3) / 3, mode="same")
    k = int(np.argmin(slope))
    lo, hi = max(0, k - half_width), min(len(fractions), k + half_width + 1)
    s, b = np.polyfit(fractions[lo:hi], eta[lo:hi], 1)
    return -b / s


@pytest.mark.parametrize("energy_keV", [100.0, 300.0, 500.0])
def test_transmission_through_water_slabs_gives_tabata_extrapolated_range(energy_keV):
    # Normally incident electrons on water slabs of increasing thickness (default step
    # control, range rejection off).  No electron passes a slab as thick as its CSDA range
    # (ESTAR), and the extrapolated range of the transmission curve (tangent at the
    # inflection point) equals Tabata, Andreo & Shinoda (1996) r_ex = f_d(T, Z_eff) r_CSDA
    # (f_d = 0.81-0.82 for water) within 3 %.  4000 electrons per thickness: the fit's
    # statistical scatter is ~0.5 %.
    options = TransportOptions(range_rejection=False)
    r0 = ESTAR_RANGE[energy_keV]
    fractions = np.linspace(0.3, 1.0, 29)
    eta = []
    for frac in fractions:
        inputs = slab_inputs(frac * r0, slices=8, options=options)
        eta.append(
            electron_transmission(
                energy_keV, 4000, 13, inputs.voxels, f32(inputs.tables.mat_tab),
                f32(inputs.tables.inv_range), f32(inputs.tables.range_grid),
                f32(inputs.tables.ms_table),
                f32(inputs.params),
            )  # fmt: skip
        )
    eta = np.array(eta)
    assert eta[-1] < 0.003  # nothing crosses a CSDA range (bar rare bremsstrahlung tails)
    assert np.all(np.diff(eta) < 0.03)  # monotone within noise
    r_ex = _extrapolated_range(fractions, eta)
    expected = _tabata_extrapolated_range_factor(energy_keV, WATER_Z_EFF)
    assert abs(r_ex - expected) < 0.03 * expected, (r_ex, expected, eta.round(3))
