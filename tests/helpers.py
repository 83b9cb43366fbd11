"""Reusable test helpers: tiny case files and synthetic DICOM files.

Import from any test as ``from tests.helpers import make_case`` (``tests`` is a package and
pytest puts the repository root on ``sys.path``).  Everything here is small, deterministic
(fixed seeds) and CPU-only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mcdose.io.case import Geometry, create_case, dose_attrs, write_datasets

__all__ = [
    "LABEL_NAMES",
    "assert_one_line",
    "case_arrays",
    "make_case",
    "write_ct_series",
    "write_nm_multiframe",
]

#: Label names of :func:`case_arrays` (lower-case, as DEVELOPING.md "Labels" requires).
LABEL_NAMES = {0: "background", 1: "body", 2: "liver", 3: "lesion_1_liver", 4: "lung_left"}


def case_arrays(shape: Sequence[int] = (6, 8, 10), seed: int = 0) -> dict[str, np.ndarray]:
    """Arrays of a small synthetic case on a ``(z, y, x)`` grid.

    Returns
    -------
    dict
        ``density`` (g/cm³: air 0.0012 border, soft tissue 1.04, liver 1.06, lung 0.26),
        ``labels`` (int16, see :data:`LABEL_NAMES`), ``activity`` (MBq per voxel: body
        0.001, liver 0.01, lesion 0.1), ``spect`` (MBq per voxel: activity smoothed by a
        3-voxel box along every axis plus 5 % multiplicative noise, non-negative) — all
        float32 except labels.
    """
    nz, ny, nx = (int(n) for n in shape)
    rng = np.random.default_rng(seed)
    labels = np.zeros((nz, ny, nx), np.int16)
    labels[:, 1 : ny - 1, 1 : nx - 1] = 1
    z2, y2, x2 = max(1, nz // 2), max(1, ny // 2), max(1, nx // 2)
    labels[: z2 + 1, 1:y2, 1:x2] = 2
    labels[max(0, z2 - 1) : z2 + 1, max(1, y2 - 2) : y2, max(1, x2 - 2) : x2] = 3
    labels[:, y2 : ny - 1, x2 + 1 : nx - 1] = 4
    density = np.choose(labels, [0.0012, 1.04, 1.06, 1.06, 0.26]).astype(np.float32)
    activity = np.choose(labels, [0.0, 0.001, 0.01, 0.1, 0.0005]).astype(np.float32)
    smooth = activity.astype(np.float64)
    for axis in range(3):
        smooth = (np.roll(smooth, 1, axis) + smooth + np.roll(smooth, -1, axis)) / 3.0
    spect = np.clip(smooth * rng.normal(1.0, 0.05, smooth.shape), 0.0, None).astype(np.float32)
    return {"density": density, "labels": labels, "activity": activity, "spect": spect}


def make_case(
    tmp_path: str | Path,
    shape: Sequence[int] = (6, 8, 10),
    *,
    name: str = "case.h5",
    spacing_mm: Sequence[float] = (2.0, 2.5, 3.0),
    origin_mm: Sequence[float] = (-10.0, -12.0, 5.0),
    direction: Sequence[float] | None = None,
    nuclide: str = "Lu-177",
    seed: int = 0,
    activity: bool = True,
    labels: bool = True,
    spect: bool = False,
    doses: Iterable[str] = (),
    attrs: Mapping[str, Any] | None = None,
) -> Path:
    """Write a small valid case file and return its path.

    Parameters
    ----------
    tmp_path : path-like
        Folder (pytest's ``tmp_path``).
    shape : 3 ints
        Grid ``(z, y, x)``.
    name : str
        File name inside ``tmp_path``.
    spacing_mm, origin_mm, direction
        Geometry (mm); identity direction by default.
    nuclide : str
        Root ``nuclide`` attribute.
    seed : int
        Seed of the SPECT noise and dose values.
    activity, labels, spect : bool
        Which of the :func:`case_arrays` datasets to store (``density`` always).
    doses : iterable of str
        Dose datasets to add (e.g. ``("dose/mc", "dose/vdk", "dose/mc_uncertainty")``):
        positive random float32 values (Gy/s, or relative for the uncertainty) with the
        standard attributes of :func:`mcdose.io.case.dose_attrs` and
        ``params={"test": True}``.
    attrs : dict, optional
        Extra root attributes.
    """
    tmp_path = Path(tmp_path)
    arrays = case_arrays(shape, seed)
    geometry = Geometry(tuple(spacing_mm), tuple(origin_mm),
                        tuple(direction) if direction is not None else
                        (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    path = create_case(
        tmp_path / name,
        geometry=geometry,
        nuclide=nuclide,
        density=arrays["density"],
        activity=arrays["activity"] if activity else None,
        labels=arrays["labels"] if labels else None,
        label_names=LABEL_NAMES if labels else None,
        spect=arrays["spect"] if spect else None,
        attrs=attrs,
    )
    doses = list(doses)
    if doses:
        rng = np.random.default_rng(seed + 1)
        data = {}
        meta = {}
        for dose_name in doses:
            data[dose_name] = rng.uniform(1e-6, 1e-4, size=tuple(shape)).astype(np.float32)
            method = dose_name.split("/")[-1]
            meta[dose_name] = dose_attrs(method, nuclide, {"test": True}, histories=1000,
                                         seed=seed)
        write_datasets(path, data, meta)
    return path


def _dicom_dataset(sop_class: str, modality: str, rows: int, cols: int, *,
                   series_uid: str, study_uid: str, frame_uid: str) -> Any:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientID = "MCDOSE-TEST"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = frame_uid
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    return ds


def write_ct_series(
    folder: str | Path,
    hu: np.ndarray,
    geometry: Geometry,
    *,
    slopes: Sequence[float] | float = 1.0,
    intercept: float = -1024.0,
    file_order: Sequence[int] | None = None,
    series_uid: str | None = None,
    frame_uid: str | None = None,
) -> tuple[Path, np.ndarray]:
    """Write a CT series (one file per slice) with pydicom.

    Slice ``k`` of ``hu`` is stored at ``origin + k * spacing_z * normal`` with stored value
    ``round((hu - intercept) / slope_k)`` (unsigned 16 bit).

    Parameters
    ----------
    folder : path-like
        Created if missing.
    hu : (z, y, x) array
        Hounsfield units wanted.
    geometry : Geometry
        Spacing (mm), origin of slice 0 (mm), direction (its first two columns become
        ImageOrientationPatient, the third must be their cross product).
    slopes : float or sequence
        RescaleSlope, one for all slices or one per slice.
    intercept : float
        RescaleIntercept.
    file_order : sequence of int, optional
        File name index of each slice (``im{n:03d}.dcm``); shuffle it to check sorting.
    series_uid, frame_uid : str, optional
        UIDs (new ones by default).

    Returns
    -------
    folder : Path
    hu_stored : numpy.ndarray
        float64 HU that the files actually encode (after rounding), ``(z, y, x)``.
    """
    from pydicom.uid import generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    nz, ny, nx = hu.shape
    slopes = np.broadcast_to(np.asarray(slopes, dtype=np.float64), (nz,))
    order = list(file_order) if file_order is not None else list(range(nz))
    d = geometry.direction_matrix
    series_uid = series_uid or generate_uid()
    study_uid = generate_uid()
    frame_uid = frame_uid or generate_uid()
    stored = np.empty(hu.shape, np.float64)
    for k in range(nz):
        raw = np.round((np.asarray(hu[k], np.float64) - intercept) / slopes[k])
        if raw.min() < 0 or raw.max() > 65535:
            raise ValueError("HU out of the range of the chosen rescale")
        stored[k] = raw * slopes[k] + intercept
        ds = _dicom_dataset("1.2.840.10008.5.1.4.1.1.2", "CT", ny, nx, series_uid=series_uid,
                            study_uid=study_uid, frame_uid=frame_uid)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PixelRepresentation = 0
        sx, sy, sz = geometry.spacing_mm
        ds.PixelSpacing = [f"{sy:.6g}", f"{sx:.6g}"]
        ds.SliceThickness = f"{sz:.6g}"
        pos = np.asarray(geometry.origin_mm) + k * sz * d[:, 2]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in pos]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*d[:, 0], *d[:, 1])]
        ds.InstanceNumber = order[k] + 1
        ds.RescaleSlope = f"{slopes[k]:.6g}"
        ds.RescaleIntercept = f"{intercept:.6g}"
        ds.RescaleType = "HU"
        ds.PixelData = raw.astype(np.uint16).tobytes()
        ds.save_as(folder / f"im{order[k]:03d}.dcm", enforce_file_format=True)
    return folder, stored


def write_nm_multiframe(
    path: str | Path,
    values: np.ndarray,
    geometry: Geometry,
    *,
    slope: float = 1.0,
    intercept: float = 0.0,
    real_world: tuple[float, float, str] | None = None,
    position_in_detector_sequence: bool = True,
    spacing_between_slices: bool = True,
    units: str = "BQML",
    frame_uid: str | None = None,
) -> tuple[Path, np.ndarray]:
    """Write an NM (SPECT reconstruction) multi-frame file with pydicom.

    Parameters
    ----------
    path : path-like
        Output file.
    values : (z, y, x) array
        Real-world values wanted (non-negative).
    geometry : Geometry
        Frames are stacked along the third direction column, ``spacing_mm[2]`` apart.
    slope, intercept : float
        RescaleSlope / RescaleIntercept (used when ``real_world`` is None).
    real_world : (slope, intercept, units) or None
        Write a RealWorldValueMappingSequence instead of a rescale (RescaleSlope 1).
    position_in_detector_sequence : bool
        Put ImagePositionPatient / ImageOrientationPatient only in
        DetectorInformationSequence (as the NM IOD does) instead of the top level.
    spacing_between_slices : bool
        Write SpacingBetweenSlices (else only SliceThickness).
    units : str
        (0054,1001) Units.
    frame_uid : str, optional
        FrameOfReferenceUID.

    Returns
    -------
    path : Path
    values_stored : numpy.ndarray
        float64 values the file encodes after rounding.
    """
    from pydicom.dataset import Dataset
    from pydicom.tag import Tag
    from pydicom.uid import generate_uid

    path = Path(path)
    nz, ny, nx = values.shape
    m, b = (real_world[0], real_world[1]) if real_world is not None else (slope, intercept)
    raw = np.round((np.asarray(values, np.float64) - b) / m)
    if raw.min() < 0 or raw.max() > 65535:
        raise ValueError("values out of the range of the chosen scaling")
    ds = _dicom_dataset("1.2.840.10008.5.1.4.1.1.20", "NM", ny, nx, series_uid=generate_uid(),
                        study_uid=generate_uid(), frame_uid=frame_uid or generate_uid())
    ds.ImageType = ["ORIGINAL", "PRIMARY", "RECON TOMO", "EMISSION"]
    ds.PixelRepresentation = 0
    ds.NumberOfFrames = nz
    ds.FrameIncrementPointer = Tag(0x0054, 0x0080)
    ds.SliceVector = list(range(1, nz + 1))
    sx, sy, sz = geometry.spacing_mm
    ds.PixelSpacing = [f"{sy:.6g}", f"{sx:.6g}"]
    ds.SliceThickness = f"{sz:.6g}"
    if spacing_between_slices:
        ds.SpacingBetweenSlices = f"{sz:.6g}"
    d = geometry.direction_matrix
    if not np.allclose(np.cross(d[:, 0], d[:, 1]), d[:, 2], atol=1e-6):
        raise ValueError("the third direction column must be row x column for NM files")
    ipp = [f"{v:.6f}" for v in geometry.origin_mm]
    iop = [f"{v:.6f}" for v in (*d[:, 0], *d[:, 1])]
    if position_in_detector_sequence:
        det = Dataset()
        det.ImagePositionPatient = ipp
        det.ImageOrientationPatient = iop
        ds.DetectorInformationSequence = [det]
    else:
        ds.ImagePositionPatient = ipp
        ds.ImageOrientationPatient = iop
    ds.Units = units
    code = Dataset()
    code.CodeValue = "C-1031C"  # not an official code; only CodeMeaning is read
    code.CodingSchemeDesignator = "SRT"
    code.CodeMeaning = "^177^Lutetium"
    radiopharm = Dataset()
    radiopharm.RadionuclideCodeSequence = [code]
    radiopharm.RadionuclideTotalDose = "7400"
    ds.RadiopharmaceuticalInformationSequence = [radiopharm]
    if real_world is not None:
        item = Dataset()
        item.RealWorldValueSlope = real_world[0]
        item.RealWorldValueIntercept = real_world[1]
        unit = Dataset()
        unit.CodeValue = real_world[2]
        unit.CodingSchemeDesignator = "UCUM"
        unit.CodeMeaning = real_world[2]
        item.MeasurementUnitsCodeSequence = [unit]
        item.LUTLabel = "activity"
        ds.RealWorldValueMappingSequence = [item]
        ds.RescaleSlope = "1"
        ds.RescaleIntercept = "0"
    else:
        ds.RescaleSlope = f"{slope:.10g}"
        ds.RescaleIntercept = f"{intercept:.10g}"
    ds.PixelData = raw.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path, raw * m + b


def assert_one_line(exc: BaseException | Any, *needles: str) -> None:
    """Assert an error message is one line naming every needle (file, dataset, ...).

    ``exc`` may be an exception or a ``pytest.ExceptionInfo``.
    """
    msg = str(getattr(exc, "value", exc))
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, (needle, msg)


def assert_cli_error(err: str, *needles: str) -> str:
    """Assert a command's stderr is the one line ``mcdose: error: ...`` naming every needle.

    ``err`` is the captured stderr (``capsys.readouterr().err``); returns the line.
    """
    line = err.strip()
    assert line.startswith("mcdose: error: ") and "\n" not in line, err
    for needle in needles:
        assert needle in line, (needle, err)
    return line
