"""Tests of mcdose.io.dicom: multi-frame NM (SPECT) volumes and metadata summaries."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset

from mcdose.errors import InputError
from mcdose.io.case import Geometry
from mcdose.io.dicom import (
    find_dicom_series,
    is_dicom_file,
    read_dicom_metadata,
    read_multiframe,
)
from mcdose.io.images import read_image
from tests.helpers import assert_one_line, write_ct_series, write_nm_multiframe

SPECT = Geometry((4.7952, 4.7952, 4.7952), (-300.0, -250.5, -120.25))
# row = (0, 1, 0), column = (1, 0, 0): normal row x column = (0, 0, -1)
SWAPPED = Geometry((3.0, 4.0, 2.5), (-10.0, -20.0, -30.0), (0, 1, 0, 1, 0, 0, 0, 0, -1))


def _activity(shape=(5, 6, 7), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = rng.uniform(0, 5000, shape)
    values[:, 0, 0] = np.arange(shape[0]) * 100.0  # order marker
    return values


@pytest.mark.parametrize("geometry", [SPECT, SWAPPED], ids=["axial", "swapped-axes"])
@pytest.mark.parametrize("in_detector_sequence", [True, False])
def test_nm_multiframe_rescale(tmp_path, geometry, in_detector_sequence):
    path, stored = write_nm_multiframe(
        tmp_path / "spect.dcm", _activity(), geometry, slope=0.125, intercept=0.0,
        position_in_detector_sequence=in_detector_sequence,
    )
    arr, g = read_image(path)
    assert arr.dtype == np.float32 and arr.shape == (5, 6, 7)
    np.testing.assert_allclose(arr, stored, rtol=1e-6)
    np.testing.assert_allclose(g.spacing_mm, geometry.spacing_mm, atol=1e-4)
    np.testing.assert_allclose(g.origin_mm, geometry.origin_mm, atol=1e-4)
    np.testing.assert_allclose(g.direction, geometry.direction, atol=1e-6)
    image = sitk.ReadImage(str(path))
    np.testing.assert_allclose(sitk.GetArrayViewFromImage(image), arr, rtol=1e-6)
    np.testing.assert_allclose(image.GetSpacing(), g.spacing_mm, atol=1e-6)
    if in_detector_sequence:
        # SimpleITK/GDCM agrees when the NM IOD's DetectorInformationSequence holds the
        # position and SpacingBetweenSlices is present ...
        np.testing.assert_allclose(image.GetOrigin(), g.origin_mm, atol=1e-6)
        np.testing.assert_allclose(image.GetDirection(), g.direction, atol=1e-6)
    else:
        # ... but ignores a top-level ImagePositionPatient in NM files (origin 0): one of
        # the reasons multi-frame files are read with pydicom
        assert image.GetOrigin() == (0.0, 0.0, 0.0)


def test_nm_real_world_value_mapping(tmp_path):
    path, stored = write_nm_multiframe(
        tmp_path / "q.dcm", _activity(), SPECT, real_world=(0.5, -10.0, "Bq/ml"),
    )
    arr, _, info = read_multiframe(path)
    np.testing.assert_allclose(arr, stored, rtol=1e-6)
    assert info["units"] == "Bq/ml" and info["value_mapping"] == "real_world"
    raw = pydicom.dcmread(path).pixel_array
    assert not np.allclose(arr, raw)  # the mapping was applied (RescaleSlope is 1)
    meta = read_dicom_metadata(path)
    assert meta["RealWorldValueUnits"] == "Bq/ml"
    assert meta["Modality"] == "NM" and meta["Units"] == "BQML"
    assert meta["NumberOfFrames"] == 5
    assert meta["Radionuclide"] == "^177^Lutetium"
    assert meta["RadionuclideTotalDose"] == 7400.0


def test_nm_slice_thickness_fallback(tmp_path):
    """Without SpacingBetweenSlices GDCM says 1 mm; we use SliceThickness."""
    path, _ = write_nm_multiframe(tmp_path / "s.dcm", _activity(), SPECT,
                                  spacing_between_slices=False)
    _, g, info = read_multiframe(path)
    assert g.spacing_mm[2] == pytest.approx(4.7952)
    assert info["spacing_source"] == "SliceThickness"
    assert sitk.ReadImage(str(path)).GetSpacing()[2] == pytest.approx(1.0)  # why we do it
    ds = pydicom.dcmread(path)
    del ds.SliceThickness
    ds.save_as(path)
    with pytest.raises(InputError) as err:
        read_multiframe(path)
    assert_one_line(err, str(path), "SpacingBetweenSlices")


def test_nm_negative_spacing_between_slices(tmp_path):
    path, stored = write_nm_multiframe(tmp_path / "n.dcm", _activity(), SPECT)
    ds = pydicom.dcmread(path)
    ds.SpacingBetweenSlices = "-4.7952"
    ds.save_as(path)
    arr, g, _ = read_multiframe(path)
    np.testing.assert_allclose(arr, stored, rtol=1e-6)
    assert g.spacing_mm[2] == pytest.approx(4.7952)
    np.testing.assert_allclose(g.direction_matrix[:, 2], [0, 0, -1], atol=1e-9)


def test_enhanced_per_frame_positions_reordered(tmp_path):
    """Per-frame PlanePositionSequence (enhanced IODs): frames sorted along the normal."""
    values = _activity((4, 3, 5))
    path, stored = write_nm_multiframe(tmp_path / "e.dcm", values, SPECT, slope=1.0)
    ds = pydicom.dcmread(path)
    frames = ds.pixel_array.copy()
    order = [2, 0, 3, 1]  # frame f of the file holds slice order[f]
    ds.PixelData = frames[order].tobytes()
    groups = []
    for f in range(4):
        plane = Dataset()
        z = SPECT.origin_mm[2] + order[f] * SPECT.spacing_mm[2]
        plane.ImagePositionPatient = [SPECT.origin_mm[0], SPECT.origin_mm[1], z]
        pvt = Dataset()
        pvt.RescaleSlope = 2.0 if f == 1 else 1.0
        pvt.RescaleIntercept = 0.0
        item = Dataset()
        item.PlanePositionSequence = [plane]
        item.PixelValueTransformationSequence = [pvt]
        groups.append(item)
    ds.PerFrameFunctionalGroupsSequence = groups
    del ds.SpacingBetweenSlices
    ds.save_as(path)
    arr, g, info = read_multiframe(path)
    assert info["spacing_source"].startswith("ImagePositionPatient")
    expect = stored.copy()
    expect[order[1]] *= 2.0  # file frame 1 has slope 2
    np.testing.assert_allclose(arr, expect, rtol=1e-6)
    np.testing.assert_allclose(g.origin_mm, SPECT.origin_mm, atol=1e-4)
    assert g.spacing_mm[2] == pytest.approx(SPECT.spacing_mm[2], abs=1e-4)
    # uneven frames are refused
    groups[0].PlanePositionSequence[0].ImagePositionPatient = [0.0, 0.0, 1e3]
    ds.save_as(path)
    with pytest.raises(InputError) as err:
        read_multiframe(path)
    assert_one_line(err, "evenly spaced")


def test_nm_in_folder_and_frame_of_reference(tmp_path):
    """A folder with one multi-frame SPECT file reads it; frames of reference compare."""
    spect_dir = tmp_path / "spect"
    spect_dir.mkdir()
    _, stored = write_nm_multiframe(spect_dir / "spect.dcm", _activity(), SPECT,
                                    frame_uid="1.2.3.4")
    arr, g = read_image(spect_dir)
    np.testing.assert_allclose(arr, stored, rtol=1e-6)
    assert g.allclose(SPECT, atol_mm=1e-3)
    ct_dir, _ = write_ct_series(tmp_path / "ct", np.zeros((3, 4, 4)), Geometry((1, 1, 2)),
                                frame_uid="1.2.3.4")
    assert (read_dicom_metadata(spect_dir)["FrameOfReferenceUID"]
            == read_dicom_metadata(ct_dir)["FrameOfReferenceUID"] == "1.2.3.4")


def test_find_series_and_is_dicom(tmp_path):
    assert find_dicom_series(tmp_path) == []
    write_ct_series(tmp_path / "a", np.zeros((3, 2, 2)), Geometry((1, 1, 1)))
    series = find_dicom_series(tmp_path / "a")
    assert len(series) == 1 and len(series[0][1]) == 3
    assert is_dicom_file(series[0][1][0])
    (tmp_path / "t.txt").write_text("x" * 200)
    assert not is_dicom_file(tmp_path / "t.txt")
    assert not is_dicom_file(tmp_path / "missing")


def test_metadata_errors(tmp_path):
    with pytest.raises(InputError) as err:
        read_dicom_metadata(tmp_path / "nothing")
    assert_one_line(err, "no such file")
    with pytest.raises(InputError) as err:
        read_dicom_metadata(tmp_path)
    assert_one_line(err, "no DICOM")
    (tmp_path / "x.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 10)
    with pytest.raises(InputError) as err:
        read_multiframe(tmp_path / "x.dcm")
    assert_one_line(err, "x.dcm")
