"""Tests of mcdose.io.checks: stated voxel spacing and non-finite voxels, through read_image."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file

from mcdose.errors import InputError
from mcdose.io import checks
from mcdose.io.case import Geometry
from mcdose.io.images import read_image, write_image
from tests.helpers import assert_one_line, write_ct_series, write_nm_multiframe

GEOMETRY = Geometry((2.0, 3.0, 4.0), (1.0, -2.0, 5.0))


def _with_nan_and_inf(shape=(3, 4, 5), dtype=np.float32):
    arr = np.ones(shape, dtype)
    arr[1, 2, 3] = np.nan
    arr[0, 0, 0] = -np.inf
    return arr


# --------------------------------------------------------------------------------------
# non-finite voxels
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nifti_nan_is_refused_although_itk_reads_it_as_zero(tmp_path, suffix, dtype):
    path = write_image(tmp_path / f"img{suffix}", _with_nan_and_inf(dtype=dtype), GEOMETRY)
    # the reason for the check: SimpleITK gives 0 where the file holds NaN
    assert np.all(np.isfinite(sitk.GetArrayViewFromImage(sitk.ReadImage(str(path)))))
    assert checks.read_nifti_header(path).datatype == (16 if dtype == np.float32 else 64)
    with pytest.raises(InputError) as err:
        read_image(path)
    assert_one_line(err, str(path), "image contains 2 non-finite value(s)")
    with pytest.raises(InputError) as err:
        checks.check_finite_file(path)
    assert_one_line(err, str(path), "2 non-finite")
    got, _ = read_image(path, check_finite=False)  # the caller's choice: ITK's zeros
    assert got[1, 2, 3] == 0.0


def test_nifti_scan_reads_in_chunks(tmp_path, monkeypatch):
    arr = np.ones((7, 6, 5), np.float32)
    arr[0, 0, 0] = arr[3, 2, 1] = arr[6, 5, 4] = np.nan  # first, middle and last voxel
    path = write_image(tmp_path / "img.nii.gz", arr, GEOMETRY)
    monkeypatch.setattr(checks, "_CHUNK_BYTES", 4 * 11)  # 11 voxels at a time, ragged end
    with pytest.raises(InputError) as err:
        checks.check_finite_file(path)
    assert_one_line(err, "3 non-finite")


def test_finite_and_integer_files_pass(tmp_path):
    checks.check_finite_file(write_image(tmp_path / "f.nii", np.ones((2, 3, 4), np.float32),
                                         GEOMETRY))
    checks.check_finite_file(write_image(tmp_path / "i.nii.gz",
                                         np.arange(24, dtype=np.int16).reshape(2, 3, 4),
                                         GEOMETRY))
    checks.check_finite_file(tmp_path / "missing.nii")  # the reader reports missing files
    (tmp_path / "broken.nii.gz").write_bytes(b"\x1f\x8b garbage")
    checks.check_finite_file(tmp_path / "broken.nii.gz")


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".mhd"])
def test_other_formats_keep_nan_and_are_checked_after_reading(tmp_path, suffix):
    path = write_image(tmp_path / f"img{suffix}", _with_nan_and_inf(), GEOMETRY)
    with pytest.raises(InputError) as err:
        read_image(path)
    assert_one_line(err, str(path), "2 non-finite")


def test_count_nonfinite(monkeypatch):
    arr = _with_nan_and_inf((9, 4, 5), np.float64)
    monkeypatch.setattr(checks, "_CHUNK_BYTES", 8 * 20)  # one slice at a time
    assert checks.count_nonfinite(arr) == 2
    assert checks.count_nonfinite(np.zeros((0, 3), np.float32)) == 0
    assert checks.count_nonfinite(np.float32(np.nan)) == 1
    assert checks.count_nonfinite(np.arange(5)) == 0
    with pytest.raises(InputError) as err:
        checks.check_finite_array(arr, "some/file.nrrd")
    assert_one_line(err, "some/file.nrrd", "2 non-finite")


# --------------------------------------------------------------------------------------
# missing spacing
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_zero_pixdim_is_refused(tmp_path, suffix):
    path = write_image(tmp_path / "img.nii", np.ones((3, 4, 5), np.float32), GEOMETRY)
    raw = bytearray(path.read_bytes())
    raw[80:92] = np.zeros(3, "<f4").tobytes()  # pixdim[1:4] = 0
    if suffix == ".nii.gz":
        import gzip

        path.unlink()
        path = tmp_path / "img.nii.gz"
        path.write_bytes(gzip.compress(bytes(raw)))
    else:
        path.write_bytes(bytes(raw))
    assert sitk.ReadImage(str(path)).GetSpacing() == (1.0, 1.0, 1.0)  # what ITK would use
    with pytest.raises(InputError) as err:
        read_image(path)
    assert_one_line(err, str(path), "voxel spacing is missing", "pixdim")


@pytest.mark.parametrize("suffix,key", [(".nrrd", "space directions"),
                                        (".mha", "ElementSpacing")])
def test_missing_spacing_nrrd_mha(tmp_path, suffix, key):
    image = sitk.GetImageFromArray(np.ones((3, 4, 5), np.float32))
    image.SetSpacing((2.0, 3.0, 4.0))
    path = tmp_path / f"img{suffix}"
    sitk.WriteImage(image, str(path), False)
    checks.check_spacing_present(path)  # stated: fine
    raw = path.read_bytes()
    split = raw.index(b"\n\n") if suffix == ".nrrd" else raw.index(b"ElementDataFile")
    header = b"\n".join(ln for ln in raw[:split].split(b"\n")
                        if not ln.lower().startswith(key.lower().encode()))
    path.write_bytes(header + (b"\n" if suffix == ".mha" else b"") + raw[split:])
    with pytest.raises(InputError) as exc:
        checks.check_spacing_present(path)
    assert_one_line(exc, str(path), "spacing is missing")
    with pytest.raises(InputError) as exc:
        read_image(path)
    assert_one_line(exc, str(path), "spacing is missing")


def _drop_pixel_spacing(*files):
    for f in files:
        ds = pydicom.dcmread(f)
        del ds.PixelSpacing
        ds.save_as(f)


def test_missing_spacing_dicom_series_and_file(tmp_path):
    rng = np.random.default_rng(0)
    hu = rng.integers(-1000, 1000, (3, 4, 5)).astype(np.float32)
    folder, _ = write_ct_series(tmp_path / "ct", hu, GEOMETRY)
    single = tmp_path / "ct_small.dcm"
    shutil.copy(get_testdata_file("CT_small.dcm"), single)
    for path in (folder, single):
        read_image(path)  # stated: fine
    _drop_pixel_spacing(*folder.iterdir(), single)
    for path in (folder, single):
        with pytest.raises(InputError) as err:
            read_image(path)
        assert_one_line(err, str(path), "spacing is missing", "PixelSpacing")


def test_missing_spacing_nm_multiframe(tmp_path):
    path, _ = write_nm_multiframe(tmp_path / "nm.dcm", np.ones((3, 4, 5)), GEOMETRY)
    assert checks.dicom_has_pixel_spacing(checks.read_dicom_header(path))
    _drop_pixel_spacing(path)
    assert not checks.dicom_has_pixel_spacing(checks.read_dicom_header(path))
    with pytest.raises(InputError) as err:
        read_image(path)
    assert_one_line(err, str(path), "PixelSpacing")


def test_read_dicom_header_of_non_dicom_is_none(tmp_path):
    (tmp_path / "x.txt").write_text("hello")
    assert checks.read_dicom_header(tmp_path / "x.txt") is None
    assert checks.read_dicom_header(tmp_path) is None  # folder without DICOM
    checks.check_spacing_present(tmp_path / "x.txt")  # nothing to check: no error
