"""DICOM RT Dose files: write the dose grid so that a planning system overlays it on the CT.

The dose object joins the CT's study and frame of reference (``StudyInstanceUID``,
``FrameOfReferenceUID``, patient identity copied from the CT header) in a new series.  The
grid geometry (LPS, mm) is written as

* ``ImageOrientationPatient`` — the direction cosines of the array's x (rows run along it)
  and y axes;
* ``ImagePositionPatient`` — the centre of the first voxel of the first frame;
* ``PixelSpacing`` — (row spacing = y, column spacing = x);
* ``GridFrameOffsetVector`` — frame positions along the normal ``row × column``, relative
  to the first frame (first element 0, increasing: frames are reversed when the array's z
  axis points against the normal);
* ``DoseGridScaling`` — dose = stored 32-bit unsigned value × scaling (Gy).

Dose units are ``GY``.  A dose-rate map (a single time point) is written in the same way with
values in Gy per hour, and ``DoseComment`` / ``SeriesDescription`` say so, since RT Dose has
no unit for a rate.  ``DoseSummationType`` is ``PLAN``; no RT Plan exists for a
radionuclide therapy, so no plan is referenced (a deviation from the Type 1C rule that
common viewers accept).

References
----------
.. [1] DICOM PS3.3, C.8.8.3 "RT Dose Module" and A.18 "RT Dose IOD".
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from mcdose.errors import InputError
from mcdose.io.atomic import atomic_path
from mcdose.io.case import Geometry

__all__ = ["RT_DOSE_STORAGE", "read_reference_header", "read_rtdose", "write_rtdose"]

log = logging.getLogger(__name__)

RT_DOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"
_MAX_STORED = 2**32 - 1
_PATIENT_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")
_STUDY_KEYS = ("StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
               "ReferringPhysicianName", "StudyDescription")


def read_reference_header(path: str | os.PathLike[str]) -> Any:
    """The DICOM header (no pixels) of a CT file, or of the first file of a CT folder."""
    import pydicom

    from mcdose.io.dicom import find_dicom_series

    path = Path(path)
    if path.is_dir():
        series = find_dicom_series(path)
        if not series:
            raise InputError(f"{path}: folder holds no DICOM series")
        path = Path(series[0][1][0])
    try:
        return pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{path}: cannot read DICOM header ({exc})") from None


def _ds(value: float) -> str:
    """A DICOM DS string (at most 16 characters) of ``value``."""
    for digits in range(12, 5, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    return f"{value:.6g}"


def write_rtdose(
    path: str | os.PathLike[str],
    dose: np.ndarray,
    geometry: Geometry,
    *,
    reference: Any = None,
    description: str = "mcdose absorbed dose",
    comment: str = "",
    series_number: int = 901,
) -> Path:
    """Write a dose grid as a DICOM RT Dose file, atomically.

    Parameters
    ----------
    path : path-like
        Output file (``*.dcm``); its folder must exist.
    dose : ndarray (z, y, x)
        Absorbed dose (Gy), or dose rate (Gy/h) — say which in ``comment``; finite, ≥ 0.
    geometry : Geometry
        Grid of ``dose`` (mm, LPS).
    reference : pydicom.Dataset, optional
        Header of the CT the dose belongs to (:func:`read_reference_header`); its patient,
        study and frame of reference are copied.  Without it, new UIDs are made.
    description : str
        SeriesDescription.
    comment : str
        DoseComment (at most 64 characters kept).
    series_number : int
        SeriesNumber.

    Returns
    -------
    Path
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from mcdose import __version__

    arr = np.asarray(dose, dtype=np.float64)
    if arr.ndim != 3:
        raise InputError(f"RT Dose needs a 3-D (z, y, x) dose, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or (arr.size and arr.min() < 0):
        raise InputError("RT Dose values must be finite and >= 0")
    d = geometry.direction_matrix
    sx, sy, sz = geometry.spacing_mm
    row, col = d[:, 0], d[:, 1]
    normal = np.cross(row, col)
    origin = np.asarray(geometry.origin_mm, dtype=np.float64)
    nz = arr.shape[0]
    if float(d[:, 2] @ normal) < 0:
        arr = arr[::-1]
        origin = origin + (nz - 1) * sz * d[:, 2]

    peak = float(arr.max()) if arr.size else 0.0
    scaling = float(_ds(peak / _MAX_STORED)) if peak > 0 else 1.0
    raw = np.clip(np.rint(arr / scaling), 0, _MAX_STORED).astype(np.uint32)

    now = _dt.datetime.now()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RT_DOSE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = RT_DOSE_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTDOSE"
    ds.Manufacturer = "mcdose"
    ds.SoftwareVersions = str(__version__)
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S")
    ds.ContentDate = ds.InstanceCreationDate
    ds.ContentTime = ds.InstanceCreationTime
    ref = reference if reference is not None else Dataset()
    for key in _PATIENT_KEYS + _STUDY_KEYS:
        value = ref.get(key)
        setattr(ds, key, value if value is not None else "")
    if not ds.StudyInstanceUID:
        ds.StudyInstanceUID = generate_uid()
    frame_uid = ref.get("FrameOfReferenceUID")
    if not frame_uid:
        shared = ref.get("SharedFunctionalGroupsSequence")
        frame_uid = shared[0].get("FrameOfReferenceUID") if shared else None
    ds.FrameOfReferenceUID = frame_uid or generate_uid()
    ds.PositionReferenceIndicator = ref.get("PositionReferenceIndicator", "") or ""
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = int(series_number)
    ds.InstanceNumber = 1
    ds.SeriesDescription = description[:64]

    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = int(arr.shape[0])
    ds.FrameIncrementPointer = pydicom.tag.Tag(0x3004, 0x000C)
    ds.Rows, ds.Columns = int(arr.shape[1]), int(arr.shape[2])
    ds.PixelSpacing = [_ds(sy), _ds(sx)]
    ds.SliceThickness = _ds(sz)
    ds.ImagePositionPatient = [_ds(v) for v in origin]
    ds.ImageOrientationPatient = [_ds(v) for v in (*row, *col)]
    ds.GridFrameOffsetVector = [_ds(k * sz) for k in range(arr.shape[0])]
    ds.BitsAllocated = 32
    ds.BitsStored = 32
    ds.HighBit = 31
    ds.PixelRepresentation = 0
    ds.DoseUnits = "GY"
    ds.DoseType = "PHYSICAL"
    ds.DoseSummationType = "PLAN"
    ds.DoseGridScaling = _ds(scaling)
    if comment:
        ds.DoseComment = comment[:64]
    ds.PixelData = np.ascontiguousarray(raw).astype("<u4").tobytes()

    path = Path(path)
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path


def read_rtdose(path: str | os.PathLike[str]) -> tuple[np.ndarray, Geometry, dict[str, Any]]:
    """Read a DICOM RT Dose file.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    dose : ndarray, float64 (z, y, x)
        Stored values × DoseGridScaling (Gy for ``DoseUnits`` GY).
    geometry : Geometry
        Frames stacked along ``row × column`` at the GridFrameOffsetVector positions.
    info : dict
        ``DoseUnits``, ``DoseType``, ``DoseSummationType``, ``DoseComment``,
        ``FrameOfReferenceUID``, ``StudyInstanceUID``.

    Raises
    ------
    InputError
        Unreadable file, not RT Dose, unevenly spaced frames.
    """
    import pydicom

    path = Path(path)
    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{path}: cannot read DICOM file ({exc})") from None
    if str(ds.get("Modality", "")).upper() != "RTDOSE":
        raise InputError(f"{path}: not an RT Dose file (Modality {ds.get('Modality')!r})")
    nframes = int(ds.get("NumberOfFrames", 1) or 1)
    raw = np.asarray(ds.pixel_array).reshape(nframes, int(ds.Rows), int(ds.Columns))
    dose = raw.astype(np.float64) * float(ds.get("DoseGridScaling", 1.0) or 1.0)
    iop = [float(v) for v in ds.ImageOrientationPatient]
    row, col = np.asarray(iop[:3]), np.asarray(iop[3:])
    normal = np.cross(row, col)
    ipp = np.asarray([float(v) for v in ds.ImagePositionPatient])
    sy, sx = (float(v) for v in ds.PixelSpacing)
    offsets = np.asarray([float(v) for v in (ds.get("GridFrameOffsetVector") or [0.0])])
    if offsets.size != nframes:
        raise InputError(f"{path}: GridFrameOffsetVector has {offsets.size} values for "
                         f"{nframes} frames")
    if offsets[0] != 0.0:  # absolute positions along the normal (axial use)
        offsets = offsets - float(ipp @ normal)
    if nframes > 1:
        steps = np.diff(offsets)
        sz = float(np.mean(steps))
        if sz == 0 or np.max(np.abs(steps - sz)) > max(1e-3, 1e-3 * abs(sz)):
            raise InputError(f"{path}: frames are not evenly spaced ({steps.tolist()} mm)")
    else:
        sz = float(ds.get("SliceThickness") or 1.0)
    zdir = normal if sz > 0 else -normal
    origin = ipp + offsets[0] * normal
    geometry = Geometry((sx, sy, abs(sz)), tuple(origin),
                        tuple(np.column_stack([row, col, zdir]).reshape(-1)))
    info = {key: (str(ds.get(key)) if ds.get(key) is not None else None)
            for key in ("DoseUnits", "DoseType", "DoseSummationType", "DoseComment",
                        "FrameOfReferenceUID", "StudyInstanceUID")}
    return dose, geometry, info
