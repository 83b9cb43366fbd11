"""Tests for mcdose.materials: compositions, CT calibrations, density → material."""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import pytest

from mcdose.errors import InputError
from mcdose.materials import (
    AIR_DENSITY_G_CM3,
    DEFAULT_ASSIGNMENT,
    MATERIALS,
    HUCalibration,
    Material,
    MaterialAssignment,
    assign_materials,
    bragg_mean_excitation_energy,
    get_material,
    hu_to_density,
)

# ----------------------------------------------------------------------------- compositions

# <Z/A> (mol/g) from NIST SRD 126 (Hubbell & Seltzer), Table 2.
NIST_Z_OVER_A = {
    "air": 0.49919,
    "lung": 0.55048,
    "adipose": 0.55579,
    "soft_tissue": 0.54975,
    "water": 0.55508,
    "muscle": 0.55000,
    "cortical_bone": 0.51478,
}


def test_builtin_materials_present():
    assert set(MATERIALS) == {
        "air",
        "lung",
        "adipose",
        "soft_tissue",
        "water",
        "muscle",
        "cortical_bone",
    }
    for name, mat in MATERIALS.items():
        assert mat.name == name
        assert math.isclose(sum(mat.mass_fractions.values()), 1.0, abs_tol=1e-12)
        assert mat.source


@pytest.mark.parametrize("name", sorted(NIST_Z_OVER_A))
def test_z_over_a_matches_nist(name):
    # NIST SRD 126 Table 2 <Z/A>; differences come only from atomic weights (xraydb vs NIST).
    assert MATERIALS[name].z_over_a == pytest.approx(NIST_Z_OVER_A[name], rel=2e-4)


def test_electrons_and_atoms_per_gram_water():
    water = get_material("water")
    # 3.343e23 electrons per gram (N_A × 0.55508).
    assert water.electrons_per_gram == pytest.approx(6.02214076e23 * 0.55508, rel=2e-4)
    atoms = water.atoms_per_gram
    assert atoms["H"] / atoms["O"] == pytest.approx(2.0, rel=1e-3)  # H2O
    assert water.electron_density_per_cm3 == pytest.approx(water.electrons_per_gram)
    assert list(water.atomic_numbers) == [1, 8]


@pytest.mark.parametrize(
    ("name", "i_ev"),
    # NIST SRD 126 Table 2 I values of the ICRU-44 tissues (Bragg rule with ICRU 37 values).
    [("lung", 75.2), ("adipose", 64.8), ("muscle", 74.6), ("cortical_bone", 112.0)],
)
def test_bragg_rule_reproduces_nist_mean_excitation_energy(name, i_ev):
    mat = MATERIALS[name]
    assert bragg_mean_excitation_energy(mat.mass_fractions) == pytest.approx(i_ev, abs=0.1)
    assert mat.mean_excitation_energy_eV == i_ev


def test_water_and_air_use_icru37_values():
    # ICRU 37: water 75.0 eV (REFERENCES.md), dry air 85.7 eV.
    assert get_material("water").mean_excitation_energy_eV == 75.0
    assert get_material("air").mean_excitation_energy_eV == 85.7
    # The Bragg rule with condensed-phase values gives 75.3 eV for water (ICRU 37 prefers 75).
    assert bragg_mean_excitation_energy({"H": 0.111898, "O": 0.888102}) == pytest.approx(
        75.3, abs=0.1
    )


def test_get_material_normalises_names_and_lists_choices():
    assert get_material("Soft Tissue") is MATERIALS["soft_tissue"]
    assert get_material("cortical-bone") is MATERIALS["cortical_bone"]
    mat = MATERIALS["water"]
    assert get_material(mat) is mat
    with pytest.raises(InputError, match="unknown material 'plutonium'.*water.*cortical_bone"):
        get_material("plutonium")


def test_material_validation():
    with pytest.raises(InputError, match="sum"):
        Material("x", 1.0, {"H": 0.5, "O": 0.4}, 75.0)
    with pytest.raises(InputError, match="density"):
        Material("x", 0.0, {"H": 1.0}, 19.2)
    with pytest.raises(InputError, match="element"):
        Material("x", 1.0, {"Xx": 1.0}, 19.2)
    with pytest.raises(InputError, match="mean_excitation"):
        Material("x", 1.0, {"H": 1.0}, -1.0)
    with pytest.raises(InputError, match="empty"):
        Material("x", 1.0, {}, 19.2)


def test_material_is_frozen_hashable_and_normalised():
    mat = Material("custom", 1.1, {"O": 0.8881, "H": 0.1119}, 75.0, "test")
    assert mat.elements == ("H", "O")  # ordered by Z
    assert sum(mat.mass_fractions.values()) == pytest.approx(1.0, abs=1e-15)
    with pytest.raises(dataclasses.FrozenInstanceError):
        mat.density_g_cm3 = 2.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        mat.mass_fractions["H"] = 0.5  # type: ignore[index]
    cache = functools.lru_cache(maxsize=None)(lambda m: m.name)
    assert cache(mat) == "custom"
    assert hash(mat) == hash(Material("custom", 1.1, {"H": 0.1119, "O": 0.8881}, 75.0, "test"))


# ----------------------------------------------------------------------------- HU → density


def test_paper_calibration_values():
    # Li, Fessler et al. (DblurDoseNet): ρ = 0.00108·HU + 1.02351 (HU ≤ 0),
    # ρ = 0.00069·HU + 1.03107 (HU > 0); clipped at air density.
    hu = np.array([[-1000, -500, 0], [1, 500, 1000]], dtype=np.int16)
    rho = hu_to_density(hu)
    assert rho.dtype == np.float32
    assert rho.shape == hu.shape
    expected = np.array([[AIR_DENSITY_G_CM3, 0.48351, 1.02351], [1.03176, 1.37607, 1.72107]])
    np.testing.assert_allclose(rho, expected, rtol=1e-6)
    assert hu_to_density(-3000.0) == pytest.approx(0.0012)
    assert hu_to_density(np.float64(0.0), calibration="PAPER") == pytest.approx(1.02351)


def test_hu_to_density_rejects_bad_input():
    with pytest.raises(InputError, match="unknown CT calibration"):
        hu_to_density(np.zeros(3), calibration="schneider")
    with pytest.raises(InputError, match="finite"):
        hu_to_density(np.array([0.0, np.nan]))


def test_tabulated_calibration_interpolates_and_extrapolates():
    cal = HUCalibration([-1000, 0, 1000], [0.001, 1.0, 1.6])
    out = cal(np.array([-1000, -500, 0, 500, 1000, 2000, -1100]))
    assert out.dtype == np.float32
    # -1000 HU → 0.001 g/cm3 is below the air clip (0.0012); -1100 extrapolates below it too
    np.testing.assert_allclose(out, [0.0012, 0.5005, 1.0, 1.3, 1.6, 2.2, 0.0012], rtol=1e-6)
    np.testing.assert_allclose(hu_to_density(np.array([500.0]), calibration=cal), [1.3])
    assert cal == HUCalibration([-1000, 0, 1000], [0.001, 1.0, 1.6])


@pytest.mark.parametrize(
    ("hu", "rho", "message"),
    [
        ([0, 0], [1.0, 1.0], "strictly increasing"),
        ([0, -1], [1.0, 1.0], "strictly increasing"),
        ([0], [1.0], "at least two"),
        ([0, 1, 2], [1.0, 1.0], "densities"),
        ([0, 1], [1.0, -1.0], ">= 0"),
        ([0, np.inf], [1.0, 1.0], "finite"),
    ],
)
def test_tabulated_calibration_validation(hu, rho, message):
    with pytest.raises(InputError, match=message):
        HUCalibration(hu, rho)


def test_calibration_from_csv(tmp_path):
    path = tmp_path / "cal.csv"
    path.write_text("# scanner X\nhu,density_g_cm3\n-1000,0.0012\n0,1.0\n\n1500,1.9\n")
    cal = HUCalibration.from_csv(path)
    np.testing.assert_allclose(cal.hu, [-1000, 0, 1500])
    np.testing.assert_allclose(cal(np.array([750.0])), [1.45])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("HU;rho\n0;1\n", "header"),
        ("hu,density_g_cm3\n0,1.0\nabc,2\n", "line 3"),
        ("hu,density_g_cm3\n0,1.0,3\n", "2 columns"),
        ("hu,density_g_cm3\n10,1.0\n0,1.1\n", "strictly increasing"),
    ],
)
def test_calibration_from_csv_errors(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as info:
        HUCalibration.from_csv(path)
    assert "bad.csv" in str(info.value)


def test_calibration_from_missing_csv(tmp_path):
    with pytest.raises(InputError, match="not found"):
        HUCalibration.from_csv(tmp_path / "missing.csv")


# ----------------------------------------------------------------------------- density → material


def test_default_assignment_contains_each_nominal_density():
    names = DEFAULT_ASSIGNMENT.names
    assert names == ("air", "lung", "adipose", "soft_tissue", "cortical_bone")
    assert DEFAULT_ASSIGNMENT.upper_density_g_cm3[-1] == math.inf
    nominal = np.array([MATERIALS[n].density_g_cm3 for n in names])
    np.testing.assert_array_equal(assign_materials(nominal), np.arange(len(names)))
    # muscle (1.05) and water (1.0) fall in the soft-tissue class
    assert names[assign_materials(np.array([1.05]))[0]] == "soft_tissue"


def test_assign_materials_from_typical_ct_numbers():
    hu = np.array([-1000, -950, -800, -500, -100, -50, 0, 60, 200, 400, 1200], dtype=np.int16)
    idx = assign_materials(hu_to_density(hu))
    assert idx.dtype == np.uint8
    got = [DEFAULT_ASSIGNMENT.names[i] for i in idx]
    assert got == [
        "air",
        "air",
        "lung",
        "lung",
        "adipose",
        "adipose",
        "soft_tissue",
        "soft_tissue",
        "soft_tissue",
        "cortical_bone",
        "cortical_bone",
    ]


def test_assign_materials_thresholds_are_exclusive_upper_bounds():
    a = MaterialAssignment(("lung", "water", "cortical_bone"), (0.5, 1.5, math.inf))
    rho = np.array([[0.0, 0.4999, 0.5], [1.4999, 1.5, 7.0]], dtype=np.float32)
    np.testing.assert_array_equal(assign_materials(rho, a), [[0, 0, 1], [1, 2, 2]])
    assert a.materials[1] is MATERIALS["water"]


@pytest.mark.parametrize(
    ("names", "upper", "message"),
    [
        (("water", "lung"), (1.0,), "thresholds"),
        (("water", "lung"), (1.0, 2.0), "inf"),
        (("water", "lung"), (1.0, 1.0), "increase"),
        (("lung", "water", "air"), (2.0, 1.0, math.inf), "increase"),
        (("water", "unobtainium"), (1.0, math.inf), "unknown material"),
        ((), (), "at least one"),
    ],
)
def test_material_assignment_validation(names, upper, message):
    with pytest.raises(InputError, match=message):
        MaterialAssignment(names, upper)


def test_assign_materials_rejects_bad_density():
    with pytest.raises(InputError, match="finite"):
        assign_materials(np.array([1.0, np.nan]))
    with pytest.raises(InputError, match=">= 0"):
        assign_materials(np.array([-0.1]))


def test_density_to_hu_inverts_the_paper_calibration():
    # Li et al. (DblurDoseNet) bilinear calibration, inverted: HU -> density -> HU round trip.
    from mcdose.materials import density_to_hu, hu_to_density

    # (below about -946 HU the forward formula is clipped at the density of air)
    hu = np.array([-900.0, -700.0, -100.0, -1.0, 1.0, 40.0, 900.0, 1500.0], np.float32)
    np.testing.assert_allclose(density_to_hu(hu_to_density(hu)), hu, atol=0.05)
    assert density_to_hu(1.027) == 0.0  # in the calibration's gap at HU 0
    # air (0.0012 g/cm3) maps back to the HU where the forward formula reaches it
    assert abs(float(hu_to_density(density_to_hu(0.0012))) - 0.0012) < 1e-5
