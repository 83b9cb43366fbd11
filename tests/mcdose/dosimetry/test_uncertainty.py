"""Tests of mcdose.dosimetry.uncertainty (EANM budget, Gear et al. 2018) against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mcdose.dosimetry import uncertainty as unc


@pytest.mark.parametrize("n", [2, 5, 10])
def test_volume_uncertainty_of_a_cube(n):
    """n³ cube of s-mm voxels, surface moved by s/2: u(V) = 6n²s²·s/2, u(V)/V = 3/n."""
    mask = np.zeros((n + 4, n + 4, n + 4), bool)
    mask[2:-2, 2:-2, 2:-2] = True
    s = 4.0
    u_ml = unc.volume_uncertainty_ml(mask, (s, s, s))
    assert u_ml == pytest.approx(6 * n * n * s**3 / 2 / 1000)
    assert u_ml / (n**3 * s**3 / 1000) == pytest.approx(3 / n)


def test_volume_uncertainty_anisotropic_voxels():
    """One voxel of 2×3×5 mm: faces normal to x (area 3·5) move by 1 mm, to y (2·5) by
    1.5, to z (2·3) by 2.5: u(V) = 2·(15·1 + 10·1.5 + 6·2.5) mm³."""
    mask = np.zeros((3, 3, 3), bool)
    mask[1, 1, 1] = True
    assert unc.volume_uncertainty_ml(mask, (2.0, 3.0, 5.0)) == pytest.approx(
        2 * (15 * 1 + 10 * 1.5 + 6 * 2.5) / 1000)


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
