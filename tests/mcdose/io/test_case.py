"""Tests of mcdose.io.case: geometry, case-file layout, validation, atomic writes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import given, settings
from hypothesis import strategies as st

from mcdose.errors import CaseFileError, InputError
from mcdose.io import case as casemod
from mcdose.io.case import (
    SCHEMA,
    CaseInfo,
    Geometry,
    create_case,
    dose_attrs,
    open_case,
    read_case_info,
    read_dataset,
    read_label_names,
    read_slices,
    source_fingerprint,
    stage_done,
    validate_case,
    write_datasets,
)
from tests.helpers import LABEL_NAMES, assert_one_line, case_arrays, make_case

# --------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------


def test_geometry_defaults_and_volume():
    g = Geometry((2.0, 2.5, 4.0))
    assert g.origin_mm == (0.0, 0.0, 0.0)
    assert g.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    assert g.voxel_volume_mm3 == pytest.approx(20.0)
    assert g.voxel_volume_cm3 == pytest.approx(0.020)
    assert isinstance(g.spacing_mm[0], float)
    with pytest.raises(AttributeError):
        g.spacing_mm = (1.0, 1.0, 1.0)  # frozen


@pytest.mark.parametrize(
    "kwargs",
    [
        {"spacing_mm": (0.0, 1.0, 1.0)},
        {"spacing_mm": (1.0, -1.0, 1.0)},
        {"spacing_mm": (1.0, math.nan, 1.0)},
        {"spacing_mm": (1.0, math.inf, 1.0)},
        {"spacing_mm": (1.0, 1.0)},
        {"spacing_mm": (1.0, 1.0, 1.0), "origin_mm": (0.0, math.nan, 0.0)},
        {"spacing_mm": (1.0, 1.0, 1.0), "direction": (1, 0, 0, 0, 1, 0, 0, 0, 2)},
        {"spacing_mm": (1.0, 1.0, 1.0), "direction": (1, 0, 0, 1, 0, 0, 0, 0, 1)},
        {"spacing_mm": (1.0, 1.0, 1.0), "direction": (1, 0, 0, 0, 1, 0)},
    ],
)
def test_geometry_validation(kwargs):
    with pytest.raises(InputError) as err:
        Geometry(**kwargs)
    assert_one_line(err)


def test_geometry_sitk_round_trip(rotated_geometry):
    image = sitk.Image(4, 3, 2, sitk.sitkFloat32)
    rotated_geometry.apply_to_sitk(image)
    assert Geometry.from_sitk(image) == rotated_geometry
    # the affine agrees with SimpleITK's index -> physical mapping
    idx = (1.5, 2.0, 0.25)
    expected = image.TransformContinuousIndexToPhysicalPoint(idx)
    np.testing.assert_allclose(rotated_geometry.index_to_physical(idx), expected, atol=1e-9)
    assert rotated_geometry.allclose(Geometry.from_sitk(image))


def test_geometry_from_2d_sitk():
    image = sitk.Image(4, 3, sitk.sitkInt16)
    image.SetSpacing((0.5, 0.7))
    image.SetOrigin((1.0, 2.0))
    g = Geometry.from_sitk(image)
    assert g.spacing_mm == (0.5, 0.7, 1.0)
    assert g.origin_mm == (1.0, 2.0, 0.0)


@settings(max_examples=30, deadline=None)
@given(
    spacing=st.tuples(*[st.floats(1e-3, 1e3)] * 3),
    origin=st.tuples(*[st.floats(-1e4, 1e4)] * 3),
    angle=st.floats(-math.pi, math.pi),
)
def test_geometry_attrs_round_trip(spacing, origin, angle):
    c, s = math.cos(angle), math.sin(angle)
    g = Geometry(spacing, origin, (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))
    assert Geometry.from_attrs(g.to_attrs()) == g


# --------------------------------------------------------------------------------------
# create / read
# --------------------------------------------------------------------------------------


def test_create_and_read_round_trip(tmp_path, rotated_geometry):
    arrays = case_arrays((5, 7, 9), seed=3)
    path = create_case(
        tmp_path / "c.h5",
        geometry=rotated_geometry,
        nuclide="lu177",
        density=arrays["density"].astype(np.float64),  # stored as float32
        activity=arrays["activity"],
        labels=arrays["labels"],
        label_names=LABEL_NAMES,
        spect=arrays["spect"],
        attrs={"phantom_seed": 3, "preset": "tiny", "params": {"a": [1, 2]}},
    )
    info = read_case_info(path)
    assert isinstance(info, CaseInfo)
    assert info.path == path
    assert info.geometry == rotated_geometry
    assert info.nuclide == "Lu-177"  # normalised
    assert info.shape == (5, 7, 9)
    assert info.datasets == ("activity", "density", "labels", "spect")
    assert info.has("density") and info.has("/spect") and not info.has("dose/mc")
    assert info.attrs["phantom_seed"] == 3 and info.attrs["preset"] == "tiny"
    assert json.loads(info.attrs["params"]) == {"a": [1, 2]}
    assert info.provenance["software"] == "mcdose"
    assert info.schema_version == 1

    for name in ("density", "activity", "spect"):
        got = read_dataset(path, name)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, arrays[name].astype(np.float32))
    labels = read_dataset(path, "labels")
    assert labels.dtype == np.int16
    np.testing.assert_array_equal(labels, arrays["labels"])
    assert read_label_names(path) == LABEL_NAMES

    with h5py.File(path, "r") as f:
        assert f.attrs["schema"] == SCHEMA
        assert int(f.attrs["schema_version"]) == 1
        np.testing.assert_array_equal(f.attrs["spacing_mm"], rotated_geometry.spacing_mm)
        np.testing.assert_array_equal(f.attrs["origin_mm"], rotated_geometry.origin_mm)
        assert f.attrs["direction"].shape == (9,)
        ds = f["density"]
        assert ds.chunks == (1, 7, 9)
        assert ds.compression == "lzf"
        assert json.loads(f["labels"].attrs["names"])["3"] == "lesion_1_liver"


def test_create_case_refuses_existing_and_overwrites(tmp_path):
    path = make_case(tmp_path)
    with pytest.raises(CaseFileError) as err:
        make_case(tmp_path)
    assert_one_line(err, str(path), "overwrite")
    arrays = case_arrays((2, 3, 4))
    create_case(path, geometry=Geometry((1, 1, 1)), nuclide="Lu-177",
                density=arrays["density"], overwrite=True)
    assert read_case_info(path).shape == (2, 3, 4)
    assert os.listdir(tmp_path) == ["case.h5"]


def test_create_case_bad_inputs(tmp_path):
    arrays = case_arrays()
    g = Geometry((1, 1, 1))
    with pytest.raises(CaseFileError) as err:
        create_case(tmp_path / "a.h5", geometry=g, nuclide="Lu-177", density=arrays["density"],
                    activity=arrays["activity"][:, :, :-1])
    assert_one_line(err, "a.h5", "'activity'", "shape")
    with pytest.raises(CaseFileError) as err:
        create_case(tmp_path / "a.h5", geometry=g, nuclide="Lu-177",
                    density=arrays["density"], labels=arrays["labels"].astype(float))
    assert_one_line(err, "'labels'", "integer")
    bad = arrays["density"].copy()
    bad[2, 3, 4] = np.nan
    with pytest.raises(CaseFileError) as err:
        create_case(tmp_path / "a.h5", geometry=g, nuclide="Lu-177", density=bad)
    assert_one_line(err, "a.h5", "'density'", "non-finite", "(2, 3, 4)")
    neg = arrays["activity"].copy()
    neg[1, 1, 1] = -1e-3
    with pytest.raises(CaseFileError) as err:
        create_case(tmp_path / "a.h5", geometry=g, nuclide="Lu-177",
                    density=arrays["density"], activity=neg)
    assert_one_line(err, "'activity'", "negative", "(1, 1, 1)")
    with pytest.raises(InputError) as err:
        create_case(tmp_path / "missing" / "a.h5", geometry=g, nuclide="Lu-177",
                    density=arrays["density"])
    assert_one_line(err, "does not exist")
    with pytest.raises(InputError):
        create_case(tmp_path / "a.h5", geometry=(1, 1, 1), nuclide="Lu-177",
                    density=arrays["density"])
    with pytest.raises(InputError) as err:
        create_case(tmp_path / "a.h5", geometry=g, nuclide="Lu-177", density=arrays["density"],
                    attrs={"spacing_mm": (2, 2, 2)})
    assert_one_line(err, "spacing_mm")
    with pytest.raises(InputError):
        create_case(tmp_path / "a.h5", geometry=g, nuclide="Lu-177", density=arrays["density"],
                    labels=arrays["labels"], label_names={"x": "liver"})
    assert os.listdir(tmp_path) == []  # nothing left behind by the failures


def test_labels_int32_when_needed(tmp_path):
    arrays = case_arrays()
    labels = arrays["labels"].astype(np.int64)
    labels[0, 0, 0] = 40000
    path = create_case(tmp_path / "c.h5", geometry=Geometry((1, 1, 1)), nuclide="Lu-177",
                       density=arrays["density"], labels=labels, label_names={40000: "x"})
    got = read_dataset(path, "labels")
    assert got.dtype == np.int32 and got[0, 0, 0] == 40000
    assert read_label_names(path) == {40000: "x"}


def test_open_case_is_read_only_and_streams(case_path):
    with open_case(case_path) as f:
        assert f.mode == "r"
        ds = f["density"]
        assert ds.chunks == (1,) + ds.shape[1:]
        np.testing.assert_array_equal(ds[2:4], read_dataset(case_path, "density")[2:4])
        with pytest.raises((OSError, ValueError, KeyError)):
            f.create_dataset("x", data=[1])


def test_read_slices(case_path):
    full = read_dataset(case_path, "dose/mc")
    np.testing.assert_array_equal(read_slices(case_path, "dose/mc", 1, 4), full[1:4])
    assert read_slices(case_path, "density", 3, 3).shape == (0, 8, 10)
    for z0, z1 in ((-1, 2), (3, 2), (0, 7)):
        with pytest.raises(InputError) as err:
            read_slices(case_path, "density", z0, z1)
        assert_one_line(err, "slice range")


def test_read_slices_reports_absolute_slice(case_path, tmp_path):
    with h5py.File(case_path, "r+") as f:
        f["spect"][4, 2, 3] = np.inf
    with pytest.raises(CaseFileError) as err:
        read_slices(case_path, "spect", 3, 6)
    assert_one_line(err, "'spect'", "(4, 2, 3)")
    read_slices(case_path, "spect", 0, 4)  # the slices before are fine


def test_validate_case_ok(case_path):
    info = validate_case(case_path, require=("density", "activity", "dose/mc"))
    assert info.shape == (6, 8, 10)
    assert validate_case(case_path, require="spect").has("spect")
    assert validate_case(case_path, require=(), check_values=False).nuclide == "Lu-177"


def test_make_case_helper(tmp_path):
    path = make_case(tmp_path, (3, 4, 5), name="x.h5", labels=False, activity=False,
                     doses=("dose/cnn",))
    info = validate_case(path, require=("density", "dose/cnn"))
    assert info.datasets == ("density", "dose/cnn")
    assert stage_done(path, "dose/cnn", {"test": True})


# --------------------------------------------------------------------------------------
# validation errors: one line naming file and dataset
# --------------------------------------------------------------------------------------


def _corrupt(path: Path, action) -> None:
    with h5py.File(path, "r+") as f:
        action(f)


def _replace_dataset(name, value):
    def action(f):
        del f[name]
        f.create_dataset(name, data=value)

    return action


def _set_value(name, index, value):
    def action(f):
        f[name][index] = value

    return action


def _set_attr(key, value, obj="/"):
    def action(f):
        f[obj].attrs[key] = value

    return action


def _del_attr(key, obj="/"):
    def action(f):
        del f[obj].attrs[key]

    return action


@pytest.mark.parametrize(
    ("action", "needles"),
    [
        (_set_value("density", (1, 2, 3), np.nan), ["'density'", "non-finite", "(1, 2, 3)"]),
        (_set_value("dose/vdk", (5, 7, 9), -np.inf), ["'dose/vdk'", "non-finite"]),
        (_set_value("density", (0, 0, 0), -0.5), ["'density'", "negative"]),
        (_set_value("activity", (3, 3, 3), -1e-9), ["'activity'", "negative", "(3, 3, 3)"]),
        (_set_value("spect", (2, 1, 1), -2.0), ["'spect'", "negative"]),
        (_set_value("dose/mc", (0, 4, 4), -1.0), ["'dose/mc'", "negative"]),
        (_set_value("dose/mc_uncertainty", (0, 4, 4), -1.0), ["'dose/mc_uncertainty'"]),
        (_replace_dataset("activity", np.ones((6, 8, 9), np.float32)), ["'activity'", "shape"]),
        (_replace_dataset("dose/mc", np.ones((6, 8), np.float32)), ["'dose/mc'", "3-D"]),
        (_replace_dataset("labels", np.ones((6, 8, 10), np.float32)), ["'labels'", "integer"]),
        (_set_attr("names", "{not json", "labels"), ["'labels'", "names", "JSON"]),
        (_set_attr("names", '["liver"]', "labels"), ["'labels'", "names"]),
        (_set_attr("names", '{"one": "liver"}', "labels"), ["'labels'", "names"]),
        (_set_attr("spacing_mm", np.array([1.0, 0.0, 1.0])), ["spacing_mm", "positive"]),
        (_set_attr("spacing_mm", np.array([1.0, -2.0, 1.0])), ["spacing_mm", "positive"]),
        (_set_attr("spacing_mm", np.array([1.0, 2.0])), ["spacing_mm"]),
        (_del_attr("spacing_mm"), ["spacing_mm", "missing"]),
        (_set_attr("direction", np.arange(9.0)), ["direction"]),
        (_del_attr("nuclide"), ["nuclide"]),
        (_set_attr("schema", "something-else"), ["schema"]),
        (_del_attr("schema"), ["schema"]),
        (_set_attr("schema_version", 99), ["schema_version", "99"]),
    ],
)
def test_validate_case_errors(case_path, action, needles):
    _corrupt(case_path, action)
    with pytest.raises(CaseFileError) as err:
        validate_case(case_path)
    assert_one_line(err, str(case_path), *needles)


def test_missing_required_dataset(case_path):
    with pytest.raises(CaseFileError) as err:
        validate_case(case_path, require=("density", "dose/cnn"))
    assert_one_line(err, str(case_path), "'dose/cnn'", "missing", "dose/mc")
    with pytest.raises(CaseFileError) as err:
        read_dataset(case_path, "dose/mc_spect")
    assert_one_line(err, "'dose/mc_spect'", "missing")


def test_not_a_case_file(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    with pytest.raises(CaseFileError) as err:
        read_case_info(text)
    assert_one_line(err, str(text), "HDF5")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["density"] = np.ones((2, 2, 2))
    with pytest.raises(CaseFileError) as err:
        read_dataset(other, "density")
    assert_one_line(err, str(other), "schema")
    with pytest.raises(CaseFileError) as err:
        validate_case(tmp_path / "nope.h5")
    assert_one_line(err, "nope.h5", "does not exist")
    with pytest.raises(CaseFileError):
        read_case_info(tmp_path)


def test_read_dataset_checks_values(case_path):
    _corrupt(case_path, _set_value("dose/mc", (5, 0, 0), np.nan))
    with pytest.raises(CaseFileError) as err:
        read_dataset(case_path, "dose/mc")
    assert_one_line(err, str(case_path), "'dose/mc'", "(5, 0, 0)")
    read_dataset(case_path, "dose/vdk")  # other datasets still readable
    # free (non-grid) datasets are not constrained
    write_datasets(case_path, {"ct_hu": np.full((6, 8, 10), -1000.0, np.float32)})
    assert read_dataset(case_path, "ct_hu").min() == -1000.0


def test_validation_streams_in_slabs(tmp_path, monkeypatch):
    """validate_case never holds more than one slab of a dataset (bounded memory)."""
    shape = (48, 128, 128)  # 3 MiB per float32 dataset
    rng = np.random.default_rng(1)
    density = rng.uniform(0.5, 1.5, shape).astype(np.float32)
    path = create_case(tmp_path / "big.h5", geometry=Geometry((1, 1, 1)), nuclide="Lu-177",
                       density=density, activity=density * 0.01)
    del density
    slab = 4 * 128 * 128 * 4  # 4 slices
    monkeypatch.setattr(casemod, "_SLAB_BYTES", slab)
    seen = []
    original = casemod._check_values

    def spy(block, name, path_, z0=0):
        seen.append(block.shape[0])
        return original(block, name, path_, z0)

    monkeypatch.setattr(casemod, "_check_values", spy)
    tracemalloc.start()
    try:
        validate_case(path, require=("density", "activity"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert max(seen) == 4 and sum(seen) == 2 * shape[0]
    assert peak < 6 * slab, peak  # a few slabs, never a whole 3 MiB dataset

    _corrupt(path, _set_value("activity", (45, 100, 7), np.nan))
    with pytest.raises(CaseFileError) as err:
        validate_case(path)
    assert_one_line(err, "'activity'", "(45, 100, 7)")


# --------------------------------------------------------------------------------------
# write_datasets / stage_done
# --------------------------------------------------------------------------------------


def test_write_datasets_adds_with_attrs(case_path):
    dose = np.full((6, 8, 10), 2e-5, np.float64)
    attrs = dose_attrs("cnn", "Lu-177", {"model": "m.pt", "pack": 11}, extra_key="x")
    write_datasets(case_path, {"dose/cnn": dose}, {"dose/cnn": attrs, "/": {"note": "hi"}})
    got = read_dataset(case_path, "dose/cnn")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, dose.astype(np.float32))
    with open_case(case_path) as f:
        a = f["dose/cnn"].attrs
        assert a["method"] == "cnn" and a["nuclide"] == "Lu-177" and a["extra_key"] == "x"
        assert "histories" not in a and "seed" not in a
        assert json.loads(a["params"]) == {"model": "m.pt", "pack": 11}
        assert json.loads(a["provenance"])["software"] == "mcdose"
        assert f.attrs["note"] == "hi"
        assert f["density"].chunks == (1, 8, 10)
    assert stage_done(case_path, "dose/cnn", {"pack": 11, "model": "m.pt"})
    assert not stage_done(case_path, "dose/cnn", {"pack": 12, "model": "m.pt"})
    assert not stage_done(case_path, "dose/mc_spect", {})
    info = validate_case(case_path)
    assert info.has("dose/cnn") and info.attrs["note"] == "hi"


def test_write_datasets_new_dataset_gets_provenance(case_path):
    write_datasets(case_path, {"dose/mc_spect": np.ones((6, 8, 10))})
    with open_case(case_path) as f:
        assert json.loads(f["dose/mc_spect"].attrs["provenance"])["software"] == "mcdose"


def test_stage_done_normalises_params(case_path):
    params = {"histories": np.int64(1000), "voxel_mm": (2.0, 2.5, 3.0), "device": "cpu",
              "nested": {"b": 1, "a": [1.5, None]}}
    write_datasets(case_path, {"dose/mc": np.ones((6, 8, 10))},
                   {"dose/mc": dose_attrs("mc", "Lu-177", params, histories=1000, seed=1)})
    assert stage_done(case_path, "dose/mc", {"device": "cpu", "histories": 1000,
                                             "voxel_mm": [2.0, 2.5, 3.0],
                                             "nested": {"a": [1.5, None], "b": 1}})
    assert not stage_done(case_path, "dose/mc", {**params, "device": "cuda"})
    with pytest.raises(CaseFileError):
        stage_done(case_path.parent / "missing.h5", "dose/mc", {})


def test_source_fingerprint_changes_when_the_source_is_rewritten(case_path):
    root_created = json.loads(read_case_info(case_path).attrs["provenance"])["created_utc"]
    with h5py.File(case_path, "r+") as f:  # as create_case writes it: no own provenance
        f["spect"].attrs.pop("provenance", None)
        f["spect"].attrs.pop("params", None)
    first = source_fingerprint(case_path, "spect")
    assert first == {"dataset": "spect", "params": None, "created_utc": root_created}
    # a new SPECT with other parameters
    spect = read_dataset(case_path, "spect")
    write_datasets(case_path, {"spect": spect},
                   {"spect": {"params": {"counts": 1e6, "protocol": {"views": (60, 2)}}}})
    second = source_fingerprint(case_path, "spect")
    assert second["params"] == {"counts": 1e6, "protocol": {"views": [60, 2]}}  # JSON form
    assert second["created_utc"] and second != first
    # the same parameters, recomputed later (provenance times have 1 s resolution)
    write_datasets(case_path, {"spect": spect}, {"spect": {
        "params": {"counts": 1e6, "protocol": {"views": [60, 2]}},
        "provenance": {"created_utc": "2100-01-01T00:00:00+00:00"}}})
    third = source_fingerprint(case_path, "spect")
    assert third["params"] == second["params"] and third != second
    assert third["created_utc"] == "2100-01-01T00:00:00+00:00"
    # writing other datasets leaves it alone; a stage recording it sees the change
    write_datasets(case_path, {"dose/cnn": np.ones((6, 8, 10))},
                   {"dose/cnn": {"params": {"source_fingerprint": third}}})
    assert source_fingerprint(case_path, "spect") == third
    assert stage_done(case_path, "dose/cnn", {"source_fingerprint": third})
    assert not stage_done(case_path, "dose/cnn", {"source_fingerprint": second})
    # absent dataset, missing file
    assert source_fingerprint(case_path, "dose/mc_spect") == {
        "dataset": "dose/mc_spect", "params": None, "created_utc": None}
    with pytest.raises(CaseFileError):
        source_fingerprint(case_path.parent / "missing.h5", "spect")


def test_write_datasets_replaces_without_growing(case_path):
    with open_case(case_path) as f:
        root_attrs = {k: f.attrs[k] for k in f.attrs}
        names_before = f["labels"].attrs["names"]
        vdk_attrs = dict(f["dose/vdk"].attrs)
    vdk = read_dataset(case_path, "dose/vdk")
    rng = np.random.default_rng(5)
    sizes = []
    for i in range(5):
        new = rng.uniform(0, 1, (6, 8, 10)).astype(np.float32)
        write_datasets(case_path, {"dose/mc": new, "density": new + 0.5},
                       {"dose/mc": {"params": {"i": i}}})
        sizes.append(case_path.stat().st_size)
        np.testing.assert_array_equal(read_dataset(case_path, "dose/mc"), new)
        np.testing.assert_array_equal(read_dataset(case_path, "density"), new + 0.5)
    assert max(sizes) - min(sizes) < 4096, sizes
    assert stage_done(case_path, "dose/mc", {"i": 4})
    # everything else survived the rebuilds
    with open_case(case_path) as f:
        for k, v in root_attrs.items():
            np.testing.assert_array_equal(f.attrs[k], v)
        assert f["labels"].attrs["names"] == names_before
        assert dict(f["dose/vdk"].attrs).keys() == vdk_attrs.keys()
        assert f["dose/vdk"].chunks == (1, 8, 10) and f["dose/vdk"].compression == "lzf"
    np.testing.assert_array_equal(read_dataset(case_path, "dose/vdk"), vdk)
    assert read_label_names(case_path) == LABEL_NAMES
    assert sorted(os.listdir(case_path.parent)) == ["case.h5"]


def test_write_datasets_attrs_only_and_delete(case_path):
    write_datasets(case_path, {}, {"dose/mc": {"reviewed": True, "seed": None}, "dose": {"g": 1}})
    with open_case(case_path) as f:
        assert bool(f["dose/mc"].attrs["reviewed"]) and "seed" not in f["dose/mc"].attrs
        assert f["dose"].attrs["g"] == 1


@pytest.mark.parametrize(
    ("datasets", "attrs", "error", "needles"),
    [
        ({"dose/mc": np.ones((6, 8, 9))}, None, CaseFileError, ["'dose/mc'", "shape"]),
        ({"spect": np.ones((6, 8))}, None, CaseFileError, ["'spect'", "3-D"]),
        ({"dose/mc": np.full((6, 8, 10), np.nan)}, None, CaseFileError, ["non-finite"]),
        ({"activity": -np.ones((6, 8, 10))}, None, CaseFileError, ["'activity'", "negative"]),
        ({"labels": np.ones((6, 8, 10))}, None, CaseFileError, ["'labels'", "integer"]),
        ({"dose": np.ones((6, 8, 10))}, None, CaseFileError, ["'dose'", "group"]),
        ({"density/x": np.ones(3)}, None, CaseFileError, ["'density'", "is a dataset"]),
        ({}, {"dose/cnn": {"a": 1}}, CaseFileError, ["'dose/cnn'", "no such dataset"]),
        ({}, {"/": {"nuclide": "Y-90"}}, InputError, ["nuclide"]),
        ({"../x": np.ones(2)}, None, InputError, ["../x"]),
    ],
)
def test_write_datasets_rejects_and_leaves_file(case_path, datasets, attrs, error, needles):
    before = case_path.read_bytes()
    with pytest.raises(error) as err:
        write_datasets(case_path, datasets, attrs)
    assert_one_line(err, *needles)
    assert case_path.read_bytes() == before
    assert os.listdir(case_path.parent) == [case_path.name]


@pytest.mark.parametrize("replace", [False, True], ids=["add", "replace"])
def test_write_datasets_exception_midway_leaves_original(case_path, monkeypatch, replace):
    """An exception between two dataset writes: original byte-identical, no temp file."""
    before = case_path.read_bytes()
    stat_before = case_path.stat()
    calls = []
    original = casemod._write_array

    def failing(f, name, arr, dtype, path):
        calls.append(name)
        original(f, name, arr, dtype, path)
        if len(calls) == 2:
            raise RuntimeError("simulated crash in the middle of write_datasets")

    monkeypatch.setattr(casemod, "_write_array", failing)
    first = "dose/mc" if replace else "dose/cnn"
    with pytest.raises(RuntimeError, match="simulated crash"):
        write_datasets(case_path, {first: np.ones((6, 8, 10)), "dose/mc_spect":
                                   np.ones((6, 8, 10)), "extra": np.ones((6, 8, 10))})
    assert calls == [first, "dose/mc_spect"]
    assert case_path.read_bytes() == before
    assert case_path.stat().st_ino == stat_before.st_ino
    assert os.listdir(case_path.parent) == [case_path.name]
    monkeypatch.undo()
    validate_case(case_path, require=("dose/mc",))


def test_write_datasets_killed_midway_leaves_original(case_path):
    """A process killed (SIGKILL, no cleanup) while writing leaves the case intact."""
    before = case_path.read_bytes()
    code = textwrap.dedent(
        f"""
        import os, signal
        import numpy as np
        from mcdose.io import case as casemod
        original = casemod._write_array
        def dying(f, name, arr, dtype, path):
            original(f, name, arr, dtype, path)
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        casemod._write_array = dying
        casemod.write_datasets({str(case_path)!r}, {{"dose/cnn": np.ones((6, 8, 10))}})
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()
    assert case_path.read_bytes() == before
    leftovers = [p for p in os.listdir(case_path.parent) if p != case_path.name]
    assert all(p.startswith(".case.") and p.endswith(".tmp.h5") for p in leftovers), leftovers
    info = validate_case(case_path)
    assert not info.has("dose/cnn")
    # the next run succeeds regardless of the stale temporary file
    write_datasets(case_path, {"dose/cnn": np.ones((6, 8, 10))})
    assert validate_case(case_path).has("dose/cnn")


def test_write_datasets_keeps_file_mode(case_path):
    os.chmod(case_path, 0o640)
    write_datasets(case_path, {"dose/cnn": np.ones((6, 8, 10))})
    assert case_path.stat().st_mode & 0o777 == 0o640
    write_datasets(case_path, {"dose/cnn": np.zeros((6, 8, 10))})  # rebuild path
    assert case_path.stat().st_mode & 0o777 == 0o640


def test_write_label_names(case_path):
    write_datasets(case_path, {}, {"labels": {"names": {0: "background", 7: "spleen"}}})
    assert read_label_names(case_path) == {0: "background", 7: "spleen"}
    with pytest.raises(InputError):
        write_datasets(case_path, {}, {"labels": {"names": {"spleen": 7}}})
    with pytest.raises(CaseFileError):
        write_datasets(case_path, {}, {"labels": {"names": "{bad json"}})
    assert read_label_names(case_path) == {0: "background", 7: "spleen"}


def test_case_module_does_not_import_simpleitk():
    code = ("import sys, mcdose.io, mcdose.io.case; from mcdose.io import Geometry, "
            "read_dataset; assert 'SimpleITK' not in sys.modules, 'SimpleITK imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
