"""Tests of mcdose.dosimetry.uncertainty (EANM budget, Gear et al. 2018) against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mcdose.dosimetry import uncertainty as unc


@pytest.mark.parametrize("radius_mm", [10.0, 20.0, 40.0])
def test_surface_area_of_a_digitised_sphere(radius_mm):
    """Voxel faces / 1.5 estimate a sphere's 4πr² within 6 % (2 mm voxels, r ≥ 5 voxels;
    the 3/2 ratio is the mean of |n_x| + |n_y| + |n_z| over directions)."""
    s = 2.0
    n = int(2 * radius_mm / s) + 6
    c = (np.arange(n) - (n - 1) / 2) * s
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    mask = x**2 + y**2 + z**2 <= radius_mm**2
    assert unc.surface_area_mm2(mask, (s, s, s)) == pytest.approx(4 * math.pi * radius_mm**2,
                                                                  rel=0.06)


def test_volume_uncertainty_of_a_sphere_is_three_sigma_over_r():
    """u(V)/V = A·σ/V = 3σ/r for a sphere, σ = s_drawn/√12 (rectangular ± half a voxel)."""
    s, r = 2.0, 30.0
    n = int(2 * r / s) + 6
    c = (np.arange(n) - (n - 1) / 2) * s
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    mask = x**2 + y**2 + z**2 <= r**2
    volume_ml = 4 / 3 * math.pi * r**3 / 1000
    drawn = (1.0, 1.0, 3.0)  # CT voxels: mean 5/3 mm
    u = unc.volume_uncertainty_ml(mask, (s, s, s), drawn)
    assert u / volume_ml == pytest.approx(3 * (5 / 3) / math.sqrt(12) / r, rel=0.06)


def test_mc_term_is_sigma_over_root_n_for_uniform_voxels():
    dose = np.full((4, 5, 5), 2.0)
    rel = np.full(dose.shape, 0.1)
    mask = np.ones(dose.shape, bool)
    assert unc.mc_relative_uncertainty(dose, rel, mask) == pytest.approx(0.1 / math.sqrt(100))
    assert unc.mc_relative_uncertainty(dose, None, mask) is None


def test_combine_in_quadrature_ignoring_absent_terms():
    assert unc.combine({"calibration": 0.03, "volume": 0.04, "fit": None}) == pytest.approx(
        0.05)
    assert unc.combine({}) == 0.0
