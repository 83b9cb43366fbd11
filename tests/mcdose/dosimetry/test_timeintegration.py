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


# --------------------------------------------------------------------------------------
# tri-exponential, AICc model selection, fit uncertainty
# --------------------------------------------------------------------------------------

HOURS7 = [1.0, 4.0, 24.0, 48.0, 72.0, 120.0, 168.0]


def _tri(a1, t1, a2, t2, tu, hours=HOURS7):
    """Tri-exponential with uptake; closed-form TIA A1/λ1 + A2/λ2 − (A1 + A2)/λu."""
    l1, l2, lu = (math.log(2) / x for x in (t1, t2, tu))
    curve = [a1 * math.exp(-l1 * t) + a2 * math.exp(-l2 * t) - (a1 + a2) * math.exp(-lu * t)
             for t in hours]
    return curve, a1 / l1 + a2 / l2 - (a1 + a2) / lu


@pytest.mark.parametrize("params", [(50.0, 80.0, 40.0, 8.0, 1.0), (10.0, 120.0, 30.0, 20.0, 3.0)])
def test_tri_fit_exact(params):
    """Noise-free tri-exponential data: the fitted TIA is the closed form (rel 1e-4)."""
    curve, expected = _tri(*params)
    fit = ti.fit_time_activity(HOURS7, curve, "tri", T_LU)
    assert fit.method == "tri"
    assert fit.tia_MBq_h == pytest.approx(expected, rel=1e-4)
    assert fit.parameters["effective_half_life_h"] == pytest.approx(params[1], rel=1e-3)
    # the model starts from 0 at t = 0 (uptake phase)
    assert ti.model_curve("tri", fit.parameters, [0.0])[0] == pytest.approx(0.0, abs=1e-9)


def test_tri_needs_five_points_and_organ_level():
    with pytest.raises(InputError) as exc:
        ti.fit_time_activity(HOURS[:4], [1.0, 2.0, 1.0, 0.5], "tri", T_LU)
    assert_one_line(exc, "tri", "5")
    stack = [np.ones((2, 2, 2), np.float32)] * 5
    with pytest.raises(InputError) as exc:
        ti.integrate_voxels(HOURS, stack, "tri", T_LU)
    assert_one_line(exc, "organ")


@pytest.mark.parametrize("method", ["mono", "bi", "tri"])
def test_clearance_never_slower_than_physical_decay(method):
    """Activity that keeps rising: every model's slowest clearance is physical decay."""
    a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    fit = ti.fit_time_activity(HOURS7, a, method, T_LU)
    assert fit.parameters["effective_half_life_h"] <= T_LU * (1 + 1e-9)


def test_aicc_closed_form():
    """AICc = n ln(SSR/n) + 2k + 2k(k+1)/(n−k−1) (Glatting et al. 2007, eq. 2); infinite
    when n ≤ k + 1."""
    assert ti.aicc(2.0, 7, 3) == pytest.approx(7 * math.log(2.0 / 7) + 6 + 24 / 3)
    assert ti.aicc(2.0, 4, 3) == math.inf
    w = ti.akaike_weights({"a": 10.0, "b": 12.0, "c": math.inf})
    assert w["a"] == pytest.approx(1 / (1 + math.exp(-1)))
    assert sum(w.values()) == pytest.approx(1.0) and "c" not in w


def _noisy(curve, rel, seed):
    rng = np.random.default_rng(seed)
    return [max(a * (1 + rel * rng.standard_normal()), 0.0) for a in curve]


def test_auto_chooses_the_generating_model():
    """7 points, 2 % noise: uptake + washout data pick bi (not mono); a pure washout picks
    mono.  Weights over the candidates sum to 1."""
    ln2 = math.log(2)
    bi = [80 * (math.exp(-ln2 / 40 * t) - math.exp(-ln2 / 3 * t)) for t in HOURS7]
    fit = ti.fit_time_activity(HOURS7, _noisy(bi, 0.02, 1), "auto", T_LU)
    assert fit.method == "bi" and fit.requested == "auto"
    assert fit.aicc_weight > 0.5
    assert sum(c["weight"] for c in fit.candidates.values()) == pytest.approx(1.0)
    assert set(fit.candidates) == {"mono", "bi", "tri"}  # tri (K = 5) needs n ≥ K + 2 = 7
    mono = [80 * math.exp(-ln2 / 40 * t) for t in HOURS7]
    fit = ti.fit_time_activity(HOURS7, _noisy(mono, 0.02, 2), "auto", T_LU)
    assert fit.method == "mono"
    assert fit.tia_MBq_h == pytest.approx(80 * 40 / ln2, rel=0.03)  # 2 % noise, 7 points


def test_auto_guards_against_over_fitting_with_few_points():
    """5 points: tri is no candidate (n < K + 2 = 7); 3 points: no AICc at all, the stated
    fallback is mono with no weight."""
    curve, _ = _bi(80.0, 40.0, 3.0)
    fit = ti.fit_time_activity(HOURS, curve, "auto", T_LU)
    assert set(fit.candidates) == {"mono", "bi"} and fit.method == "bi"
    fit = ti.fit_time_activity(HOURS[:3], curve[:3], "auto", T_LU)
    assert fit.method == ti.AUTO_FALLBACK == "mono" and fit.aicc_weight is None


def test_tia_uncertainty_from_the_covariance_matches_replicates():
    """Mono-exponential data with 5 % Gaussian noise, 300 replicates (seeded): the median
    of the TIA standard uncertainties propagated from each fit's covariance agrees with the
    replicates' standard deviation within 20 % (the SD of an SD from 300 samples is 4 %; the
    residual-scaled covariance of 5 points is itself noisy — k ≈ 3 on both)."""
    ln2 = math.log(2)
    clean = [100 * math.exp(-ln2 / 50 * t) for t in HOURS]
    rng = np.random.default_rng(7)
    tias, sds = [], []
    for _ in range(300):
        a = [v * (1 + 0.05 * rng.standard_normal()) for v in clean]
        fit = ti.fit_time_activity(HOURS, a, "mono", T_LU)
        tias.append(fit.tia_MBq_h)
        sds.append(fit.tia_sd_MBq_h)
    empirical = float(np.std(tias, ddof=1))
    assert float(np.median(sds)) == pytest.approx(empirical, rel=0.2)
    # as many points as parameters: not estimable
    assert ti.fit_time_activity(HOURS[:2], clean[:2], "mono", T_LU).tia_sd_MBq_h is None


def test_voxel_auto_chooses_per_voxel():
    """Half the voxels wash out (mono), half take up and wash out (bi): each gets its own
    model, and the TIA matches the generating closed form (grid search: within 1 %)."""
    ln2 = math.log(2)
    shape = (2, 2, 2)
    mono = [3.0 * math.exp(-ln2 / 30 * t) for t in HOURS]
    bi, bi_tia = _bi(3.0, 40.0, 3.0)
    stack = []
    for j in range(len(HOURS)):
        a = np.full(shape, mono[j], np.float32)
        a[1] = bi[j]
        stack.append(a)
    choices = {}
    tia = ti.integrate_voxels(HOURS, stack, "auto", T_LU, choices=choices)
    assert choices == {"mono": 4, "bi": 4}
    np.testing.assert_allclose(tia[0], 3.0 * 30 / ln2, rtol=1e-3)
    np.testing.assert_allclose(tia[1], bi_tia, rtol=1e-2)
    # 4 points: mono only per voxel (bi needs 5 for its AICc)
    choices = {}
    ti.integrate_voxels(HOURS[:4], stack[:4], "auto", T_LU, choices=choices)
    assert choices == {"mono": 8}
