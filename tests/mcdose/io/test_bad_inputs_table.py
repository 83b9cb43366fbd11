"""A table of bad and unusual inputs, each built here, each with its expected outcome.

Outcomes (``docs/inputs.md`` gives the rule behind each):

* ``refused``  -- an :class:`~mcdose.errors.McdoseError` whose message is one line holding
  every needle (library call), or exit status 2 with one ``mcdose: error: ...`` line
  holding them (command line, :func:`mcdose_cli.main.main`);
* ``warned``   -- accepted, and a log record of level WARNING holds every needle;
* ``equal``    -- accepted, and the values read equal a reference built independently;
* ``accepted`` -- accepted, no refusal (the check named in the case's comment holds).

Categories: image files (NIfTI / MetaImage / NRRD), DICOM CT series, DICOM NM (SPECT),
Interfile, meaning of values (CT, SPECT, calibration), HDF5 case files, absurd numbers,
file system.  Everything runs in a few seconds: no Monte Carlo.
"""

from __future__ import annotations

import errno
import gzip
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import SimpleITK as sitk

from mcdose.errors import McdoseError
from mcdose.io.case import Geometry
from tests.helpers import make_case, write_ct_series, write_nm_multiframe
from tests.interfile_writer import write_interfile


@dataclass(frozen=True)
class Case:
    name: str
    category: str
    outcome: str  # refused | warned | equal | accepted
    needles: tuple[str, ...]
    build: Callable[[Path, Any], Any]


CASES: list[Case] = []


def case(category: str, outcome: str, *needles: str):
    def register(fn):
        CASES.append(Case(fn.__name__, category, outcome, needles, fn))
        return fn
    return register


class Cli:
    """A command line to run (the case's outcome is checked on its exit status / stderr)."""

    def __init__(self, *argv: Any) -> None:
        self.argv = [str(a) for a in argv]


# --------------------------------------------------------------------------------------
# builders
# --------------------------------------------------------------------------------------

G = Geometry((2.0, 2.0, 3.0), (-10.0, 5.0, 100.0))


def vol(shape=(4, 5, 6), value=None, dtype=np.float32, seed=0):
    if value is not None:
        return np.full(shape, value, dtype=dtype)
    rng = np.random.default_rng(seed)
    return (rng.random(shape) * 100 + 1).astype(dtype)


def nii(tmp: Path, name: str, arr=None, geometry: Geometry = G) -> Path:
    arr = vol() if arr is None else arr
    image = sitk.GetImageFromArray(arr)
    geometry.apply_to_sitk(image)
    path = tmp / name
    sitk.WriteImage(image, str(path))
    return path


def ct_hu(shape=(4, 8, 8)):
    hu = np.full(shape, -1000.0, np.float32)
    hu[:, 2:6, 2:6] = 40.0
    hu[:, 3, 3] = 900.0
    return hu


def read(path, **kw):
    from mcdose.io.images import read_image

    return lambda: read_image(path, **kw)[0]


def load_ct(path):
    from mcdose.dosimetry.inputs import load_ct as _load

    return lambda: _load(path).hu


def load_spect(path, **kw):
    from mcdose.dosimetry.inputs import load_spect as _load

    return lambda: _load(path, **kw).concentration_MBq_ml


def truncate(path: Path, keep: float | int) -> Path:
    data = path.read_bytes()
    n = keep if isinstance(keep, int) else int(len(data) * keep)
    path.write_bytes(data[:n])
    return path


def spect_nm(tmp: Path, name="nm.dcm", values=None, **kw) -> Path:
    values = vol((4, 5, 6)) * 500 if values is None else values
    path, _ = write_nm_multiframe(tmp / name, values, Geometry((4.0, 4.0, 4.0)), **kw)
    return path


def edit_dicom(path: Path, **changes) -> Path:
    import pydicom

    ds = pydicom.dcmread(path)
    for key, value in changes.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    ds.save_as(path)
    return path


def ct_folder(tmp: Path, name="ct", hu=None, geometry=Geometry((1.0, 1.0, 2.0))) -> Path:
    folder, _ = write_ct_series(tmp / name, ct_hu() if hu is None else hu, geometry)
    return folder


# ======================================================================================
# 1. image files: NIfTI / MetaImage / NRRD
# ======================================================================================


@case("image file", "refused", "truncated NIfTI", "50")
def nii_truncated_half(tmp, mp):
    p = nii(tmp, "a.nii", vol((10, 10, 10)))
    size = p.stat().st_size
    truncate(p, 352 + (size - 352) // 2)
    return read(p)


@case("image file", "refused", "truncated NIfTI")
def nii_truncated_one_byte(tmp, mp):
    p = nii(tmp, "a.nii")
    return read(truncate(p, p.stat().st_size - 1))


@case("image file", "refused", "truncated NIfTI")
def nii_header_only(tmp, mp):
    return read(truncate(nii(tmp, "a.nii"), 352))


@case("image file", "refused", "a.nii.gz")
def niigz_truncated_half(tmp, mp):
    return read(truncate(nii(tmp, "a.nii.gz", vol((20, 20, 20))), 0.5))


@case("image file", "refused", "a.nii.gz")
def niigz_truncated_trailer(tmp, mp):
    p = nii(tmp, "a.nii.gz", vol((20, 20, 20)))
    return read(truncate(p, p.stat().st_size - 8))


@case("image file", "refused", "not gzip-compressed", "rename it to a.nii")
def niigz_uncompressed(tmp, mp):
    p = nii(tmp, "a.nii")
    q = tmp / "a.nii.gz"
    q.write_bytes(p.read_bytes())
    return read(q)


@case("image file", "refused", "gzip-compressed but not named .gz")
def nii_gzip_compressed(tmp, mp):
    p = nii(tmp, "b.nii")
    p.write_bytes(gzip.compress(p.read_bytes()))
    return read(p)


@case("image file", "refused", "cannot read")
def niigz_garbage(tmp, mp):
    p = tmp / "g.nii.gz"
    p.write_bytes(b"\x1f\x8b" + os.urandom(200))
    return read(p)


@case("image file", "refused", "truncated MetaImage")
def mha_truncated(tmp, mp):
    return read(truncate(nii(tmp, "a.mha", vol((10, 10, 10))), 0.6))


@case("image file", "refused", "data file", "missing")
def mhd_raw_missing(tmp, mp):
    p = nii(tmp, "a.mhd")
    (tmp / "a.raw").unlink()
    return read(p)


@case("image file", "refused", "truncated MetaImage", "a.raw")
def mhd_raw_short(tmp, mp):
    p = nii(tmp, "a.mhd", vol((10, 10, 10)))
    truncate(tmp / "a.raw", 0.5)
    return read(p)


@case("image file", "refused", "1 non-finite")
def nii_nan(tmp, mp):
    a = vol()
    a[1, 2, 3] = np.nan
    return read(nii(tmp, "a.nii", a))


@case("image file", "refused", "2 non-finite")
def niigz_inf(tmp, mp):
    a = vol()
    a[0, 0, 0] = np.inf
    a[1, 0, 0] = -np.inf
    return read(nii(tmp, "a.nii.gz", a))


@case("image file", "refused", "non-finite")
def mha_nan(tmp, mp):
    a = vol()
    a[2, 2, 2] = np.nan
    return read(nii(tmp, "a.mha", a))


@case("image file", "refused", "non-finite")
def nrrd_nan(tmp, mp):
    a = vol()
    a[2, 2, 2] = np.nan
    return read(nii(tmp, "a.nrrd", a))


@case("image file", "refused", "voxel spacing is missing", "pixdim")
def nii_pixdim_zero(tmp, mp):
    import struct

    p = nii(tmp, "a.nii")
    data = bytearray(p.read_bytes())
    data[80:84] = struct.pack("<f", 0.0)
    p.write_bytes(bytes(data))
    return read(p)


@case("image file", "refused", "voxel spacing is missing", "ElementSpacing")
def mha_no_spacing(tmp, mp):
    p = nii(tmp, "a.mha")
    raw = p.read_bytes()
    head, sep, rest = raw.partition(b"ElementDataFile = LOCAL\n")
    head = b"\n".join(ln for ln in head.split(b"\n") if not ln.startswith(b"ElementSpacing"))
    p.write_bytes(head + sep + rest)
    return read(p)


@case("image file", "refused", "cannot read")
def nii_empty_file(tmp, mp):
    p = tmp / "e.nii"
    p.write_bytes(b"")
    return read(p)


@case("image file", "refused", "cannot read")
def nii_text_file(tmp, mp):
    p = tmp / "t.nii"
    p.write_text("this is not an image\n" * 30)
    return read(p)


@case("image file", "refused", "no such file")
def missing_path(tmp, mp):
    return read(tmp / "nope.nii.gz")


@case("image file", "refused", "holds no DICOM")
def empty_folder(tmp, mp):
    (tmp / "empty").mkdir()
    return read(tmp / "empty")


@case("image file", "refused", "unknown image format")
def unknown_suffix(tmp, mp):
    p = tmp / "x.txt"
    p.write_text("1 2 3")
    return read(p)


@case("image file", "refused", "2 time points")
def nii_4d(tmp, mp):
    image = sitk.JoinSeries([sitk.GetImageFromArray(vol()), sitk.GetImageFromArray(vol())])
    p = tmp / "4d.nii"
    sitk.WriteImage(image, str(p))
    return read(p)


@case("image file", "refused", "components per pixel")
def nii_vector(tmp, mp):
    image = sitk.GetImageFromArray(np.zeros((3, 4, 5, 3), np.float32), isVector=True)
    p = tmp / "v.nii"
    sitk.WriteImage(image, str(p))
    return read(p)


def _equal_file(name, arr):
    def build(tmp, mp):
        p = nii(tmp, name, arr)
        return read(p, dtype=None), arr
    return build


for _name, _arr in [("f32.nii", vol()), ("f32.nii.gz", vol(seed=1)),
                    ("i16.nii.gz", (vol() * 10).astype(np.int16)),
                    ("u16.mha", (vol() * 10).astype(np.uint16)),
                    ("f64.nrrd", vol(dtype=np.float64)), ("f32.mhd", vol(seed=2))]:
    CASES.append(Case(f"valid_{_name}", "image file", "equal", (), _equal_file(_name, _arr)))


@case("image file", "equal")
def nii_2d_is_one_slice(tmp, mp):
    a = vol((5, 6))
    image = sitk.GetImageFromArray(a)
    image.SetSpacing((2.0, 2.0))
    p = tmp / "2d.nii"
    sitk.WriteImage(image, str(p))
    return read(p), a[None]


# ======================================================================================
# 2. DICOM CT series
# ======================================================================================


@case("DICOM CT", "refused", "2 DICOM image series", "give a folder with one series")
def ct_two_series(tmp, mp):
    g = Geometry((1.0, 1.0, 2.0))
    write_ct_series(tmp / "ct", ct_hu((2, 8, 8)), g, file_order=[10, 11])
    write_ct_series(tmp / "ct", ct_hu(), g)
    return load_ct(tmp / "ct")


@case("DICOM CT", "refused", "PixelSpacing changes within the DICOM series")
def ct_pixel_spacing_changes(tmp, mp):
    f = ct_folder(tmp)
    edit_dicom(f / "im002.dcm", PixelSpacing=["1.5", "1.5"])
    return read(f)


@case("DICOM CT", "refused", "ImageOrientationPatient changes")
def ct_orientation_changes(tmp, mp):
    f = ct_folder(tmp)
    edit_dicom(f / "im001.dcm", ImageOrientationPatient=[1, 0, 0, 0, 0.9, 0.43589])
    return read(f)


@case("DICOM CT", "refused", "FrameOfReferenceUID changes")
def ct_frame_changes(tmp, mp):
    f = ct_folder(tmp)
    edit_dicom(f / "im003.dcm", FrameOfReferenceUID="1.2.3.4.5")
    return read(f)


@case("DICOM CT", "refused", "not evenly spaced")
def ct_missing_slice(tmp, mp):
    f = ct_folder(tmp, hu=ct_hu((5, 8, 8)))
    (f / "im002.dcm").unlink()
    return read(f)


@case("DICOM CT", "refused", "not evenly spaced")
def ct_inconsistent_slice_spacing(tmp, mp):
    f = ct_folder(tmp, hu=ct_hu((5, 8, 8)))
    edit_dicom(f / "im004.dcm", ImagePositionPatient=["0", "0", "9.0"])
    return read(f)


@case("DICOM CT", "refused", "gantry tilt")
def ct_gantry_tilt(tmp, mp):
    f = ct_folder(tmp, hu=ct_hu((3, 8, 8)))
    for k in range(3):
        edit_dicom(f / f"im{k:03d}.dcm", ImagePositionPatient=[0.0, 0.5 * k, 2.0 * k])
    return read(f)


@case("DICOM CT", "refused", "voxel spacing is missing", "PixelSpacing")
def ct_no_pixel_spacing(tmp, mp):
    f = ct_folder(tmp)
    for k in range(4):
        edit_dicom(f / f"im{k:03d}.dcm", PixelSpacing=None)
    return read(f)


@case("DICOM CT", "equal")
def ct_shuffled_files(tmp, mp):
    hu = ct_hu()
    folder, stored = write_ct_series(tmp / "ct", hu, Geometry((1.0, 1.0, 2.0)),
                                     file_order=[2, 0, 3, 1])
    return read(folder), stored.astype(np.float32)


@case("DICOM CT", "equal")
def ct_slopes_per_slice(tmp, mp):
    folder, stored = write_ct_series(tmp / "ct", ct_hu(), Geometry((1.0, 1.0, 2.0)),
                                     slopes=[1.0, 0.5, 2.0, 1.0])
    return read(folder), stored.astype(np.float32)


@case("DICOM CT", "equal")
def ct_with_rtstruct_beside(tmp, mp):
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder, stored = write_ct_series(tmp / "ct", ct_hu(), Geometry((1.0, 1.0, 2.0)))
    import pydicom

    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.save_as(folder / "rtstruct.dcm", enforce_file_format=True)
    return read(folder), stored.astype(np.float32)


@case("DICOM CT", "equal")
def ct_with_junk_file(tmp, mp):
    folder, stored = write_ct_series(tmp / "ct", ct_hu(), Geometry((1.0, 1.0, 2.0)))
    (folder / "README.txt").write_text("exported by the console\n")
    return read(folder), stored.astype(np.float32)


@case("DICOM CT", "equal")
def ct_padding_value_becomes_air(tmp, mp):
    hu = ct_hu()
    hu[:, 0, 0] = -2000.0
    folder, _ = write_ct_series(tmp / "ct", hu, Geometry((1.0, 1.0, 2.0)), intercept=-3024)
    import pydicom

    for k in range(4):
        f = folder / f"im{k:03d}.dcm"
        ds = pydicom.dcmread(f)
        ds.add_new(0x00280120, "US", 1024)  # PixelPaddingValue: stored 1024 = -2000 HU
        ds.save_as(f)
    ref = np.clip(hu, -1024, 4000)
    return load_ct(folder), ref


# ======================================================================================
# 3. DICOM NM / SPECT
# ======================================================================================


@case("DICOM NM", "refused", "NumberOfFrames is 6", "4 frames")
def nm_frames_more_than_data(tmp, mp):
    return read(edit_dicom(spect_nm(tmp), NumberOfFrames=6))


@case("DICOM NM", "refused", "NumberOfFrames is 3", "4 frames")
def nm_frames_fewer_than_data(tmp, mp):
    return read(edit_dicom(spect_nm(tmp), NumberOfFrames=3))


@case("DICOM NM", "refused", "pixel data holds")
def nm_pixel_data_cut(tmp, mp):
    import pydicom

    p = spect_nm(tmp)
    ds = pydicom.dcmread(p)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    ds.save_as(p)
    return read(p)


@case("DICOM NM", "refused", "RealWorldValueMapping", "Rescale", "disagree")
def nm_rwvm_vs_rescale(tmp, mp):
    p = spect_nm(tmp, real_world=(2.0, 0.0, "Bq/ml"))
    return read(edit_dicom(p, RescaleSlope="3"))


@case("DICOM NM", "refused", "disagree")
def nm_rwvm_vs_rescale_intercept(tmp, mp):
    p = spect_nm(tmp, real_world=(2.0, 0.0, "Bq/ml"))
    return read(edit_dicom(p, RescaleSlope="2", RescaleIntercept="100"))


@case("DICOM NM", "equal")
def nm_rwvm_equal_to_rescale(tmp, mp):
    values = vol((4, 5, 6)) * 500
    p, stored = write_nm_multiframe(tmp / "nm.dcm", values, Geometry((4.0, 4.0, 4.0)),
                                    real_world=(2.0, 0.0, "Bq/ml"))
    edit_dicom(p, RescaleSlope="2")
    return read(p), stored.astype(np.float32)


@case("DICOM NM", "equal")
def nm_rwvm_with_identity_rescale(tmp, mp):
    values = vol((4, 5, 6)) * 500
    p, stored = write_nm_multiframe(tmp / "nm.dcm", values, Geometry((4.0, 4.0, 4.0)),
                                    real_world=(2.5, 0.0, "Bq/ml"))
    return read(p), stored.astype(np.float32)


@case("DICOM NM", "equal")
def nm_rwvm_kbq_ml_scaled(tmp, mp):
    values = vol((4, 5, 6)) * 5  # kBq/ml
    p, stored = write_nm_multiframe(tmp / "nm.dcm", values, Geometry((4.0, 4.0, 4.0)),
                                    real_world=(0.01, 0.0, "kBq/mL"))
    return load_spect(p), (stored * 1e3 * 1e-6).astype(np.float32)  # -> MBq/ml


@case("DICOM NM", "refused", "Units", "CNTS", "contradicts itself")
def nm_units_contradict_mapping(tmp, mp):
    p = spect_nm(tmp, real_world=(2.0, 0.0, "Bq/ml"), units="CNTS")
    return load_spect(p)


@case("DICOM NM", "warned", "states no units", "Bq/ml")
def nm_no_units(tmp, mp):
    p = spect_nm(tmp)
    return load_spect(edit_dicom(p, Units=None))


@case("DICOM NM", "refused", "not counts", "drop --spect-units counts")
def nm_bqml_given_as_counts(tmp, mp):
    return load_spect(spect_nm(tmp), units="counts", calibration_cps_per_mbq=10.0,
                      frame_duration_s=900.0)


@case("DICOM NM", "refused", "counts", "--spect-units counts")
def nm_counts_given_as_bqml(tmp, mp):
    return load_spect(spect_nm(tmp, units="CNTS"))


@case("DICOM NM", "refused", "neither SpacingBetweenSlices nor SliceThickness")
def nm_no_slice_spacing(tmp, mp):
    p = spect_nm(tmp, spacing_between_slices=False)
    return read(edit_dicom(p, SliceThickness=None))


@case("DICOM NM", "refused", "voxel spacing is missing")
def nm_no_pixel_spacing(tmp, mp):
    return read(edit_dicom(spect_nm(tmp), PixelSpacing=None))


@case("DICOM NM", "refused", "radionuclide", "Y-90")
def nm_wrong_nuclide(tmp, mp):
    return load_spect(spect_nm(tmp), nuclide="Y-90")


@case("DICOM NM", "refused", "DecayCorrection ADMIN")
def nm_decay_corrected_to_admin(tmp, mp):
    return load_spect(edit_dicom(spect_nm(tmp), DecayCorrection="ADMIN"), nuclide="Lu-177")


@case("DICOM NM", "refused", "not a 3-D reconstruction")
def nm_single_frame_2d(tmp, mp):
    return load_spect(spect_nm(tmp, values=vol((1, 5, 6)) * 500))


@case("DICOM NM", "refused", "negative activity")
def nm_negative_values(tmp, mp):
    values = vol((4, 5, 6)) * 500
    values[0, 0, 0] = -500.0
    return load_spect(spect_nm(tmp, values=values, intercept=-1000.0))


@case("DICOM NM", "equal")
def nm_bqml_read_right(tmp, mp):
    values = vol((4, 5, 6)) * 200
    p, stored = write_nm_multiframe(tmp / "nm.dcm", values, Geometry((4.0, 4.0, 4.0)),
                                    slope=0.5)
    return load_spect(p), (stored * 1e-6).astype(np.float32)


# ======================================================================================
# 4. Interfile
# ======================================================================================

SP = (4.0, 4.0, 4.0)


def ifile(tmp, name="s.hdr", arr=None, **kw):
    return write_interfile(tmp / name, vol() * 1000 if arr is None else arr, SP, **kw)


for _kw, _needle in [
    ({"drop": ["scaling factor (mm/pixel) [1]"]}, "refusing to assume a voxel size"),
    ({"drop": ["scaling factor (mm/pixel) [3]"]}, "no slice spacing"),
    ({"data": b"\0" * 20}, "truncated Interfile data"),
    ({"extra": {"!number of projections": "120"}}, "projections"),
    ({"extra": {"process status": "acquired"}}, "projections"),
    ({"extra": {"number of time frames": "3"}}, "3 time frames"),
    ({"extra": {"!number format": "bit"}}, "bit data"),
    ({"extra": {"!number format": "complex"}}, "not supported"),
    ({"extra": {"imagedata byte order": "MIDDLEENDIAN"}}, "byte order"),
    ({"extra": {"scaling factor (mm/pixel) [2]": "-4"}}, "must be > 0"),
    ({"extra": {"scaling factor (mm/pixel) [1]": "abc"}}, "not a number"),
    ({"extra": {"name of data file": "elsewhere.img"}}, "is missing"),
    ({"extra": {"patient orientation": "sideways"}}, "patient orientation"),
    ({"extra": {"!matrix size [1]": "0"}}, "not positive"),
    ({"extra": {"data rescale slope": "0"}}, "slope is 0"),
]:
    def _build(tmp, mp, _kw=_kw):
        return read(ifile(tmp, **_kw))
    CASES.append(Case(f"interfile_{_needle.split()[0]}_{len(CASES)}", "Interfile", "refused",
                      (_needle,), _build))


@case("Interfile", "refused", "non-finite")
def interfile_nan(tmp, mp):
    a = vol() * 1000
    a[0, 1, 2] = np.nan
    return read(ifile(tmp, arr=a))


@case("Interfile", "refused", "not an Interfile header")
def interfile_not_interfile_text(tmp, mp):
    from mcdose.io.interfile import read_interfile

    p = tmp / "x.hdr"
    p.write_text("hello := world\n")
    return lambda: read_interfile(p)


@case("Interfile", "equal")
def interfile_spect_equals_nifti_twin(tmp, mp):
    a = vol() * 1000
    hdr = ifile(tmp, arr=a, origin_mm=(-10, -20, -30))
    twin = nii(tmp, "twin.nii.gz", a, Geometry(SP, (-10, -20, -30)))
    from mcdose.dosimetry.inputs import load_spect as _load

    return load_spect(hdr), _load(twin).concentration_MBq_ml


@case("Interfile", "equal")
def interfile_ct_equals_nifti_twin(tmp, mp):
    stored = (ct_hu() + 1024).astype(np.uint16)
    hdr = ifile(tmp, "ct.hdr", arr=stored, slope=1.0, intercept=-1024.0)
    twin = nii(tmp, "ct.nii.gz", stored.astype(np.float32) - 1024, Geometry(SP))
    from mcdose.dosimetry.inputs import load_ct as _load

    return load_ct(hdr), _load(twin).hu


@case("Interfile", "equal")
def interfile_big_endian_int16(tmp, mp):
    a = (vol() * 10).astype(np.int16)
    return read(ifile(tmp, arr=a, big_endian=True)), a.astype(np.float32)


@case("Interfile", "equal")
def interfile_image_scaling_factor(tmp, mp):
    a = (vol() * 10).astype(np.uint16)
    hdr = ifile(tmp, arr=a, extra={"image scaling factor [1]": "0.25"})
    return read(hdr), a.astype(np.float32) * 0.25


@case("Interfile", "equal")
def interfile_data_offset(tmp, mp):
    a = vol()
    return read(ifile(tmp, arr=a, offset=512)), a


@case("Interfile", "refused", "quantification units", "counts")
def interfile_units_contradict(tmp, mp):
    return load_spect(ifile(tmp, units="counts"))


@case("Interfile", "refused", "int8", "cannot hold Hounsfield")
def interfile_ct_int8(tmp, mp):
    return load_ct(ifile(tmp, "ct.hdr", arr=np.full((4, 5, 6), -100, np.int8)))


# ======================================================================================
# 5. meaning of values: CT, SPECT, calibration
# ======================================================================================


@case("values", "refused", "looks like a density map", "--ct")
def ct_is_density_map(tmp, mp):
    rho = np.where(ct_hu() > -500, 1.04, 0.0012).astype(np.float32)
    return load_ct(nii(tmp, "rho.nii.gz", rho))


@case("values", "refused", "looks like a density map")
def ct_is_density_map_bone(tmp, mp):
    rho = np.full((4, 5, 6), 1.0, np.float32)
    rho[0, 0, 0] = 1.92
    return load_ct(nii(tmp, "rho.nii", rho))


@case("values", "refused", "int8", "wrapped")
def ct_int8(tmp, mp):
    return load_ct(nii(tmp, "ct.nii.gz", np.clip(ct_hu(), -128, 127).astype(np.int8)))


@case("values", "refused", "uint8")
def ct_uint8(tmp, mp):
    return load_ct(nii(tmp, "ct.nii.gz", np.full((4, 5, 6), 40, np.uint8)))


@case("values", "refused", "far outside the Hounsfield range")
def ct_offset_by_30000(tmp, mp):
    return load_ct(nii(tmp, "ct.nii.gz", ct_hu() + 30000))


@case("values", "refused", "far outside the Hounsfield range")
def ct_in_kilo_hu(tmp, mp):
    return load_ct(nii(tmp, "ct.nii.gz", ct_hu() * 10))


@case("values", "warned", "no value below 0 HU", "RescaleIntercept")
def ct_stored_values_without_intercept(tmp, mp):
    return load_ct(nii(tmp, "ct.nii.gz", ct_hu() + 1024))


@case("values", "equal")
def ct_padding_clipped(tmp, mp):
    hu = ct_hu()
    hu[:, 0, :] = -3024.0
    return load_ct(nii(tmp, "ct.nii.gz", hu)), np.clip(hu, -1024, 4000)


@case("values", "equal")
def ct_all_water(tmp, mp):
    hu = np.zeros((4, 5, 6), np.float32)
    return load_ct(nii(tmp, "ct.nii.gz", hu)), hu


@case("values", "refused", "non-finite")
def ct_nan(tmp, mp):
    hu = ct_hu()
    hu[1, 1, 1] = np.nan
    return load_ct(nii(tmp, "ct.nii", hu))


def calibration(tmp, rows):
    p = tmp / "cal.csv"
    p.write_text("hu,density_g_cm3\n" + "\n".join(f"{h},{d}" for h, d in rows) + "\n")
    from mcdose.dosimetry.inputs import parse_hu_calibration

    return lambda: parse_hu_calibration(p)


@case("values", "refused", "density decreases", "columns swapped")
def calibration_decreasing(tmp, mp):
    return calibration(tmp, [(-1000, 1.9), (0, 1.0), (1000, 0.001)])


@case("values", "refused", "osmium")
def calibration_absurd_density(tmp, mp):
    return calibration(tmp, [(-1000, 0.001), (0, 1.0), (1000, 1.0e6)])


@case("values", "refused", "strictly increasing")
def calibration_hu_not_increasing(tmp, mp):
    return calibration(tmp, [(0, 1.0), (-1000, 0.001), (1000, 1.6)])


@case("values", "refused", "neither 'paper' nor an existing CSV")
def calibration_missing_file(tmp, mp):
    from mcdose.dosimetry.inputs import parse_hu_calibration

    return lambda: parse_hu_calibration(tmp / "nope.csv")


@case("values", "accepted")
def calibration_flat_segment(tmp, mp):
    return calibration(tmp, [(-1000, 0.001), (-900, 0.001), (0, 1.0), (1000, 1.6)])


@case("values", "refused", "negative activity")
def spect_negative(tmp, mp):
    a = vol() * 1e4
    a[0, 0, 0] = -1e4
    return load_spect(nii(tmp, "s.nii.gz", a))


@case("values", "equal")
def spect_tiny_negative_noise_zeroed(tmp, mp):
    a = vol() * 1e4
    a[0, 0, 0] = -1e-6
    ref = a.copy()
    ref[0, 0, 0] = 0
    return load_spect(nii(tmp, "s.nii.gz", a)), ref * np.float32(1e-6)


@case("values", "refused", "holds no activity")
def spect_all_zero(tmp, mp):
    return load_spect(nii(tmp, "s.nii.gz", np.zeros((4, 5, 6), np.float32)))


@case("values", "refused", "exceeds", "100 GBq")
def spect_absurd_total(tmp, mp):
    return load_spect(nii(tmp, "s.nii.gz", vol() * 1e12))


@case("values", "warned", "below 1 kBq")
def spect_tiny_total(tmp, mp):
    return load_spect(nii(tmp, "s.nii.gz", vol() * 1e-3))


@case("values", "refused", "not a 3-D reconstruction")
def spect_one_slice(tmp, mp):
    return load_spect(nii(tmp, "s.nii.gz", vol((1, 5, 6)) * 1e4))


@case("values", "refused", "not a 3-D reconstruction")
def spect_one_column(tmp, mp):
    return load_spect(nii(tmp, "s.nii.gz", vol((4, 5, 1)) * 1e4))


@case("values", "refused", "needs --calibration-cps-per-mbq")
def spect_counts_without_calibration(tmp, mp):
    return load_spect(nii(tmp, "s.nii.gz", vol() * 1e4), units="counts")


@case("values", "refused", "must be a positive number")
def spect_counts_negative_calibration(tmp, mp):
    return load_spect(nii(tmp, "s.nii.gz", vol() * 1e4), units="counts",
                      calibration_cps_per_mbq=-3.0, frame_duration_s=900)


@case("values", "refused", "--spect-units must be one of")
def spect_unknown_units(tmp, mp):
    return load_spect(nii(tmp, "s.nii.gz", vol()), units="mCi")


@case("values", "equal")
def spect_bq_ml_read_right(tmp, mp):
    a = vol() * 1e4
    return load_spect(nii(tmp, "s.nii.gz", a)), a * np.float32(1e-6)


@case("values", "equal")
def spect_counts_read_right(tmp, mp):
    a = vol() * 100
    # MBq/ml = N / T / K / V; T = 100 s, K = 10 cps/MBq, V = 0.012 ml (2x2x3 mm)
    return (load_spect(nii(tmp, "s.nii.gz", a), units="counts", calibration_cps_per_mbq=10.0,
                       frame_duration_s=100.0), a / (100.0 * 10.0 * 0.012))


# ======================================================================================
# 6. HDF5 case files
# ======================================================================================


def case_file(tmp, **kw):
    return make_case(tmp, **kw)


def info(path):
    from mcdose.io.case import read_case_info

    return lambda: read_case_info(path)


def dataset(path, name):
    from mcdose.io.case import read_dataset

    return lambda: read_dataset(path, name)


def set_attr(path, key, value, obj="/"):
    with h5py.File(path, "r+") as f:
        f[obj].attrs[key] = value
    return path


def replace_dataset(path, name, arr):
    with h5py.File(path, "r+") as f:
        del f[name]
        f.create_dataset(name, data=arr)
    return path


@case("case file", "refused", "schema_version 99 is newer")
def case_schema_future(tmp, mp):
    return info(set_attr(case_file(tmp), "schema_version", 99))


@case("case file", "refused", "schema_version 0 is unknown")
def case_schema_zero(tmp, mp):
    return info(set_attr(case_file(tmp), "schema_version", 0))


@case("case file", "refused", "schema_version -3 is unknown")
def case_schema_negative(tmp, mp):
    return info(set_attr(case_file(tmp), "schema_version", -3))


@case("case file", "refused", "'schema_version' is missing or not an int")
def case_schema_string(tmp, mp):
    return info(set_attr(case_file(tmp), "schema_version", "one"))


@case("case file", "refused", "not an mcdose case file")
def case_wrong_schema(tmp, mp):
    return info(set_attr(case_file(tmp), "schema", "something-else"))


@case("case file", "refused", "'density' is stored as int16", "floating point")
def case_integer_density(tmp, mp):
    p = case_file(tmp)
    return dataset(replace_dataset(p, "density", np.ones((6, 8, 10), np.int16)), "density")


@case("case file", "refused", "'density' holds", "osmium")
def case_density_absurd(tmp, mp):
    p = case_file(tmp)
    return dataset(replace_dataset(p, "density", np.full((6, 8, 10), 1e6, np.float32)),
                   "density")


@case("case file", "refused", "'density' holds", "osmium")
def case_density_1e30(tmp, mp):
    p = case_file(tmp)
    d = np.ones((6, 8, 10), np.float32)
    d[3, 3, 3] = 1e30
    return dataset(replace_dataset(p, "density", d), "density")


@case("case file", "refused", "non-finite")
def case_density_nan(tmp, mp):
    p = case_file(tmp)
    d = np.ones((6, 8, 10), np.float32)
    d[0, 0, 0] = np.nan
    return dataset(replace_dataset(p, "density", d), "density")


@case("case file", "refused", "negative value")
def case_negative_activity(tmp, mp):
    p = case_file(tmp)
    a = np.ones((6, 8, 10), np.float32)
    a[1, 1, 1] = -1
    return dataset(replace_dataset(p, "activity", a), "activity")


@case("case file", "refused", "'labels' must be integer")
def case_float_labels(tmp, mp):
    p = case_file(tmp)
    return dataset(replace_dataset(p, "labels", np.full((6, 8, 10), 1.5, np.float32)),
                   "labels")


@case("case file", "refused", "has shape")
def case_shape_mismatch(tmp, mp):
    p = case_file(tmp)
    return dataset(replace_dataset(p, "activity", np.ones((6, 8, 9), np.float32)), "activity")


@case("case file", "refused", "'spacing_mm' is missing")
def case_no_spacing(tmp, mp):
    p = case_file(tmp)
    with h5py.File(p, "r+") as f:
        del f.attrs["spacing_mm"]
    return info(p)


@case("case file", "refused", "case.h5")
def case_not_hdf5(tmp, mp):
    p = tmp / "case.h5"
    p.write_bytes(b"not hdf5 at all" * 10)
    return info(p)


@case("case file", "refused", "'dose/mc' is missing")
def case_missing_dataset(tmp, mp):
    return dataset(case_file(tmp), "dose/mc")


@case("case file", "refused", "was not written by mcdose", "--force")
def case_foreign_dose_replaced(tmp, mp):
    from mcdose.io.case import write_datasets

    p = case_file(tmp)
    with h5py.File(p, "r+") as f:
        f.create_dataset("dose/mc", data=np.ones((6, 8, 10), np.float32))
    return lambda: write_datasets(p, {"dose/mc": np.zeros((6, 8, 10), np.float32)})


@case("case file", "equal")
def case_foreign_dose_replaced_with_force(tmp, mp):
    from mcdose.io.case import read_dataset, replacing_foreign_datasets, write_datasets

    p = case_file(tmp)
    with h5py.File(p, "r+") as f:
        f.create_dataset("dose/mc", data=np.ones((6, 8, 10), np.float32))

    def run():
        with replacing_foreign_datasets():
            write_datasets(p, {"dose/mc": np.full((6, 8, 10), 2.0, np.float32)})
        return read_dataset(p, "dose/mc")
    return run, np.full((6, 8, 10), 2.0, np.float32)


@case("case file", "refused", "simulate", "was not written by mcdose")
def cli_simulate_foreign_dose(tmp, mp):
    p = case_file(tmp)
    with h5py.File(p, "r+") as f:
        f.create_dataset("dose/mc", data=np.ones((6, 8, 10), np.float32))
    return Cli("simulate", p, "--histories", 100)


@case("case file", "refused", "was not written by mcdose")
def cli_vdk_foreign_dose(tmp, mp):
    p = case_file(tmp, spect=True)
    with h5py.File(p, "r+") as f:
        f.create_dataset("dose/vdk", data=np.ones((6, 8, 10), np.float32))
    return Cli("vdk", p)


# ======================================================================================
# 7. absurd numbers
# ======================================================================================


def lim(fn, *args, **kw):
    import mcdose.io.limits as limits

    return lambda: getattr(limits, fn)(*args, **kw)


@case("absurd numbers", "refused", "--force-large", "decays")
def histories_1e18(tmp, mp):
    return lim("check_histories", 10**18)


@case("absurd numbers", "refused", "exceeds", "the most decays")
def histories_1e23(tmp, mp):
    return lim("check_histories", 1e23)


@case("absurd numbers", "refused", "exceeds")
def histories_1e23_with_force(tmp, mp):
    return lim("check_histories", 1e23, force=True)


@case("absurd numbers", "accepted")
def histories_1e18_with_force(tmp, mp):
    return lim("check_histories", 10**18, force=True)


@case("absurd numbers", "refused", "whole number")
def histories_fraction(tmp, mp):
    return lim("check_histories", 1.5)


@case("absurd numbers", "refused", "whole number")
def histories_nan(tmp, mp):
    return lim("check_histories", float("nan"))


@case("absurd numbers", "refused", "whole number")
def histories_negative(tmp, mp):
    return lim("check_histories", -5)


@case("absurd numbers", "refused", "--histories", "exceeds")
def cli_simulate_histories_1e23(tmp, mp):
    return Cli("simulate", case_file(tmp), "--histories", "1e23")


@case("absurd numbers", "refused", "--histories", "--force-large")
def cli_simulate_histories_1e18(tmp, mp):
    return Cli("simulate", case_file(tmp), "--histories", str(10**18))


@case("absurd numbers", "refused", "--histories", "--force-large")
def cli_simulate_histories_1e18_float(tmp, mp):
    return Cli("simulate", case_file(tmp), "--histories", "1e18")


@case("absurd numbers", "refused", "--histories", "--force-large")
def cli_kernel_histories_1e18(tmp, mp):
    return Cli("kernel", "--nuclide", "Lu-177", "--voxel-mm", 4, "--size", 3, "--histories",
               "1e18", "--out", tmp / "k.h5", "--no-cache")


@case("absurd numbers", "refused", "--size", "GiB")
def cli_kernel_size_too_big(tmp, mp):
    return Cli("kernel", "--nuclide", "Lu-177", "--voxel-mm", 4, "--size", 20001,
               "--histories", 100, "--out", tmp / "k.h5", "--no-cache")


@case("absurd numbers", "refused", "--voxel-mm", "outside")
def cli_kernel_voxel_1e_9(tmp, mp):
    return Cli("kernel", "--nuclide", "Lu-177", "--voxel-mm", "1e-9", "--size", 3,
               "--histories", 100, "--out", tmp / "k.h5", "--no-cache")


@case("absurd numbers", "refused", "--voxel-mm", "positive")
def cli_kernel_voxel_zero(tmp, mp):
    return Cli("kernel", "--nuclide", "Lu-177", "--voxel-mm", 0, "--size", 3,
               "--out", tmp / "k.h5")


@case("absurd numbers", "refused", "--voxel-mm")
def cli_kernel_voxel_nan(tmp, mp):
    return Cli("kernel", "--nuclide", "Lu-177", "--voxel-mm", "nan", "--size", 3,
               "--out", tmp / "k.h5")


@case("absurd numbers", "refused", "--size", "odd")
def cli_kernel_size_even(tmp, mp):
    return Cli("kernel", "--nuclide", "Lu-177", "--voxel-mm", 4, "--size", 4,
               "--out", tmp / "k.h5")


@case("absurd numbers", "refused", "--count", "--force-large", "GB")
def cli_phantom_count_1e9(tmp, mp):
    return Cli("phantom", tmp / "ph", "--count", 10**9)


@case("absurd numbers", "refused", "--split", "sum to 1.5")
def cli_build_dataset_split(tmp, mp):
    return Cli("build-dataset", tmp / "ds", "--cases", 2, "--split", 0.5, 0.5, 0.5)


@case("absurd numbers", "refused", "--cases", "--force-large")
def cli_build_dataset_cases_1e9(tmp, mp):
    return Cli("build-dataset", tmp / "ds", "--cases", 10**9)


@case("absurd numbers", "refused", "--histories", "--force-large")
def cli_build_dataset_histories(tmp, mp):
    return Cli("build-dataset", tmp / "ds", "--cases", 2, "--histories", "1e18")


@case("absurd numbers", "refused", "--histories", "--force-large")
def cli_dose_histories_1e18(tmp, mp):
    return Cli("dose", "--ct", tmp / "ct.nii.gz", "--spect", tmp / "s.nii.gz", "--method",
               "mc", "--histories", "1e18", "--out", tmp / "d.nii.gz")


@case("absurd numbers", "refused", "--views")
def cli_spect_views(tmp, mp):
    return Cli("spect", case_file(tmp), "--views", 100000)


@case("absurd numbers", "refused", "--counts")
def cli_spect_counts(tmp, mp):
    return Cli("spect", case_file(tmp), "--counts", "1e30")


@case("absurd numbers", "warned", "--threads 100000", "core(s)")
def threads_above_cores(tmp, mp):
    return lim("check_threads", 100000)


@case("absurd numbers", "refused", "sum to 1.1")
def split_not_summing(tmp, mp):
    return lim("check_fractions", (0.7, 0.2, 0.2))


@case("absurd numbers", "refused", "between 0 and 1")
def split_negative(tmp, mp):
    return lim("check_fractions", (1.2, -0.1, -0.1))


@case("absurd numbers", "accepted")
def split_paper(tmp, mp):
    return lim("check_fractions", (0.7, 0.15, 0.15))


@case("absurd numbers", "refused", "0 everywhere")
def density_all_zero(tmp, mp):
    return lim("check_density", np.zeros((3, 3, 3)), "density")


@case("absurd numbers", "refused", "osmium")
def density_1e30(tmp, mp):
    return lim("check_density", np.full((3, 3, 3), 1e30), "density")


@case("absurd numbers", "refused", "--density", "osmium")
def cli_simulate_density_1e6(tmp, mp):
    d = nii(tmp, "rho.nii.gz", np.full((4, 5, 6), 1e6, np.float32))
    a = nii(tmp, "act.nii.gz", vol())
    return Cli("simulate", "--density", d, "--activity", a, "--out", tmp / "dose.nii.gz",
               "--histories", 100)


@case("absurd numbers", "refused", "--density", "0 everywhere")
def cli_simulate_density_zero(tmp, mp):
    d = nii(tmp, "rho.nii.gz", np.zeros((4, 5, 6), np.float32))
    a = nii(tmp, "act.nii.gz", vol())
    return Cli("simulate", "--density", d, "--activity", a, "--out", tmp / "dose.nii.gz",
               "--histories", 100)


@case("absurd numbers", "refused", "GiB")
def memory_beyond_machine(tmp, mp):
    return lim("check_memory", 1e18, what="a grid")


# ======================================================================================
# 8. file system
# ======================================================================================


def _deny_mkstemp(mp, folder: Path):
    import tempfile

    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kw):  # noqa: A002 - tempfile's own name
        if dir is not None and Path(dir).resolve() == folder.resolve():
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))
        return real(*args, dir=dir, **kw)
    mp.setattr(tempfile, "mkstemp", mkstemp)


@case("file system", "refused", "cannot write into folder")
def atomic_into_read_only_folder(tmp, mp):
    from mcdose.io.images import write_image

    (tmp / "ro").mkdir()
    _deny_mkstemp(mp, tmp / "ro")
    return lambda: write_image(tmp / "ro" / "x.nii.gz", vol(), G)


@case("file system", "refused", "folder is not writable")
def output_folder_read_only(tmp, mp):
    from mcdose.io.outputs import check_output

    (tmp / "ro").mkdir()
    _deny_mkstemp(mp, tmp / "ro")
    return lambda: check_output(tmp / "ro" / "x.nii.gz")


@case("file system", "refused", "not writable")
def cli_simulate_out_read_only(tmp, mp):
    d = nii(tmp, "rho.nii.gz", vol(value=1.0))
    a = nii(tmp, "act.nii.gz", vol())
    (tmp / "ro").mkdir()
    _deny_mkstemp(mp, tmp / "ro")
    return Cli("simulate", "--density", d, "--activity", a, "--out", tmp / "ro" / "d.nii.gz",
               "--histories", 100)


@case("file system", "refused", "not writable")
def cli_phantom_read_only(tmp, mp):
    (tmp / "ro").mkdir()
    _deny_mkstemp(mp, tmp / "ro")
    return Cli("phantom", tmp / "ro", "--preset", "tiny")


@case("file system", "refused", "not writable")
def cli_build_dataset_read_only(tmp, mp):
    (tmp / "ro").mkdir()
    _deny_mkstemp(mp, tmp / "ro")
    return Cli("build-dataset", tmp / "ro", "--cases", 1, "--preset", "tiny")


@case("file system", "refused", "not writable")
def cli_simulate_case_in_read_only_folder(tmp, mp):
    p = case_file(tmp)
    _deny_mkstemp(mp, tmp)
    return Cli("simulate", p, "--histories", 100)


@case("file system", "refused", "is a file")
def cli_phantom_out_is_file(tmp, mp):
    (tmp / "f").write_text("x")
    return Cli("phantom", tmp / "f")


@case("file system", "refused", "is a file")
def cli_build_dataset_out_is_file(tmp, mp):
    (tmp / "f").write_text("x")
    return Cli("build-dataset", tmp / "f", "--cases", 1)


@case("file system", "refused", "is a folder")
def output_is_folder(tmp, mp):
    from mcdose.io.outputs import check_output

    (tmp / "d.nii.gz").mkdir()
    return lambda: check_output(tmp / "d.nii.gz", overwrite=True)


@case("file system", "refused", "holds 0 bytes", "disk full")
def writer_leaves_empty_file(tmp, mp):
    import mcdose.io.images as images

    target = nii(tmp, "keep.nii.gz")
    before = target.read_bytes()

    def empty_write(image, filename, *args, **kwargs):
        Path(filename).write_bytes(b"")  # what a full disk can leave, with no error
    mp.setattr(images.sitk, "WriteImage", empty_write)

    def run():
        try:
            images.write_image(target, vol(), G)
        finally:
            assert target.read_bytes() == before  # the old file is intact
            assert sorted(p.name for p in tmp.iterdir()) == ["keep.nii.gz"]
    return run


@case("file system", "refused", "disk is full", "nothing was replaced")
def writer_hits_enospc(tmp, mp):
    from mcdose.io.atomic import atomic_path

    target = tmp / "x.json"
    target.write_text("old")

    def run():
        try:
            with atomic_path(target) as t:
                t.write_text("partial")
                raise OSError(errno.ENOSPC, "No space left on device")
        finally:
            assert target.read_text() == "old"
    return run


@case("file system", "refused", "exists; pass --overwrite")
def cli_simulate_out_exists(tmp, mp):
    d = nii(tmp, "rho.nii.gz", vol(value=1.0))
    a = nii(tmp, "act.nii.gz", vol())
    nii(tmp, "dose.nii.gz")
    return Cli("simulate", "--density", d, "--activity", a, "--out", tmp / "dose.nii.gz",
               "--histories", 100)


@case("file system", "refused", "is the input", "even with --overwrite")
def cli_simulate_out_is_activity(tmp, mp):
    d = nii(tmp, "rho.nii.gz", vol(value=1.0))
    a = nii(tmp, "act.nii.gz", vol())
    return Cli("simulate", "--density", d, "--activity", a, "--out", a, "--overwrite",
               "--histories", 100)


@case("file system", "refused", "is the input")
def cli_simulate_out_is_density(tmp, mp):
    d = nii(tmp, "rho.nii.gz", vol(value=1.0))
    a = nii(tmp, "act.nii.gz", vol())
    return Cli("simulate", "--density", d, "--activity", a, "--out", d, "--overwrite",
               "--histories", 100)


@case("file system", "refused", "is the input")
def cli_simulate_out_is_link_to_input(tmp, mp):
    d = nii(tmp, "rho.nii.gz", vol(value=1.0))
    a = nii(tmp, "act.nii.gz", vol())
    (tmp / "link.nii.gz").symlink_to(a)
    return Cli("simulate", "--density", d, "--activity", a, "--out", tmp / "link.nii.gz",
               "--overwrite", "--histories", 100)


@case("file system", "refused", "is the input")
def cli_simulate_uncertainty_is_input(tmp, mp):
    d = nii(tmp, "rho.nii.gz", vol(value=1.0))
    a = nii(tmp, "d_uncertainty.nii.gz", vol())
    return Cli("simulate", "--density", d, "--activity", a, "--out", tmp / "d.nii.gz",
               "--overwrite", "--histories", 100)


@case("file system", "refused", "--out", "is the input")
def cli_dose_out_is_spect(tmp, mp):
    s = nii(tmp, "spect.nii.gz", vol() * 1e4)
    c = nii(tmp, "ct.nii.gz", ct_hu((4, 5, 6)))
    return Cli("dose", "--ct", c, "--spect", s, "--method", "vdk", "--out", s, "--overwrite")


@case("file system", "refused", "is the input")
def cli_dose_out_inside_dicom_ct(tmp, mp):
    s = nii(tmp, "spect.nii.gz", vol() * 1e4)
    f = ct_folder(tmp)
    return Cli("dose", "--ct", f, "--spect", s, "--method", "vdk", "--out", f / "d.nii.gz")


@case("file system", "refused", "is the input")
def cli_dose_sidecar_is_input(tmp, mp):
    s = nii(tmp, "spect.nii.gz", vol() * 1e4)
    c = nii(tmp, "ct.nii.gz", ct_hu((4, 5, 6)))
    labels = tmp / "d.json"
    labels.write_text("{}")
    return Cli("dose", "--ct", c, "--spect", s, "--method", "vdk", "--label-names", labels,
               "--out", tmp / "d.nii.gz", "--overwrite")


@case("file system", "refused", "exists; pass --overwrite")
def cli_kernel_out_exists(tmp, mp):
    (tmp / "k.h5").write_bytes(b"x")
    return Cli("kernel", "--nuclide", "Lu-177", "--voxel-mm", 4, "--size", 3,
               "--out", tmp / "k.h5")


@case("file system", "refused", "folder does not exist")
def cli_kernel_out_folder_missing(tmp, mp):
    return Cli("kernel", "--nuclide", "Lu-177", "--voxel-mm", 4, "--size", 3,
               "--out", tmp / "no" / "k.h5")


@case("file system", "refused", "exists; pass --overwrite")
def cli_phantom_from_ct_exists(tmp, mp):
    c = nii(tmp, "ct.nii.gz", ct_hu((4, 5, 6)))
    a = nii(tmp, "act.nii.gz", vol())
    (tmp / "out").mkdir()
    (tmp / "out" / "case_0000.h5").write_bytes(b"x")
    return Cli("phantom", tmp / "out", "--from-ct", c, "--from-activity", a)


@case("file system", "accepted")
def manifest_not_written_when_start_fails(tmp, mp):
    import distributed

    from mcdose.dataset import build_dataset

    class NoClient:
        def __init__(self, *a, **k):
            raise OSError("cannot reach the scheduler")
    mp.setattr(distributed, "Client", NoClient)

    def run():
        with pytest.raises(OSError):
            build_dataset(tmp / "ds", cases=1, preset="tiny", scheduler="tcp://127.0.0.1:9",
                          progress=False)
        assert not (tmp / "ds" / "manifest.json").exists()
    return run


@case("file system", "warned", "cannot be written", "not cached")
def kernel_cache_is_a_file(tmp, mp):
    import mcdose.vdk.cache as cache

    (tmp / "cachefile").write_text("x")
    mp.setenv(cache.CACHE_ENV, str(tmp / "cachefile"))

    class Fake:
        attrs: dict = {}
    mp.setattr(cache, "make_kernel", lambda *a, **k: Fake())
    return lambda: cache.get_kernel("Lu-177", (4.0, 4.0, 4.0), (3, 3, 3), "soft_tissue",
                                    histories=100)


# ======================================================================================
# the test
# ======================================================================================


def _run_cli(argv, capsys):
    from mcdose_cli.main import main

    capsys.readouterr()
    rc = main(argv)
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("entry", CASES, ids=[c.name for c in CASES])
def test_bad_input(entry: Case, tmp_path, monkeypatch, capsys, caplog):
    caplog.set_level(logging.WARNING)
    built = entry.build(tmp_path, monkeypatch)
    reference = None
    if isinstance(built, tuple):
        built, reference = built
    if isinstance(built, Cli):
        rc, err = _run_cli(built.argv, capsys)
        if entry.outcome == "refused":
            lines = [ln for ln in err.strip().splitlines() if ln.startswith("mcdose: error:")]
            assert rc == 2 and len(lines) == 1, (rc, err)
            for needle in entry.needles:
                assert needle in lines[0], (needle, err)
        else:
            assert rc == 0, err
        return
    if entry.outcome == "refused":
        with pytest.raises(McdoseError) as exc:
            built()
        message = str(exc.value)
        assert "\n" not in message, message
        for needle in entry.needles:
            assert needle in message, (needle, message)
        return
    value = built()
    if entry.outcome == "warned":
        text = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
        for needle in entry.needles:
            assert needle in text, (needle, text)
    if entry.outcome == "equal":
        np.testing.assert_allclose(np.asarray(value, np.float64),
                                   np.asarray(reference, np.float64), rtol=1e-6, atol=1e-9)


def test_table_has_at_least_120_cases_in_every_category():
    assert len(CASES) >= 120, len(CASES)
    assert len({c.name for c in CASES}) == len(CASES)
    categories = {c.category for c in CASES}
    assert categories == {"image file", "DICOM CT", "DICOM NM", "Interfile", "values",
                          "case file", "absurd numbers", "file system"}
