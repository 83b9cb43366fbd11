"""Interfile (.hdr + .img) reading, checked against the same image written as NIfTI."""

import numpy as np
import pytest

from mcdose.errors import InputError
from mcdose.io.case import Geometry
from mcdose.io.images import is_dicom_input, read_image, write_image
from mcdose.io.interfile import read_interfile, read_interfile_header
from tests.helpers import assert_one_line
from tests.interfile_writer import write_interfile

SPACING = (4.7952, 4.7952, 4.7952)
ORIGIN = (-150.2, -140.0, -300.5)


def _volume(dtype=np.float32):
    rng = np.random.default_rng(3)
    return (rng.random((5, 6, 7)) * 1000).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.uint16, np.int32])
@pytest.mark.parametrize("big_endian", [False, True])
def test_interfile_equals_nifti_twin(tmp_path, dtype, big_endian):
    arr = _volume(dtype)
    hdr = write_interfile(tmp_path / "spect.hdr", arr, SPACING, origin_mm=ORIGIN,
                          big_endian=big_endian)
    twin = write_image(tmp_path / "spect.nii.gz", arr, Geometry(SPACING, ORIGIN))
    a, ga = read_image(hdr)
    b, gb = read_image(twin)
    np.testing.assert_array_equal(a, b)
    assert ga.allclose(gb, atol_mm=1e-4)
    assert not is_dicom_input(hdr)


def test_interfile_rescale_and_units(tmp_path):
    stored = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(2, 3, 4)
    hdr = write_interfile(tmp_path / "ct.hdr", stored, (1, 1, 2), slope=0.5, intercept=-1024,
                          units="HU")
    arr, _, info = read_interfile(hdr)
    np.testing.assert_allclose(arr, stored * 0.5 - 1024)
    assert info["units"] == "HU"


@pytest.mark.parametrize(
    ("orientation", "rotation", "direction"),
    [(None, None, (1, 0, 0, 0, 1, 0, 0, 0, 1)),
     ("head_in", "supine", (1, 0, 0, 0, 1, 0, 0, 0, 1)),
     ("feet_in", "supine", (-1, 0, 0, 0, 1, 0, 0, 0, -1)),
     ("head_in", "prone", (-1, 0, 0, 0, -1, 0, 0, 0, 1)),
     ("feet_in", "prone", (1, 0, 0, 0, -1, 0, 0, 0, -1))],
)
def test_interfile_orientation_keys(tmp_path, orientation, rotation, direction):
    hdr = write_interfile(tmp_path / "o.hdr", _volume(), SPACING, orientation=orientation,
                          rotation=rotation)
    assert read_interfile_header(hdr).geometry.direction == tuple(float(v) for v in direction)
    # the NIfTI twin written with that direction reads equal
    arr, g = read_image(hdr)
    twin = write_image(tmp_path / "o.nii", arr, g)
    b, gb = read_image(twin)
    np.testing.assert_array_equal(arr, b)
    assert g.allclose(gb, atol_mm=1e-4)


def test_interfile_slice_thickness_in_pixels(tmp_path):
    hdr = write_interfile(tmp_path / "s.hdr", _volume(), (2.0, 2.0, 9.0),
                          drop=["scaling factor (mm/pixel) [3]"],
                          extra={"slice thickness (pixels)": "1.5"})
    assert read_interfile_header(hdr).geometry.spacing_mm == (2.0, 2.0, 3.0)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [({"drop": ["scaling factor (mm/pixel) [1]"]}, "refusing to assume a voxel size"),
     ({"drop": ["scaling factor (mm/pixel) [3]"]}, "no slice spacing"),
     ({"data": b"\0" * 20}, "truncated Interfile data"),
     ({"extra": {"!number of projections": "120"}}, "projections"),
     ({"extra": {"number of time frames": "3"}}, "3 time frames"),
     ({"extra": {"!number format": "bit"}}, "bit data"),
     ({"extra": {"imagedata byte order": "MIDDLEENDIAN"}}, "byte order"),
     ({"extra": {"scaling factor (mm/pixel) [2]": "-4"}}, "must be > 0"),
     ({"extra": {"name of data file": "elsewhere.img"}}, "is missing"),
     ({"extra": {"patient orientation": "sideways"}}, "patient orientation")],
)
def test_interfile_refusals(tmp_path, kwargs, needle):
    hdr = write_interfile(tmp_path / "bad.hdr", _volume(), SPACING, **kwargs)
    with pytest.raises(InputError) as err:
        read_image(hdr)
    assert_one_line(err, "bad.hdr", needle)


def test_interfile_non_finite_refused(tmp_path):
    arr = _volume()
    arr[1, 1, 1] = np.nan
    hdr = write_interfile(tmp_path / "nan.hdr", arr, SPACING)
    with pytest.raises(InputError) as err:
        read_image(hdr)
    assert_one_line(err, "nan.hdr", "1 non-finite")
