"""mcdose.io.nifti: truncated and misnamed files (more cases in the bad-inputs table)."""

import gzip

import numpy as np
import pytest
import SimpleITK as sitk

from mcdose.errors import InputError
from mcdose.io.nifti import check_image_file, nifti_expected_bytes, stored_pixel_type


def _write(path, arr):
    image = sitk.GetImageFromArray(arr)
    image.SetSpacing((2.0, 2.0, 2.0))
    sitk.WriteImage(image, str(path))
    return path


def test_expected_bytes_from_the_header(tmp_path):
    p = _write(tmp_path / "a.nii", np.zeros((3, 4, 5), np.int16))
    offset, nbytes = nifti_expected_bytes(p.read_bytes()[:540])
    assert nbytes == 3 * 4 * 5 * 2 and p.stat().st_size == offset + nbytes
    check_image_file(p)


@pytest.mark.parametrize("name", ["a.nii", "a.nii.gz", "a.mha"])
def test_whole_files_pass_and_every_cut_is_refused(tmp_path, name):
    p = _write(tmp_path / name, np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6))
    check_image_file(p)
    data = p.read_bytes()
    for keep in (len(data) - 1, len(data) // 2):
        p.write_bytes(data[:keep])
        with pytest.raises(InputError):
            check_image_file(p)


def test_gzip_names(tmp_path):
    p = _write(tmp_path / "a.nii", np.zeros((2, 2, 2), np.float32))
    q = tmp_path / "b.nii.gz"
    q.write_bytes(p.read_bytes())
    with pytest.raises(InputError, match="rename it to b.nii"):
        check_image_file(q)
    p.write_bytes(gzip.compress(p.read_bytes()))
    with pytest.raises(InputError, match="a.nii.gz"):
        check_image_file(p)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.float32])
def test_stored_pixel_type(tmp_path, dtype):
    p = _write(tmp_path / "t.nii.gz", np.zeros((2, 2, 2), dtype))
    assert stored_pixel_type(p) == np.dtype(dtype)
