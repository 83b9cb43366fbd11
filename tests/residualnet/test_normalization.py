"""residualnet.normalization: documented formulas, exact inverse, count-level independence."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mcdose.errors import InputError
from residualnet.normalization import CaseScale, Normalization, fit_normalization


def test_formulas():
    norm = Normalization(spect_scale=500.0, dose_scale=2.0e4)
    spect = np.array([[[1.0, 3.0], [0.0, 4.0]]], dtype=np.float32)  # S = 8 MBq
    total = float(spect.sum())
    np.testing.assert_allclose(norm.normalize_spect(spect, total), 500.0 * spect / 8.0)
    dose = np.array([[[1e-3, 2e-3], [0.0, 5e-4]]], dtype=np.float32)
    np.testing.assert_allclose(norm.normalize_dose(dose, total), 2.0e4 * dose / 8.0, rtol=1e-6)
    np.testing.assert_array_equal(norm.normalize_density(spect), spect)


def test_round_trip_is_exact():
    rng = np.random.default_rng(0)
    norm = Normalization(spect_scale=731.3, dose_scale=1.234e5)
    dose64 = rng.gamma(1.5, 1e-4, size=(4, 8, 8))
    dose32 = dose64.astype(np.float32)
    for total in (1.0, 517.25, 3.3e4):
        # float64 all the way: exact to double precision
        back64 = norm.denormalize_dose(norm.normalize_dose(dose64, total), total)
        assert back64.dtype == np.float64
        np.testing.assert_allclose(back64, dose64, rtol=4e-16, atol=0)
        # float32 storage of the normalised dose (as the network sees it): within one
        # float32 rounding of the original
        normalised = norm.normalize_dose(dose32, total)
        assert normalised.dtype == np.float32
        back32 = norm.denormalize_dose(normalised, total)
        assert back32.dtype == np.float32
        np.testing.assert_allclose(back32, dose32, rtol=np.finfo(np.float32).eps, atol=0)
        # the inverse of the stored normalised values is exact: normalising again reproduces
        # them bit for bit
        np.testing.assert_array_equal(
            norm.normalize_dose(norm.denormalize_dose(normalised.astype(np.float64), total),
                                total).astype(np.float32),
            normalised,
        )


def test_count_level_independence():
    # scaling the SPECT (counts / administered activity) and the doses by one factor
    # leaves every normalised array unchanged
    rng = np.random.default_rng(1)
    spect = rng.random((3, 5, 5)).astype(np.float64)
    dose = rng.random((3, 5, 5)).astype(np.float64) * 1e-3
    norm = Normalization(spect_scale=100.0, dose_scale=1e4)
    a = norm.normalize_spect(spect, spect.sum()), norm.normalize_dose(dose, spect.sum())
    k = 7.3
    b = norm.normalize_spect(k * spect, (k * spect).sum()), norm.normalize_dose(
        k * dose, (k * spect).sum()
    )
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-6)


def test_fit_and_serialisation():
    scales = [CaseScale(100.0, 1e-3, 2e-5), CaseScale(50.0, 2e-3, 4e-5), CaseScale(80.0, 4e-3,
                                                                                 math.nan)]
    norm = fit_normalization(scales)
    assert norm.spect_scale == pytest.approx(1 / 2e-3)  # median of the maxima
    assert norm.dose_scale == pytest.approx(1 / 3e-5)  # median of the finite VDK maxima
    single = fit_normalization(scales, single_constant=True)
    assert single.spect_scale == single.dose_scale == norm.dose_scale
    assert Normalization.from_dict(norm.to_dict()) == norm


def test_errors():
    norm = Normalization(1.0, 1.0)
    for total in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(InputError, match="SPECT"):
            norm.dose_factor(total)
    with pytest.raises(InputError):
        Normalization(spect_scale=0.0, dose_scale=1.0)
    with pytest.raises(InputError):
        Normalization.from_dict({"spect_scale": 1.0})
    with pytest.raises(InputError, match="no training cases"):
        fit_normalization([])
