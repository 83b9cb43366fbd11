"""Tests of mcdose.dosimetry.timeintegration: fits, voxel/organ integration, registration.

Reference values are the closed-form integrals of the model curves: ∫0^∞ A0 e^{−λt} dt =
A0/λ and ∫0^∞ A0 (e^{−λe t} − e^{−λu t}) dt = A0 (1/λe − 1/λu).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mcdose.dosimetry import timeintegration as ti
from mcdose.errors import InputError
from mcdose.io.case import Geometry
from tests.helpers import assert_one_line
from tests.mcdose.dosimetry.synthetic import CT_GEOMETRY, ct_hu

#: Lu-177 half-life (ICRP-107: 6.647 d), h
T_LU = 6.647 * 24
HOURS = [4.0, 24.0, 48.0, 96.0, 168.0]


def _mono(a0, t_eff):
    return [a0 * math.exp(-math.log(2) / t_eff * t) for t in HOURS]


def _bi(a0, t_e, t_u):
    le, lu = math.log(2) / t_e, math.log(2) / t_u
    return [a0 * (math.exp(-le * t) - math.exp(-lu * t)) for t in HOURS], a0 * (1 / le - 1 / lu)


@pytest.mark.parametrize("t_eff", [150.0, 40.0, 6.0])
def test_mono_fit_exact(t_eff):
    fit = ti.fit_time_activity(HOURS, _mono(50.0, t_eff), "mono", T_LU)
    assert fit.tia_MBq_h == pytest.approx(50.0 * t_eff / math.log(2), rel=1e-6)
    assert fit.parameters["effective_half_life_h"] == pytest.approx(t_eff, rel=1e-6)


def test_mono_fit_bounded_by_physical_decay():
    """Activity rising with time cannot clear slower than physical decay: λ = λ_p."""
    fit = ti.fit_time_activity([24.0, 48.0], [10.0, 12.0], "mono", T_LU)
    assert fit.parameters["effective_half_life_h"] == pytest.approx(T_LU, rel=1e-6)


@pytest.mark.parametrize("t_e,t_u", [(40.0, 3.0), (100.0, 1.0), (20.0, 10.0)])
def test_bi_fit_exact(t_e, t_u):
    curve, expected = _bi(80.0, t_e, t_u)
    fit = ti.fit_time_activity(HOURS, curve, "bi", T_LU)
    assert fit.tia_MBq_h == pytest.approx(expected, rel=1e-4)
    assert fit.parameters["uptake_half_life_h"] == pytest.approx(t_u, rel=1e-3)


def test_trapezoid_closed_form():
    a = [10.0, 8.0, 5.0]
    t = [2.0, 24.0, 72.0]
    expected = 10 * 2 / 2 + (10 + 8) / 2 * 22 + (8 + 5) / 2 * 48 + 5 * T_LU / math.log(2)
    assert ti.fit_time_activity(t, a, "trapezoid", T_LU).tia_MBq_h == pytest.approx(expected)


def test_voxel_integration_matches_closed_forms():
    """Voxel grid search: mono within 0.05 %, bi within 1 % (final grid step 2 %)."""
    shape = (2, 3, 4)
    cases = [("mono", _mono(3.0, 30.0), 3.0 * 30.0 / math.log(2), 5e-4)]
    curve, expected = _bi(3.0, 40.0, 3.0)
    cases.append(("bi", curve, expected, 1e-2))
    for method, values, want, rtol in cases:
        stack = [np.full(shape, v, np.float32) for v in values]
        tia = ti.integrate_voxels(HOURS, stack, method, T_LU)
        np.testing.assert_allclose(tia, want, rtol=rtol)
    stack = [np.full(shape, v, np.float32) for v in _mono(3.0, 30.0)]
    stack[0][0, 0, 0] = 0.0
    mask = np.ones(shape, bool)
    mask[1] = False
    tia = ti.integrate_voxels(HOURS, stack, "trapezoid", T_LU, mask=mask)
    assert tia[1].max() == 0 and tia[0, 1, 1] > 0


def test_voxel_integration_of_empty_voxels_is_zero():
    stack = [np.zeros((2, 2, 2), np.float32) for _ in HOURS]
    assert ti.integrate_voxels(HOURS, stack, "mono", T_LU).max() == 0


def test_integrate_by_region():
    """Organ fits scale the first time point's distribution within each organ."""
    shape = (2, 4, 4)
    labels = np.zeros(shape, np.int32)
    labels[:, :2] = 1
    body = np.ones(shape, bool)
    body[:, 3, 3] = False
    rng = np.random.default_rng(0)
    pattern = rng.uniform(0.5, 1.5, shape).astype(np.float32)
    curves = {1: _mono(1.0, 20.0), 0: _mono(1.0, 80.0)}
    stack = []
    for k in range(len(HOURS)):
        a = np.where(labels == 1, curves[1][k], curves[0][k]) * pattern
        stack.append(a.astype(np.float32))
    tia, fits = ti.integrate_by_region(HOURS, stack, labels, "mono", T_LU, body=body)
    assert fits[1].parameters["effective_half_life_h"] == pytest.approx(20.0, rel=1e-5)
    assert fits[0].parameters["effective_half_life_h"] == pytest.approx(80.0, rel=1e-5)
    # voxel = A(first) × organ TIA / organ A(first) = pattern × A0 / λ  (A0 = 1)
    want = np.where(labels == 1, 20.0, 80.0) / math.log(2) * pattern
    want[~body] = 0
    np.testing.assert_allclose(tia, want, rtol=1e-4)


@pytest.mark.parametrize("hours,method,needle", [
    ([24.0, 4.0], "mono", "out of order"),
    ([4.0, 4.0], "mono", "out of order"),
    ([-1.0, 4.0], "mono", "not a time"),
    ([4.0, 24.0], "bi", "at least 3"),
    ([4.0, 24.0], "spline", "--integration"),
])
def test_check_times_refusals(hours, method, needle):
    with pytest.raises(InputError) as exc:
        ti.check_times(hours, method, labels=["a.dcm", "b.dcm"])
    assert_one_line(exc, needle)


def test_register_rigid_recovers_a_shift():
    """A CT of the same patient moved by (6, -4, 9) mm is registered to within 1 mm."""
    shift = (6.0, -4.0, 9.0)
    fixed = ct_hu()
    moving = ct_hu(shift_mm=shift)
    transform, info = ti.register_rigid(fixed, CT_GEOMETRY, moving, CT_GEOMETRY, seed=1)
    # the transform maps first-CT points to moving-CT points: a point moves by +shift
    p = np.array([0.0, 50.0, -215.0])
    q = np.asarray(transform.TransformPoint(tuple(p)))
    np.testing.assert_allclose(q - p, shift, atol=1.0)
    assert np.max(np.abs(info["rotation_deg"])) < 1.0


def test_register_rigid_refuses_disjoint_images():
    far = Geometry(CT_GEOMETRY.spacing_mm, (1000.0, 1000.0, 1000.0))
    with pytest.raises(InputError) as exc:
        ti.register_rigid(ct_hu(), CT_GEOMETRY, ct_hu(), far)
    assert_one_line(exc, "registration failed")
