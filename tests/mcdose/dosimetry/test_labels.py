"""Tests of mcdose.dosimetry.labels: label images and RTSTRUCT rasterisation on the dose grid."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from mcdose.dosimetry.inputs import DoseGrid, load_ct, load_spect
from mcdose.dosimetry.labels import load_labels, read_label_names_file
from mcdose.errors import InputError
from mcdose.io.case import Geometry
from mcdose.io.images import write_image
from tests.helpers import assert_one_line
from tests.mcdose.dosimetry.synthetic import (
    CT_GEOMETRY,
    CT_SHAPE,
    LESION_LPS,
    LIVER_BOX,
    SPECT_GEOMETRY,
    SPECT_SHAPE,
    centres,
    label_array,
    write_label_names,
    write_rtstruct,
)


@pytest.fixture
def images(patient):
    return load_ct(patient.ct), load_spect(patient.spect)


def test_label_image_on_ct_grid_to_spect_grid(tmp_path, images):
    ct, spect = images
    path = write_image(tmp_path / "labels.nii.gz", label_array(), CT_GEOMETRY)
    write_label_names(tmp_path / "labels.json")  # sidecar, found by its stem
    grid = DoseGrid(SPECT_GEOMETRY, SPECT_SHAPE, "spect")
    lm = load_labels(path, grid, ct=ct, spect=spect)
    assert lm.source == "image"
    assert lm.names == {1: "liver", 2: "lesion_1_liver", 3: "lung_left"}
    # nearest neighbour: each SPECT voxel takes the CT label at its centre
    expected = label_array(SPECT_GEOMETRY, SPECT_SHAPE)
    got = lm.labels
    # centres on a CT voxel boundary may round either way: allow a few voxels
    assert np.count_nonzero(got != expected) <= 0.02 * got.size
    lesion = next(r for r in lm.regions if r.value == 2)
    assert lesion.mask[6, 10, 10]


def test_label_names_file_formats(tmp_path):
    csv = tmp_path / "names.csv"
    csv.write_text("value,name\n1,liver\n2, spleen\n")
    assert read_label_names_file(csv) == {1: "liver", 2: "spleen"}
    bad = tmp_path / "bad.json"
    bad.write_text('{"one": "liver"}')
    with pytest.raises(InputError) as exc:
        read_label_names_file(bad)
    assert_one_line(exc, str(bad))


def test_label_image_refusals(tmp_path, images):
    ct, spect = images
    grid = DoseGrid(SPECT_GEOMETRY, SPECT_SHAPE, "spect")
    empty = write_image(tmp_path / "empty.nii.gz", np.zeros(CT_SHAPE, np.int16), CT_GEOMETRY)
    with pytest.raises(InputError) as exc:
        load_labels(empty, grid, ct=ct, spect=spect)
    assert_one_line(exc, str(empty), "empty")
    other = Geometry((2.0, 2.0, 3.0), (-41.3, 12.7, -240.5))  # shifted by 1 cm
    shifted = write_image(tmp_path / "shifted.nii.gz", label_array(), other)
    with pytest.raises(InputError) as exc:
        load_labels(shifted, grid, ct=ct, spect=spect)
    assert_one_line(exc, str(shifted), "matches neither")
    frac = write_image(tmp_path / "frac.nii.gz", label_array().astype(np.float32) * 0.5,
                       CT_GEOMETRY)
    with pytest.raises(InputError) as exc:
        load_labels(frac, grid, ct=ct, spect=spect)
    assert_one_line(exc, str(frac), "not integers")
    with pytest.raises(InputError) as exc:
        load_labels(tmp_path / "none.nii.gz", grid, ct=ct, spect=spect)
    assert_one_line(exc, "none.nii.gz", "no such file")


def test_label_image_non_finite_or_without_spacing_refused(tmp_path, images):
    # mcdose.io.images.read_image refuses both (tests/mcdose/io/test_checks.py); the label
    # loader names the input
    ct, spect = images
    grid = DoseGrid(SPECT_GEOMETRY, SPECT_SHAPE, "spect")
    nan = label_array().astype(np.float32)
    nan[0, 0, 0] = np.nan
    path = write_image(tmp_path / "nan.nii.gz", nan, CT_GEOMETRY)
    with pytest.raises(InputError) as exc:
        load_labels(path, grid, ct=ct, spect=spect)
    assert_one_line(exc, f"label map {path}", "1 non-finite")
    path = write_image(tmp_path / "nospacing.nii", label_array(), CT_GEOMETRY)
    raw = bytearray(path.read_bytes())
    raw[80:92] = np.zeros(3, "<f4").tobytes()  # pixdim[1:4] = 0
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError) as exc:
        load_labels(path, grid, ct=ct, spect=spect)
    assert_one_line(exc, f"label map {path}", "spacing is missing")


@pytest.mark.parametrize("on", ["ct", "spect"])
def test_rtstruct_rasterised(tmp_path, patient, images, on):
    ct, spect = images
    path = write_rtstruct(tmp_path / "rs.dcm", patient.frame_uid, hole=True)
    grid = (DoseGrid(CT_GEOMETRY, CT_SHAPE, "ct") if on == "ct"
            else DoseGrid(SPECT_GEOMETRY, SPECT_SHAPE, "spect"))
    lm = load_labels(path, grid, ct=ct, spect=spect)
    assert lm.source == "rtstruct"
    assert [r.name for r in lm.regions] == ["Liver", "Lesion"]  # the POINT ROI is ignored
    liver, lesion = lm.regions
    p = centres(grid.geometry, grid.shape)
    # liver polygons span LIVER_BOX - 1 mm in x and y; slabs of one CT slice (3 mm) around
    # the contour planes, which lie at CT slice centres inside LIVER_BOX in z
    zs = CT_GEOMETRY.origin_mm[2] + 3.0 * np.arange(CT_SHAPE[0])
    planes = zs[(zs >= LIVER_BOX[2][0]) & (zs < LIVER_BOX[2][1])]
    in_z = (p[..., 2] >= planes.min() - 1.5) & (p[..., 2] <= planes.max() + 1.5)
    in_xy = ((p[..., 0] > LIVER_BOX[0][0] - 1) & (p[..., 0] < LIVER_BOX[0][1] - 1)
             & (p[..., 1] > LIVER_BOX[1][0] - 1) & (p[..., 1] < LIVER_BOX[1][1] - 1))
    hole = (p[..., 0] > -4) & (p[..., 0] < 4) & (p[..., 1] > 58) & (p[..., 1] < 66)
    expected = in_z & in_xy & ~hole
    assert np.array_equal(liver.mask, expected)
    # lesion: a sphere of radius 5 mm drawn as circles on the CT slices
    d = np.linalg.norm(p - np.asarray(LESION_LPS), axis=-1)
    assert lesion.mask[d < 2.0].all() and not lesion.mask[d > 7.5].any()
    # overlapping regions keep their own masks; the painted map shows the smaller on top
    assert lm.labels[lesion.mask].tolist() == [2] * lesion.voxels


def test_rtstruct_other_frame_of_reference_refused(patient, images):
    ct, spect = images
    path = get_testdata_file("rtstruct.dcm")
    grid = DoseGrid(SPECT_GEOMETRY, SPECT_SHAPE, "spect")
    with pytest.raises(InputError) as exc:
        load_labels(path, grid, ct=ct, spect=spect)
    assert_one_line(exc, "frame of reference", "another scan")


def test_rtstruct_outside_grid_is_empty(tmp_path, patient, images):
    ct, spect = images
    path = write_rtstruct(tmp_path / "rs.dcm", patient.frame_uid)
    far = DoseGrid(Geometry((4.0, 4.0, 6.0), (-39.3, 14.7, 100.0)), (4, 4, 4), "spect")
    with pytest.raises(InputError) as exc:
        load_labels(path, far, ct=ct, spect=spect)
    assert_one_line(exc, str(path), "empty label map")
