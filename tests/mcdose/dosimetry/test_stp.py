"""Tests of mcdose.dosimetry.stp: single-time-point dose (Hänscheid 2018, Madsen 2018).

References: the closed forms of the two approximations on mono-exponential kinetics —
D_true = Ḋ(t)·e^{kt}/k (∫ of Ḋ0 e^{−kt}); Madsen et al., Med. Phys. 45 (2018) 2318, use
exactly that with a population k; Hänscheid et al., J. Nucl. Med. 59 (2018) 75, use
2t/ln 2, whose ratio to the truth is 2x·2^{−x} (x = t/T_eff): 1 at x = 1 and 2, maximum
2/(e·ln 2) = 1.0615 at x = 1/ln 2 (the paper's "at most 6 % high between").
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mcdose.dosimetry import stp
from mcdose.dosimetry import timeintegration as ti
from mcdose.errors import InputError
from tests.helpers import assert_one_line

LN2 = math.log(2)
T_LU = 6.647 * 24


def _true_factor_h(t, t_eff):
    """∫0^∞ A(τ) dτ / A(t) for A ∝ e^{−kτ}: e^{kt}/k (h)."""
    k = LN2 / t_eff
    return math.exp(k * t) / k


@pytest.mark.parametrize("t,t_eff", [(24.0, 50.0), (96.0, 50.0), (72.0, 90.0), (4.0, 70.0)])
def test_madsen_exact_on_mono_exponential_kinetics(t, t_eff):
    assert stp.madsen_factor_h(t, t_eff) == pytest.approx(_true_factor_h(t, t_eff), rel=1e-12)
    assert stp.madsen_relative_error(t, t_eff, t_eff) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("t_eff", [40.0, 50.0, 90.0])
def test_hanscheid_exact_at_teff_and_twice_teff(t_eff):
    for t in (t_eff, 2 * t_eff):
        assert stp.hanscheid_factor_h(t) == pytest.approx(_true_factor_h(t, t_eff), rel=1e-12)


def test_hanscheid_at_most_6_2_percent_high_between():
    """Between T_eff and 2 T_eff the error is ≥ 0 and ≤ 6.15 % (max at t = T_eff/ln 2)."""
    t_eff = 50.0
    ts = np.linspace(t_eff, 2 * t_eff, 401)
    err = np.array([stp.hanscheid_factor_h(t) / _true_factor_h(t, t_eff) - 1 for t in ts])
    assert err.min() >= -1e-12 and err.max() <= 0.062
    assert err.max() == pytest.approx(2 / (math.e * LN2) - 1, rel=1e-4)  # 0.06148
    assert ts[np.argmax(err)] == pytest.approx(t_eff / LN2, abs=0.2)
    assert stp.hanscheid_relative_error(t_eff / LN2, t_eff) == pytest.approx(0.061476, abs=1e-6)


@pytest.mark.parametrize("x,expected", [(0.5, 2 ** 0.5 / 2 - 1), (3.0, 6 / 8 - 1),
                                        (4.0, 8 / 16 - 1), (0.764397, -0.1), (2.437268, -0.1)])
def test_hanscheid_error_elsewhere(x, expected):
    """Outside [T_eff, 2 T_eff] the approximation is low: 2x·2^{−x} − 1 (closed form), e.g.
    −29.3 % at x = 0.5, −25 % at x = 3, −50 % at x = 4; −10 % at x = 0.764 and 2.437."""
    t_eff = 60.0
    got = stp.hanscheid_factor_h(x * t_eff) / _true_factor_h(x * t_eff, t_eff) - 1
    assert got == pytest.approx(expected, abs=1e-6)
    assert stp.hanscheid_relative_error(x * t_eff, t_eff) == pytest.approx(expected, abs=1e-6)


def test_madsen_first_order_insensitive_at_teff_over_ln2():
    """A 10 % T_eff error: dose error ≈ ε(1 − kt), i.e. ≈ 0 at t = T_eff/ln 2 (second order:
    < 1 %), ≈ −10 % for an early scan (t → 0)."""
    t_eff = 50.0
    assert abs(stp.madsen_relative_error(t_eff / LN2, t_eff, 1.1 * t_eff)) < 0.01
    assert stp.madsen_relative_error(0.5, t_eff, 1.1 * t_eff) == pytest.approx(0.1, abs=0.01)


def test_stp_against_multi_time_point_on_bi_exponential_kinetics():
    """Uptake (T_u = 3 h) and washout (T_e = 40 h), scan at 96 h: the late activity is
    A0·e^{−λe t}(1 − e^{−(λu−λe)t}) ≈ A0·e^{−λe t}, so Madsen with T_eff = T_e gives
    A0/λe, above the true A0(1/λe − 1/λu) by T_u/(T_e − T_u) = 8.1 % (closed form), and
    the 5-point bi-exponential fit recovers the truth (rel 1e-4)."""
    a0, te, tu, t = 80.0, 40.0, 3.0, 96.0
    le, lu = LN2 / te, LN2 / tu
    hours = [4.0, 24.0, 48.0, 96.0, 168.0]
    curve = [a0 * (math.exp(-le * h) - math.exp(-lu * h)) for h in hours]
    true = a0 * (1 / le - 1 / lu)
    mtp = ti.fit_time_activity(hours, curve, "bi", T_LU).tia_MBq_h
    assert mtp == pytest.approx(true, rel=1e-4)
    a_t = a0 * (math.exp(-le * t) - math.exp(-lu * t))
    madsen = a_t * stp.madsen_factor_h(t, te)
    assert madsen / mtp - 1 == pytest.approx(tu / (te - tu), rel=1e-6)
    hanscheid = a_t * stp.hanscheid_factor_h(t)
    # t = 2.4 T_e: Hänscheid's mono error 2x·2^{−x} − 1 = −10.3 %, times the same 8.1 %
    x = t / te
    assert hanscheid / mtp == pytest.approx((2 * x * 2 ** -x) * (1 + tu / (te - tu)), rel=1e-6)


def test_organ_classes_and_overrides():
    assert stp.organ_class("kidney_left") == "kidney"
    assert stp.organ_class("Lesion") == "tumour"
    assert stp.organ_class("lesion_1_liver") == "tumour"  # lesion words first
    assert stp.organ_class("Liver") == "liver" and stp.organ_class("lung_left") is None
    plan = stp.plan_stp("madsen", 96.0, ["kidney_left", "liver", "lung_left", "lesion_1"],
                        stp.parse_teff_overrides(["kidney=45", "lesion_1=120"]))
    assert plan.regions["kidney_left"]["t_eff_h"] == 45.0
    assert plan.regions["liver"]["t_eff_h"] == stp.POPULATION_TEFF_H["liver"]
    assert plan.regions["lesion_1"]["factor_h"] == pytest.approx(
        stp.madsen_factor_h(96.0, 120.0))
    # no population value: Hänscheid's factor (stated fallback)
    assert plan.regions["lung_left"]["factor_h"] == pytest.approx(2 * 96 / LN2)
    assert plan.default_factor_h == pytest.approx(2 * 96 / LN2)


@pytest.mark.parametrize("items,words", [(["kidney"], ["kidney", "HOURS"]),
                                         (["kidney=-3"], ["HOURS > 0"]),
                                         (["heart=40"], ["heart", "organ class"])])
def test_bad_overrides(items, words):
    with pytest.raises(InputError) as exc:
        stp.plan_stp("madsen", 96.0, ["liver"], stp.parse_teff_overrides(items))
    assert_one_line(exc, *words)


def test_plan_needs_a_time():
    with pytest.raises(InputError) as exc:
        stp.plan_stp("hanscheid", None, [])
    assert_one_line(exc, "--timepoint", "HOURS")
