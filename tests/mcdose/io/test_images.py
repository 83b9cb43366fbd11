"""Tests of mcdose.io.images: formats, DICOM CT, geometry round trips, resampling."""

from __future__ import annotations

import os

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file

from mcdose.errors import InputError
from mcdose.io import images as imagesmod
from mcdose.io.case import Geometry
from mcdose.io.images import read_dicom_metadata, read_image, resample_to_grid, write_image
from tests.helpers import assert_one_line, write_ct_series

FLIPPED = Geometry((1.5, 0.75, 2.0), (10.0, -20.0, 33.0), (1, 0, 0, 0, -1, 0, 0, 0, -1))


def _assert_geometry_close(got: Geometry, want: Geometry, atol: float = 1e-5) -> None:
    np.testing.assert_allclose(got.spacing_mm, want.spacing_mm, rtol=0, atol=atol)
    np.testing.assert_allclose(got.origin_mm, want.origin_mm, rtol=0, atol=atol)
    np.testing.assert_allclose(got.direction, want.direction, rtol=0, atol=atol)


# --------------------------------------------------------------------------------------
# image formats
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".mha", ".mhd", ".nhdr"])
@pytest.mark.parametrize("which", ["rotated", "flipped"])
def test_geometry_round_trip(tmp_path, rotated_geometry, suffix, which):
    geometry = rotated_geometry if which == "rotated" else FLIPPED
    rng = np.random.default_rng(0)
    arr = rng.normal(0, 100, (3, 4, 5)).astype(np.float32)
    path = tmp_path / f"img.v1{suffix}"
    assert write_image(path, arr, geometry) == path
    got, g = read_image(path)
    assert got.dtype == np.float32 and got.shape == (3, 4, 5)
    np.testing.assert_array_equal(got, arr)
    # NIfTI stores the affine in float32: ~1e-5 mm / 1e-6 on the cosines
    _assert_geometry_close(g, geometry, atol=1e-4 if "nii" in suffix else 1e-9)
    leftovers = {p for p in os.listdir(tmp_path) if p.startswith(".")}
    assert not leftovers


def test_write_image_keeps_dtype_and_read_dtype_none(tmp_path):
    labels = (np.arange(60).reshape(3, 4, 5) % 7).astype(np.int16)
    g = Geometry((1, 1, 1))
    for suffix in (".nii.gz", ".nrrd", ".mha"):
        write_image(tmp_path / f"l{suffix}", labels, g)
        got, _ = read_image(tmp_path / f"l{suffix}", dtype=None)
        assert got.dtype == np.int16
        np.testing.assert_array_equal(got, labels)
        as_float, _ = read_image(tmp_path / f"l{suffix}")
        assert as_float.dtype == np.float32
    mask = labels > 3
    write_image(tmp_path / "m.mha", mask, g)
    got, _ = read_image(tmp_path / "m.mha", dtype=None)
    np.testing.assert_array_equal(got.astype(bool), mask)


def test_write_image_is_atomic(tmp_path, monkeypatch):
    g = Geometry((1, 1, 1))
    path = write_image(tmp_path / "a.nii.gz", np.ones((2, 3, 4), np.float32), g)
    before = path.read_bytes()

    def broken(image, filename, *args, **kwargs):
        with open(filename, "wb") as fh:
            fh.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(imagesmod.sitk, "WriteImage", broken)
    with pytest.raises(InputError) as err:
        write_image(path, np.zeros((2, 3, 4), np.float32), g)
    assert_one_line(err, "a.nii.gz", "disk full")
    assert path.read_bytes() == before
    with pytest.raises(InputError):
        write_image(tmp_path / "b.mhd", np.zeros((2, 3, 4), np.float32), g)
    assert sorted(os.listdir(tmp_path)) == ["a.nii.gz"]


def test_write_image_bad_inputs(tmp_path):
    g = Geometry((1, 1, 1))
    with pytest.raises(InputError) as err:
        write_image(tmp_path / "a.png", np.ones((2, 2, 2)), g)
    assert_one_line(err, "a.png")
    with pytest.raises(InputError) as err:
        write_image(tmp_path / "no" / "a.nii", np.ones((2, 2, 2)), g)
    assert_one_line(err, "does not exist")
    with pytest.raises(InputError):
        write_image(tmp_path / "a.nii", np.ones((2, 2)), g)
    assert os.listdir(tmp_path) == []


def test_read_image_2d_and_4d(tmp_path):
    image = sitk.GetImageFromArray(np.arange(12, dtype=np.float32).reshape(3, 4))
    image.SetSpacing((0.5, 2.0))
    sitk.WriteImage(image, str(tmp_path / "flat.mha"))
    arr, g = read_image(tmp_path / "flat.mha")
    assert arr.shape == (1, 3, 4) and g.spacing_mm == (0.5, 2.0, 1.0)
    vol4 = sitk.GetImageFromArray(np.ones((1, 2, 3, 4), np.float32), isVector=False)
    sitk.WriteImage(vol4, str(tmp_path / "t1.nii"))
    arr, _ = read_image(tmp_path / "t1.nii")
    assert arr.shape == (2, 3, 4)
    vol4 = sitk.GetImageFromArray(np.ones((2, 2, 3, 4), np.float32), isVector=False)
    sitk.WriteImage(vol4, str(tmp_path / "t2.nii"))
    with pytest.raises(InputError) as err:
        read_image(tmp_path / "t2.nii")
    assert_one_line(err, "t2.nii", "4-D")
    rgb = sitk.GetImageFromArray(np.ones((2, 3, 4, 3), np.uint8), isVector=True)
    sitk.WriteImage(rgb, str(tmp_path / "rgb.mha"))
    with pytest.raises(InputError) as err:
        read_image(tmp_path / "rgb.mha")
    assert_one_line(err, "rgb.mha", "components")


def test_read_image_bad_inputs(tmp_path):
    with pytest.raises(InputError) as err:
        read_image(tmp_path / "missing.nii.gz")
    assert_one_line(err, "missing.nii.gz", "no such file")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("not dicom")
    with pytest.raises(InputError) as err:
        read_image(empty)
    assert_one_line(err, str(empty), "no DICOM")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(InputError) as err:
        read_image(tmp_path / "x.txt")
    assert_one_line(err, "x.txt", "unknown image format")
    (tmp_path / "broken.nii.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(InputError) as err:
        read_image(tmp_path / "broken.nii.gz")
    assert_one_line(err, "broken.nii.gz", "cannot read")


def test_read_image_refuses_non_finite(tmp_path):
    arr = np.ones((2, 3, 4), np.float32)
    arr[1, 2, 3] = np.nan
    arr[0, 0, 0] = np.inf
    write_image(tmp_path / "nan.nrrd", arr, Geometry((1, 1, 1)))
    with pytest.raises(InputError) as err:
        read_image(tmp_path / "nan.nrrd")
    assert_one_line(err, "nan.nrrd", "2 non-finite")
    got, _ = read_image(tmp_path / "nan.nrrd", check_finite=False)
    assert np.isnan(got[1, 2, 3])


# --------------------------------------------------------------------------------------
# DICOM CT
# --------------------------------------------------------------------------------------


def test_ct_small_hu_and_geometry():
    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    arr, g = read_image(path)
    assert arr.dtype == np.float32 and arr.shape == (1, int(ds.Rows), int(ds.Columns))
    np.testing.assert_array_equal(arr[0], expected.astype(np.float32))
    assert float(ds.RescaleIntercept) == -1024.0 and arr.min() < 0  # really HU
    np.testing.assert_allclose(g.spacing_mm[:2], [float(ds.PixelSpacing[1]),
                                                  float(ds.PixelSpacing[0])])
    np.testing.assert_allclose(g.origin_mm, [float(v) for v in ds.ImagePositionPatient])
    meta = read_dicom_metadata(path)
    assert meta["Modality"] == "CT" and meta["files"] == 1
    assert meta["FrameOfReferenceUID"] == str(ds.FrameOfReferenceUID)
    assert meta["RescaleIntercept"] == -1024.0


@pytest.mark.parametrize("geometry", [
    Geometry((0.7, 0.8, 2.5), (-100.0, -120.0, 40.0)),
    FLIPPED,
], ids=["axial", "flipped"])
def test_ct_series_order_spacing_and_rescale(tmp_path, geometry):
    nz, ny, nx = 5, 6, 7
    rng = np.random.default_rng(2)
    hu = rng.integers(-1000, 1500, (nz, ny, nx)).astype(np.float64)
    hu[:, 0, 0] = np.arange(nz) * 100.0  # a per-slice marker to check the order
    folder, stored = write_ct_series(
        tmp_path / "ct", hu, geometry, slopes=[0.5, 1.0, 2.0, 0.25, 1.5],
        intercept=-1024.0, file_order=[3, 0, 4, 1, 2],
    )
    arr, g = read_image(folder)
    assert arr.dtype == np.float32
    np.testing.assert_array_equal(arr, stored.astype(np.float32))
    np.testing.assert_allclose(arr[:, 0, 0], stored[:, 0, 0])
    _assert_geometry_close(g, geometry, atol=1e-5)
    meta = read_dicom_metadata(folder)
    assert meta["Modality"] == "CT" and meta["files"] == nz


def test_ct_folder_of_two_series_refused_and_uneven_refused(tmp_path):
    g = Geometry((1.0, 1.0, 2.0), (0.0, 0.0, 0.0))
    folder = tmp_path / "mixed"
    write_ct_series(folder, np.zeros((2, 3, 3)), g, file_order=[10, 11])  # a small series
    _, stored = write_ct_series(folder, np.full((4, 3, 3), 100.0), g)
    with pytest.raises(InputError) as err:
        read_image(folder)  # which series is the CT cannot be told: refused, both named
    assert_one_line(err, str(folder), "2 DICOM image series", "(4 files)", "(2 files)")
    assert read_dicom_metadata(folder)["files"] == 4

    gap = tmp_path / "gap"
    write_ct_series(gap, np.zeros((4, 3, 3)), g)
    os.remove(gap / "im002.dcm")  # a missing slice
    with pytest.raises(InputError) as err:
        read_image(gap)
    assert_one_line(err, str(gap), "evenly spaced")


def test_ct_series_gantry_tilt_refused(tmp_path):
    from pydicom import dcmread

    g = Geometry((1.0, 1.0, 2.0))
    folder, _ = write_ct_series(tmp_path / "tilt", np.zeros((3, 3, 3)), g)
    for k in range(3):
        f = folder / f"im{k:03d}.dcm"
        ds = dcmread(f)
        ds.ImagePositionPatient = [0.0, 0.5 * k, 2.0 * k]  # y shifts with z: tilted gantry
        ds.save_as(f)
    with pytest.raises(InputError) as err:
        read_image(folder)
    assert_one_line(err, "tilt")


# --------------------------------------------------------------------------------------
# resampling
# --------------------------------------------------------------------------------------


def test_resample_linear_reproduces_linear_function():
    g = Geometry((2.0, 3.0, 4.0), (10.0, 20.0, 30.0))
    nz, ny, nx = 6, 7, 8
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    x, y, z = 10.0 + 2.0 * i, 20.0 + 3.0 * j, 30.0 + 4.0 * k
    field = (0.5 * x - 0.25 * y + 2.0 * z).astype(np.float32)
    target = Geometry((1.0, 1.5, 2.0), (11.0, 21.5, 32.0))
    shape = (12, 14, 16)
    out = resample_to_grid(field, g, target, shape, "linear", default_value=-1000.0)
    assert out.dtype == np.float32 and out.shape == shape
    k2, j2, i2 = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    x2, y2, z2 = 11.0 + i2, 21.5 + 1.5 * j2, 32.0 + 2.0 * k2
    inside = (x2 <= 24.0) & (y2 <= 38.0) & (z2 <= 50.0)
    expect = 0.5 * x2 - 0.25 * y2 + 2.0 * z2
    np.testing.assert_allclose(out[inside], expect[inside], rtol=1e-5)
    # ITK treats the half-voxel border as inside; beyond it the default value
    far = (x2 > 25.0) | (y2 > 39.5) | (z2 > 52.0)
    assert far.any() and np.all(out[far] == -1000.0)


def test_resample_nearest_labels_stay_integer():
    g = Geometry((2.0, 2.0, 2.0))
    labels = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    # half spacing, first centre a quarter voxel before the input's first centre: no ties
    target = Geometry((1.0, 1.0, 1.0), (-0.5, -0.5, -0.5))
    out = resample_to_grid(labels, g, target, (4, 6, 8), "nearest")
    assert out.dtype == np.int16
    expect = labels.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    np.testing.assert_array_equal(out, expect)
    # outside the input grid: default 0; bool masks stay bool
    shifted = Geometry((2.0, 2.0, 2.0), (4.0, 0.0, 0.0))
    out = resample_to_grid(labels, g, shifted, (2, 3, 4), "nearest", default_value=0)
    np.testing.assert_array_equal(out[..., :2], labels[..., 2:])
    assert np.all(out[..., 2:] == 0)
    mask = resample_to_grid(labels > 10, g, target, (4, 6, 8), "nearest")
    assert mask.dtype == np.bool_ and np.array_equal(mask, expect > 10)


def test_resample_ct_to_spect_grid_default_air():
    ct_geometry = Geometry((1.0, 1.0, 1.0))
    ct = np.zeros((4, 4, 4), np.int16) + 40
    spect_geometry = Geometry((2.0, 2.0, 2.0), (-2.5, -2.5, -2.5))
    out = resample_to_grid(ct, ct_geometry, spect_geometry, (4, 4, 4), default_value=-1000)
    assert out.dtype == np.float32
    assert out[0, 0, 0] == -1000.0 and out[2, 2, 2] == pytest.approx(40.0)


def test_resample_through_direction_flip():
    """Same physical grid, opposite axis directions: the array comes back flipped."""
    g = Geometry((1.0, 1.0, 1.0))
    arr = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    flipped = Geometry((1.0, 1.0, 1.0), (3.0, 2.0, 1.0), (-1, 0, 0, 0, -1, 0, 0, 0, -1))
    out = resample_to_grid(arr, g, flipped, (2, 3, 4), "linear")
    np.testing.assert_allclose(out, arr[::-1, ::-1, ::-1], atol=1e-5)
    nearest = resample_to_grid(arr, g, flipped, (2, 3, 4), "nearest")
    np.testing.assert_array_equal(nearest, arr[::-1, ::-1, ::-1])


def test_resample_identity_returns_copy():
    g = Geometry((1.0, 2.0, 3.0))
    arr = np.ones((2, 3, 4), np.float32)
    out = resample_to_grid(arr, g, g, (2, 3, 4))
    assert out is not arr and np.array_equal(out, arr)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"interpolation": "cubic"}, "interpolation"),
        ({"target_shape": (2, 3)}, "target_shape"),
        ({"target_shape": (2, 0, 3)}, "target_shape"),
        ({"interpolation": "nearest", "default_value": 0.5}, "default_value"),
    ],
)
def test_resample_bad_inputs(kwargs, needle):
    args = {"array": np.zeros((2, 2, 2), np.int16), "geometry": Geometry((1, 1, 1)),
            "target_geometry": Geometry((1, 1, 1)), "target_shape": (2, 2, 2)}
    args.update(kwargs)
    with pytest.raises(InputError) as err:
        resample_to_grid(**args)
    assert_one_line(err, needle)
