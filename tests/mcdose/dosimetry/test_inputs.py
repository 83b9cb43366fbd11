"""Tests of mcdose.dosimetry.inputs: CT/SPECT loading, units, checks, grid, body mask."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from mcdose.dosimetry import inputs as inp
from mcdose.errors import InputError
from mcdose.io.case import Geometry
from mcdose.io.images import write_image
from tests.helpers import assert_one_line, write_ct_series, write_nm_multiframe
from tests.mcdose.dosimetry.synthetic import (
    CT_GEOMETRY,
    CT_SHAPE,
    NM_SLOPE,
    SPECT_GEOMETRY,
    SPECT_SHAPE,
    activity_bq_ml,
    ct_hu,
)

# --------------------------------------------------------------------------------------
# CT
# --------------------------------------------------------------------------------------


def test_real_ct_small_reads_with_correct_hu_and_geometry():
    """pydicom's CT_small.dcm through the dosimetry CT path: HU = stored·slope + intercept
    (clipped to [-1024, 4000], which changes nothing here) and the header's geometry."""
    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    ct = inp.load_ct(path)
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert ct.hu.shape == (1, int(ds.Rows), int(ds.Columns))
    np.testing.assert_array_equal(ct.hu[0], expected.astype(np.float32))
    assert ct.clipped_voxels == 0 and -1024 <= ct.hu.min() < 0
    sy, sx = (float(v) for v in ds.PixelSpacing)
    np.testing.assert_allclose(ct.geometry.spacing_mm, (sx, sy, float(ds.SliceThickness)))
    np.testing.assert_allclose(ct.geometry.origin_mm, [float(v) for v in ds.ImagePositionPatient])
    np.testing.assert_allclose(ct.geometry.direction_matrix[:, :2].T.reshape(-1),
                               [float(v) for v in ds.ImageOrientationPatient], atol=1e-6)
    assert ct.frame_of_reference_uid == str(ds.FrameOfReferenceUID)


def test_synthetic_ct_series(tmp_path):
    hu = ct_hu()
    folder, stored = write_ct_series(tmp_path / "ct", hu, CT_GEOMETRY)
    ct = inp.load_ct(folder)
    np.testing.assert_array_equal(ct.hu, stored.astype(np.float32))
    assert ct.geometry.allclose(CT_GEOMETRY, atol_mm=1e-4)


def test_ct_padding_and_clipping(tmp_path):
    hu = ct_hu()
    hu[0, 0, :5] = -3024.0  # padding outside the field of view: becomes air
    hu[1, 1, 1] = 4500.0  # dense metal: clipped to 4000
    folder, _ = write_ct_series(tmp_path / "ct", hu, CT_GEOMETRY, intercept=-3072.0)
    ct = inp.load_ct(folder)
    assert ct.hu[0, 0, :5].tolist() == [-1024.0] * 5
    assert ct.hu[1, 1, 1] == 4000.0
    assert ct.clipped_voxels == 6


@pytest.mark.parametrize("bad", [6000.0, -5000.0])
def test_ct_far_outside_hu_refused(tmp_path, bad):
    hu = ct_hu()
    hu[3, 4, 5] = bad
    path = write_image(tmp_path / "ct.nii.gz", hu.astype(np.float32), CT_GEOMETRY)
    with pytest.raises(InputError) as exc:
        inp.load_ct(path)
    assert_one_line(exc, str(path), "far outside the Hounsfield range")


def test_ct_non_finite_refused(tmp_path):
    hu = ct_hu().astype(np.float32)
    hu[2, 2, 2] = np.nan
    path = write_image(tmp_path / "ct.nii.gz", hu, CT_GEOMETRY)
    with pytest.raises(InputError) as exc:
        inp.load_ct(path)
    assert_one_line(exc, str(path), "non-finite")


# --------------------------------------------------------------------------------------
# missing spacing (the checks are mcdose.io.checks', tests/mcdose/io/test_checks.py; here:
# the loaders pass them on, naming the file)
# --------------------------------------------------------------------------------------


def test_missing_spacing_dicom_ct(tmp_path):
    folder, _ = write_ct_series(tmp_path / "ct", ct_hu()[:3], CT_GEOMETRY)
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        del ds.PixelSpacing
        ds.save_as(f)
    with pytest.raises(InputError) as exc:
        inp.load_ct(folder)
    assert_one_line(exc, str(folder), "spacing is missing", "PixelSpacing")


def test_missing_spacing_nifti(tmp_path):
    path = write_image(tmp_path / "spect.nii", np.ones((3, 4, 5), np.float32),
                       Geometry((2.0, 2.0, 2.0)))
    raw = bytearray(path.read_bytes())
    raw[80:92] = np.zeros(3, "<f4").tobytes()  # pixdim[1:4] = 0
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError) as exc:
        inp.load_spect(path)
    assert_one_line(exc, str(path), "spacing is missing", "pixdim")


def test_missing_spacing_nm(tmp_path):
    path, _ = write_nm_multiframe(tmp_path / "nm.dcm", np.ones((3, 4, 5)), SPECT_GEOMETRY)
    ds = pydicom.dcmread(path)
    del ds.PixelSpacing
    ds.save_as(path)
    with pytest.raises(InputError) as exc:
        inp.load_spect(path)
    assert_one_line(exc, str(path), "PixelSpacing")


# --------------------------------------------------------------------------------------
# SPECT units
# --------------------------------------------------------------------------------------


def test_spect_bq_ml_to_mbq_per_voxel(tmp_path):
    values = activity_bq_ml(SPECT_GEOMETRY, SPECT_SHAPE)
    path, stored = write_nm_multiframe(tmp_path / "nm.dcm", values, SPECT_GEOMETRY,
                                       slope=NM_SLOPE)
    sp = inp.load_spect(path, nuclide="Lu-177")
    voxel_ml = 4.0 * 4.0 * 6.0 / 1000.0
    np.testing.assert_allclose(sp.activity_MBq, stored * voxel_ml * 1e-6, rtol=1e-6)
    assert sp.conversion["header_units"] == "BQML"
    assert math.isclose(sp.total_MBq, stored.sum() * voxel_ml * 1e-6, rel_tol=1e-6)


def test_spect_real_world_kbq_ml(tmp_path):
    values = np.full((3, 4, 5), 2.5)  # kBq/ml
    path, _ = write_nm_multiframe(tmp_path / "nm.dcm", values, SPECT_GEOMETRY,
                                  real_world=(0.01, 0.0, "kBq/mL"))
    sp = inp.load_spect(path)
    np.testing.assert_allclose(sp.concentration_MBq_ml, 2.5e-3, rtol=1e-5)


def test_spect_counts_with_calibration(tmp_path):
    counts = np.full((3, 4, 5), 600.0)
    path = write_image(tmp_path / "counts.nii.gz", counts.astype(np.float32), SPECT_GEOMETRY)
    sp = inp.load_spect(path, units="counts", calibration_cps_per_mbq=10.0,
                        frame_duration_s=1200.0)
    # 600 counts / 1200 s / (10 cps/MBq) = 0.05 MBq per voxel
    np.testing.assert_allclose(sp.activity_MBq, 0.05, rtol=1e-6)


@pytest.mark.parametrize("kwargs,needle", [
    ({"units": "counts", "frame_duration_s": 10.0}, "--calibration-cps-per-mbq"),
    ({"units": "counts", "calibration_cps_per_mbq": 5.0}, "--frame-duration-s"),
    ({"units": "counts", "calibration_cps_per_mbq": -5.0, "frame_duration_s": 10.0},
     "positive"),
    ({"calibration_cps_per_mbq": 5.0}, "counts only"),
    ({"units": "MBq"}, "--spect-units"),
])
def test_spect_unit_options_refused(tmp_path, kwargs, needle):
    path = write_image(tmp_path / "s.nii.gz", np.ones((3, 4, 5), np.float32), SPECT_GEOMETRY)
    with pytest.raises(InputError) as exc:
        inp.load_spect(path, **kwargs)
    assert_one_line(exc, needle)


def test_spect_units_contradict_dicom(tmp_path):
    path, _ = write_nm_multiframe(tmp_path / "cnts.dcm", np.full((3, 4, 5), 7.0),
                                  SPECT_GEOMETRY, units="CNTS")
    with pytest.raises(InputError) as exc:
        inp.load_spect(path)
    assert_one_line(exc, str(path), "counts", "--spect-units counts")
    bq, _ = write_nm_multiframe(tmp_path / "bq.dcm", np.full((3, 4, 5), 7.0), SPECT_GEOMETRY)
    with pytest.raises(InputError) as exc:
        inp.load_spect(bq, units="counts", calibration_cps_per_mbq=1.0, frame_duration_s=1.0)
    assert_one_line(exc, str(bq), "concentration")


def test_spect_negative_and_empty_refused(tmp_path):
    values = np.ones((3, 4, 5), np.float32)
    values[1, 2, 3] = -0.5
    path = write_image(tmp_path / "neg.nii.gz", values, SPECT_GEOMETRY)
    with pytest.raises(InputError) as exc:
        inp.load_spect(path)
    assert_one_line(exc, str(path), "negative activity")
    zero = write_image(tmp_path / "zero.nii.gz", np.zeros((3, 4, 5), np.float32),
                       SPECT_GEOMETRY)
    with pytest.raises(InputError) as exc:
        inp.load_spect(zero)
    assert_one_line(exc, str(zero), "no activity")


def test_spect_nuclide_cross_check(tmp_path):
    path, _ = write_nm_multiframe(tmp_path / "nm.dcm", np.ones((3, 4, 5)), SPECT_GEOMETRY)
    inp.load_spect(path, nuclide="Lu-177")  # header says ^177^Lutetium
    with pytest.raises(InputError) as exc:
        inp.load_spect(path, nuclide="Y-90")
    assert_one_line(exc, str(path), "Lutetium", "Y-90")


def test_spect_admin_decay_correction_undone(tmp_path):
    path, _ = write_nm_multiframe(tmp_path / "nm.dcm", np.full((3, 4, 5), 1000.0),
                                  SPECT_GEOMETRY)
    ds = pydicom.dcmread(path)
    ds.DecayCorrection = "ADMIN"
    ds.save_as(path)
    with pytest.raises(InputError) as exc:
        inp.load_spect(path, nuclide="Lu-177")
    assert_one_line(exc, "ADMIN", "--timepoint")
    sp = inp.load_spect(path, nuclide="Lu-177", hours_after_administration=159.528)
    # one physical half-life after administration: half the decay-corrected value
    np.testing.assert_allclose(sp.concentration_MBq_ml, 1000.0e-6 * 0.5, rtol=1e-4)


def test_nuclide_from_dicom_spellings():
    assert inp._nuclide_from_dicom("^177^Lutetium") == "Lu-177"
    assert inp._nuclide_from_dicom("Lutetium-177") == "Lu-177"
    assert inp._nuclide_from_dicom("Yttrium^90") == "Y-90"
    assert inp._nuclide_from_dicom("99mTc") == "Tc-99m"
    assert inp._nuclide_from_dicom(None) is None


# --------------------------------------------------------------------------------------
# consistency, grid, body
# --------------------------------------------------------------------------------------


def test_frame_of_reference_and_overlap(tmp_path):
    folder, _ = write_ct_series(tmp_path / "ct", ct_hu(), CT_GEOMETRY, frame_uid="1.2.3.4")
    ct = inp.load_ct(folder)
    path, _ = write_nm_multiframe(tmp_path / "nm.dcm", np.ones(SPECT_SHAPE), SPECT_GEOMETRY,
                                  frame_uid="1.2.3.5")
    sp = inp.load_spect(path)
    with pytest.raises(InputError) as exc:
        inp.check_frame_of_reference(sp.frame_of_reference_uid, ct.frame_of_reference_uid,
                                     f"SPECT {sp.path}", f"CT {ct.path}")
    assert_one_line(exc, str(path), "different DICOM frames of reference")
    assert inp.check_overlap(sp, ct) == pytest.approx(1.0)
    far = Geometry(SPECT_GEOMETRY.spacing_mm, (500.0, 14.7, -248.5))
    sp_far = inp.SpectImage(sp.concentration_MBq_ml, far, path)
    with pytest.raises(InputError) as exc:
        inp.check_overlap(sp_far, ct)
    assert_one_line(exc, "do not overlap", str(path))
    half = Geometry(SPECT_GEOMETRY.spacing_mm, (-39.3 + 40.0, 14.7, -248.5))
    assert inp.overlap_fraction(half, SPECT_SHAPE, CT_GEOMETRY, CT_SHAPE) == pytest.approx(0.5)


def test_density_on_coarse_grid_is_the_local_mean():
    """Anti-aliasing: a 1-voxel-period checkerboard of two densities averages out."""
    g = Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    hu = np.where(np.indices((24, 24, 24)).sum(axis=0) % 2 == 0, 0.0, 200.0).astype(np.float32)
    ct = inp.CTImage(hu, g, Path("checkerboard"))
    coarse = inp.DoseGrid(Geometry((4.0, 4.0, 4.0), (1.5, 1.5, 1.5)), (6, 6, 6), "spect")
    rho = inp.ct_on_grid(ct, coarse)
    mean = 0.5 * (1.02351 + (0.00069 * 200 + 1.03107))
    np.testing.assert_allclose(rho[1:-1, 1:-1, 1:-1], mean, rtol=2e-3)


def test_activity_conserved_on_ct_grid(tmp_path):
    values = activity_bq_ml(SPECT_GEOMETRY, SPECT_SHAPE, lesion=2.0e4)  # smooth background
    path, _ = write_nm_multiframe(tmp_path / "nm.dcm", values, SPECT_GEOMETRY, slope=NM_SLOPE)
    sp = inp.load_spect(path)
    grid = inp.DoseGrid(CT_GEOMETRY, CT_SHAPE, "ct")
    act = inp.activity_on_grid(sp, grid)
    # same concentration: MBq per voxel scales with the voxel volume
    body_centre = act[12, 20, 20] / grid.voxel_volume_ml
    assert body_centre == pytest.approx(2.0e4 * 1e-6, rel=1e-3)
    # totals agree up to the body's edge voxels (linear interpolation across the boundary)
    assert act.sum() == pytest.approx(sp.total_MBq, rel=0.05)


def test_body_mask_fills_lungs():
    rho = np.full((6, 20, 20), 0.0012, np.float32)
    rho[1:5, 3:17, 3:17] = 1.04
    rho[2:4, 6:10, 6:10] = 0.26  # lung inside
    rho[0, 0, 0] = 1.0  # a speck outside: dropped (< 1 ml)
    body = inp.body_mask(rho, voxel_volume_ml=0.064)
    assert body[2, 7, 7] and body[1, 3, 3] and not body[0, 0, 0] and not body[0, 10, 10]
    assert np.count_nonzero(body) == 4 * 14 * 14
    with pytest.raises(InputError) as exc:
        inp.body_mask(np.full((3, 3, 3), 0.0012, np.float32), 1.0)
    assert_one_line(exc, "no patient")


def test_hu_calibration_option(tmp_path):
    assert inp.parse_hu_calibration("paper") == "paper"
    csv = tmp_path / "cal.csv"
    csv.write_text("hu,density_g_cm3\n-1000,0.001\n0,1.0\n1000,1.5\n")
    cal = inp.parse_hu_calibration(csv)
    assert float(cal(500.0)) == pytest.approx(1.25)
    with pytest.raises(InputError) as exc:
        inp.parse_hu_calibration(tmp_path / "missing.csv")
    assert_one_line(exc, "--hu-calibration", "missing.csv")
