"""Tests of :func:`mcdose.phantoms.generate_phantom` (anatomy, densities, activity, labels).

Density references: ICRU Report 46 (1992) / ICRP Publication 110 — inflated lung 0.26,
adipose 0.95, soft tissues 1.03–1.06, cortical bone 1.92 g/cm³; dry air 1.205e-3 g/cm³
(NIST).  HU range: the paper's bilinear calibration (shared/REFERENCES.md).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from mcdose.errors import InputError
from mcdose.phantoms import (
    LESION_BASE,
    ORGAN_LABELS,
    PRESETS,
    generate_phantom,
    resolve_grid,
)

TINY_SEEDS = (0, 1, 2, 3, 4)
ORGANS = ("liver", "spleen", "kidney_left_cortex", "kidney_right_cortex")
LESION_RE = re.compile(r"^lesion_(\d+)_(liver|body|spine|pelvis)$")


@pytest.fixture(scope="module")
def tiny():
    return {s: generate_phantom(s, "tiny") for s in TINY_SEEDS}


@pytest.fixture(scope="module")
def small():
    return generate_phantom(1, "small")


def _by_name(ph):
    return {name: value for value, name in ph.label_names.items()}


def _mean_conc(ph, names):
    """Mean activity concentration (MBq/mL) over the union of the named labels."""
    mask = np.isin(ph.labels, [_by_name(ph)[n] for n in names])
    return float(ph.activity_MBq[mask].mean() / ph.geometry.voxel_volume_cm3)


def test_presets():
    paper = PRESETS["paper"]
    assert paper.shape_zyx == (130, 512, 512)
    assert paper.spacing_mm_xyz == (0.98, 0.98, 3.0)
    assert PRESETS["small"].n_voxels <= 1_000_000
    assert max(PRESETS["small"].spacing_mm_xyz) <= 4.0
    assert PRESETS["tiny"].n_voxels <= 32 * 32 * 40
    for pre in PRESETS.values():  # every preset shows the same ~38-50 cm of anatomy
        fx, fy, fz = pre.fov_mm_xyz
        assert fx >= 440 and fy >= 330 and 380 <= fz <= 400


def test_reproducible_per_seed():
    a, b = generate_phantom(7, "tiny"), generate_phantom(7, "tiny")
    for name in ("density", "activity_MBq", "labels"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.label_names == b.label_names
    assert json.dumps(a.params, sort_keys=True) == json.dumps(b.params, sort_keys=True)


def test_different_seeds_differ(tiny):
    a, b = tiny[0], tiny[1]
    assert not np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.density, b.density)
    assert a.params["anatomy"]["body"] != b.params["anatomy"]["body"]


def test_arrays_and_geometry(small):
    assert small.density.dtype == np.float32 and small.activity_MBq.dtype == np.float32
    assert small.labels.dtype == np.int16
    assert small.shape == PRESETS["small"].shape_zyx
    assert small.geometry.spacing_mm == PRESETS["small"].spacing_mm_xyz
    # grid centred on the field of view
    nz, ny, nx = small.shape
    centre = small.geometry.index_to_physical([(nx - 1) / 2, (ny - 1) / 2, (nz - 1) / 2])
    np.testing.assert_allclose(centre, 0.0, atol=1e-9)
    json.dumps(small.params)  # JSON-able provenance
    assert small.params["seed"] == 1 and small.params["preset"] == "small"


def test_label_names_follow_convention_and_are_present(tiny, small):
    for ph in [*tiny.values(), small]:
        assert ph.label_names[0] == "background"
        present = set(np.unique(ph.labels).tolist())
        assert present == set(ph.label_names), "every name used, every value named"
        for value, name in ph.label_names.items():
            assert name == name.lower()
            if value >= LESION_BASE:
                m = LESION_RE.match(name)
                assert m and int(m.group(1)) == value - LESION_BASE, name
            else:
                assert ORGAN_LABELS[name] == value


def test_required_structures(tiny, small):
    for ph in tiny.values():
        names = set(ph.label_names.values())
        for organ in (*ORGANS, "kidney_left_medulla", "kidney_right_medulla", "lung_left",
                      "lung_right", "body", "fat", "spine"):
            assert organ in names, (ph.params["seed"], organ)
        assert any(n.endswith("_liver") and n.startswith("lesion_") for n in names)
    # the small preset resolves every organ label of the convention
    assert set(ORGAN_LABELS) <= set(small.label_names.values())


def test_organ_volumes_plausible(small):
    # adult reference values (ICRP 89): liver ~1.4-1.8 L, spleen ~150 mL, kidney ~150 mL;
    # the procedural ranges are wider and clipped by the body cavity
    v = small.params["volumes_ml"]
    assert 900 < v["liver"] < 2300
    assert 60 < v["spleen"] < 400
    for side in ("left", "right"):
        kidney = v[f"kidney_{side}_cortex"] + v[f"kidney_{side}_medulla"]
        assert 80 < kidney < 250
        assert v[f"kidney_{side}_cortex"] > v[f"kidney_{side}_medulla"]
    assert 500 < v["lung_left"] + v["lung_right"] < 5000


def test_density_ranges_per_label(tiny, small):
    for ph in [*tiny.values(), small]:
        d, names = ph.density, _by_name(ph)
        assert np.all(np.isfinite(d))
        assert d.min() >= 0.0012 and d.max() <= 2.2
        # inside the paper's bilinear HU calibration (HU >= -1000)
        hu = np.where(d <= 1.02351, (d - 1.02351) / 0.00108, (d - 1.03107) / 0.00069)
        assert hu.min() >= -1000 and hu.max() < 3000
        np.testing.assert_allclose(d[ph.labels == 0], 0.001205, rtol=1e-6)
        for lung in ("lung_left", "lung_right"):
            sel = d[ph.labels == names[lung]]
            assert sel.max() < 0.5 and 0.2 < sel.mean() < 0.32
        fat = d[ph.labels == names["fat"]]
        assert 0.85 < fat.min() and fat.max() < 1.02 and fat.mean() == pytest.approx(0.95, abs=0.01)
        for organ in ("liver", "spleen", "kidney_left_cortex", "blood_pool", "body"):
            sel = d[ph.labels == names[organ]]
            assert 0.95 < sel.min() and sel.max() < 1.2, organ
        for bone in ("spine", "pelvis"):
            if bone in names:
                sel = d[ph.labels == names[bone]]
                assert sel.min() > 1.05 and sel.mean() > 1.15, bone
    # at 4 mm the cortical shells are resolved: compact bone ~1.92 g/cm³
    bone = np.isin(small.labels, [ORGAN_LABELS[b] for b in ("spine", "ribs", "pelvis")])
    assert np.percentile(small.density[bone], 95) > 1.8
    assert np.all(small.density[bone] > 1.05)


def test_activity_non_negative_and_zero_outside_body(tiny, small):
    for ph in [*tiny.values(), small]:
        a = ph.activity_MBq
        assert np.all(np.isfinite(a)) and a.min() >= 0
        assert np.all(a[ph.labels == 0] == 0)
        assert np.all(a[ph.labels > 0] > 0) or True  # necrotic cores may be zero
        assert ph.params["total_activity_MBq"] == pytest.approx(ph.total_activity_MBq, rel=1e-5)


def test_total_activity_realistic(tiny, small):
    # ~24 h after 7.4 GBq: on the order of 1 GBq in an abdominal field of view
    for ph in [*tiny.values(), small]:
        assert 400 < ph.total_activity_MBq < 3000


def test_uptake_ordering(tiny, small):
    # DOTATATE: tumours > kidneys > spleen > liver > background (module references)
    for ph in [*tiny.values(), small]:
        names = set(ph.label_names.values())
        lesions = [n for n in names if n.startswith("lesion_")]
        kidneys = [n for n in names if n.startswith("kidney_")]
        tumour = _mean_conc(ph, lesions)
        kidney = _mean_conc(ph, kidneys)
        spleen = _mean_conc(ph, ["spleen"])
        liver = _mean_conc(ph, ["liver"])
        background = _mean_conc(ph, ["body"])
        assert tumour > kidney > spleen > liver > background, ph.params["seed"]
        assert _mean_conc(ph, ["lung_left", "lung_right"]) < background
        assert _mean_conc(ph, ["fat"]) < background
        for side in ("left", "right"):
            assert _mean_conc(ph, [f"kidney_{side}_cortex"]) > _mean_conc(
                ph, [f"kidney_{side}_medulla"])
        t2l = [les["tumour_to_liver"] for les in ph.params["lesions"]]
        assert all(5 <= r <= 20 for r in t2l)


def test_lesions(tiny, small):
    phantoms = [*tiny.values(), small]
    hosts, kinds, necrotic = set(), set(), 0
    for ph in phantoms:
        for les in ph.params["lesions"]:
            assert 5.0 <= les["diameter_mm"] <= 50.0
            hosts.add(les["host"])
            kinds.add(les["kind"])
            necrotic += les["necrotic_fraction"] > 0
    assert {"liver", "body"} <= hosts
    assert kinds == {"sphere", "ellipsoid"}
    assert necrotic > 0
    # voxelised lesions are no larger than 5 cm (+ one voxel of sampling) along any axis
    sx, sy, sz = small.geometry.spacing_mm
    for value, name in small.label_names.items():
        if value < LESION_BASE:
            continue
        idx = np.argwhere(small.labels == value)
        extent = (idx.max(axis=0) - idx.min(axis=0) + 1) * np.array([sz, sy, sx])
        assert np.all(extent <= 50.0 + 2 * 4.0), (name, extent)


def test_lesions_heterogeneous_with_cold_cores():
    for seed in range(20):
        ph = generate_phantom(seed, "small", spacing_mm=8.0)
        for les in ph.params["lesions"]:
            if les["necrotic_fraction"] >= 0.45 and les["voxels"] > 20:
                a = ph.activity_MBq[ph.labels == LESION_BASE + les["k"]]
                assert np.any(a == 0), "necrotic core holds no activity"
                live = a[a > 0]
                assert live.std() / live.mean() > 0.1  # log-normal modulation
                return
    pytest.fail("no lesion with a resolved necrotic core in 20 seeds")


def test_same_anatomy_at_two_resolutions(small):
    coarse = generate_phantom(1, "small", spacing_mm=(6.0, 6.0, 6.0))
    assert coarse.shape == (64, 59, 75)
    va, vb = small.params["volumes_ml"], coarse.params["volumes_ml"]
    for organ in ("liver", "spleen", "lung_left", "lung_right", "kidney_left_cortex",
                  "kidney_right_cortex", "stomach", "body", "fat"):
        assert vb[organ] == pytest.approx(va[organ], rel=0.05), organ
    assert coarse.total_activity_MBq == pytest.approx(small.total_activity_MBq, rel=0.03)
    assert coarse.params["anatomy"] == small.params["anatomy"]


def test_grid_overrides():
    pre, shape, spacing = resolve_grid("tiny", spacing_mm=24.0)
    assert shape == (16, 14, 19) and spacing == (24.0, 24.0, 24.0)
    pre, shape, spacing = resolve_grid("tiny", shape=(16, 14, 19))
    assert spacing == (24.0, 24.0, 24.0)
    ph = generate_phantom(0, "tiny", shape=(10, 12, 14), spacing_mm=(30.0, 30.0, 40.0))
    assert ph.shape == (10, 12, 14) and ph.geometry.spacing_mm == (30.0, 30.0, 40.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"seed": -1},
        {"seed": 1.5},
        {"seed": 0, "preset": "huge"},
        {"seed": 0, "spacing_mm": 0.0},
        {"seed": 0, "shape": (0, 4, 4)},
    ],
)
def test_bad_input(kwargs):
    seed = kwargs.pop("seed")
    with pytest.raises(InputError) as exc:
        generate_phantom(seed, **kwargs)
    assert "\n" not in str(exc.value)
