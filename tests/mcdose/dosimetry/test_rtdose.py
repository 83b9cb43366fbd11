"""Tests of mcdose.dosimetry.rtdose: RT Dose geometry, scaling, references; round trips."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from mcdose.dosimetry.rtdose import (
    RT_DOSE_STORAGE,
    read_reference_header,
    read_rtdose,
    write_rtdose,
)
from mcdose.errors import InputError
from mcdose.io.case import Geometry
from tests.helpers import write_ct_series
from tests.mcdose.dosimetry.synthetic import CT_GEOMETRY, ct_hu

GEOMETRIES = {
    "axial": Geometry((2.0, 2.5, 4.0), (-100.5, 20.25, -300.0)),
    # array z axis against row x column: frames must be reversed on writing
    "flipped-z": Geometry((2.0, 2.5, 4.0), (-100.5, 20.25, -300.0),
                          (1, 0, 0, 0, 1, 0, 0, 0, -1)),
    "swapped": Geometry((3.0, 2.0, 5.0), (10.0, -20.0, 30.0), (0, 1, 0, 1, 0, 0, 0, 0, -1)),
}


def _positions_from_raw_attributes(ds):
    """Voxel centres (frames, rows, cols, 3) computed from the DICOM attributes alone."""
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    dr, dc = (float(v) for v in ds.PixelSpacing)  # between rows, between columns
    offsets = np.array([float(v) for v in ds.GridFrameOffsetVector])
    f, r, c = np.meshgrid(np.arange(ds.NumberOfFrames), np.arange(ds.Rows),
                          np.arange(ds.Columns), indexing="ij")
    return (ipp + offsets[f][..., None] * normal + c[..., None] * dc * row
            + r[..., None] * dr * col)


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_round_trip_and_positions(tmp_path, name):
    geometry = GEOMETRIES[name]
    rng = np.random.default_rng(1)
    dose = rng.uniform(0.0, 40.0, (5, 6, 7))
    path = write_rtdose(tmp_path / "d.dcm", dose, geometry, comment="test")
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == RT_DOSE_STORAGE and ds.Modality == "RTDOSE"
    assert ds.DoseUnits == "GY" and ds.DoseComment == "test"
    offsets = [float(v) for v in ds.GridFrameOffsetVector]
    assert offsets[0] == 0.0 and np.all(np.diff(offsets) > 0)
    stored = ds.pixel_array.astype(np.float64) * float(ds.DoseGridScaling)
    pos = _positions_from_raw_attributes(ds)
    # every voxel of the input is found at its own physical position in the file
    nz, ny, nx = dose.shape
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    want = geometry.index_to_physical(np.stack([i, j, k], -1).reshape(-1, 3))
    got = pos.reshape(-1, 3)
    lookup = {tuple(np.round(p, 3)): v for p, v in zip(got, stored.reshape(-1), strict=True)}
    values = np.array([lookup[tuple(np.round(p, 3))] for p in want])
    np.testing.assert_allclose(values, dose.reshape(-1), rtol=1e-8, atol=40.0 / 2**32)
    back, g, info = read_rtdose(path)
    assert info["DoseUnits"] == "GY"
    # read back: same physical positions of the values
    idx = np.linalg.solve(g.affine[:3, :3], (want - g.affine[:3, 3]).T).T
    ii, jj, kk = np.round(idx).astype(int).T
    np.testing.assert_allclose(back[kk, jj, ii], dose.reshape(-1), rtol=1e-8,
                               atol=40.0 / 2**32)


def test_references_the_ct(tmp_path):
    folder, _ = write_ct_series(tmp_path / "ct", ct_hu()[:2], CT_GEOMETRY, frame_uid="1.2.3.9")
    ref = read_reference_header(folder)
    path = write_rtdose(tmp_path / "d.dcm", np.ones((2, 3, 4)), CT_GEOMETRY, reference=ref)
    ds = pydicom.dcmread(path)
    assert ds.FrameOfReferenceUID == "1.2.3.9"
    assert ds.StudyInstanceUID == ref.StudyInstanceUID
    assert ds.PatientID == ref.PatientID
    assert ds.SeriesInstanceUID != ref.SeriesInstanceUID


def test_zero_dose_and_bad_values(tmp_path):
    path = write_rtdose(tmp_path / "z.dcm", np.zeros((2, 2, 2)), CT_GEOMETRY)
    back, _, _ = read_rtdose(path)
    assert back.max() == 0
    with pytest.raises(InputError):
        write_rtdose(tmp_path / "n.dcm", np.full((2, 2, 2), np.nan), CT_GEOMETRY)
    assert not (tmp_path / "n.dcm").exists()


def test_reads_pydicom_rtdose():
    """pydicom's rtdose.dcm: 15 frames of 10 x 10, 10 mm pixels, frames 5 mm apart."""
    dose, g, info = read_rtdose(get_testdata_file("rtdose.dcm"))
    ds = pydicom.dcmread(get_testdata_file("rtdose.dcm"), force=True)
    assert dose.shape == (15, 10, 10)
    np.testing.assert_allclose(dose, ds.pixel_array * 1e-6)
    assert g.spacing_mm == (10.0, 10.0, 5.0)
    np.testing.assert_allclose(g.origin_mm, [189.43125, 199.43125, -761.87])
    assert info["DoseUnits"] == "RELATIVE"
