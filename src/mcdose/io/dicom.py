"""DICOM specifics: finding series, multi-frame NM/PET volumes, small metadata summaries.

CT series (one file per slice) are read by SimpleITK/GDCM in :mod:`mcdose.io.images`, which
sorts slices by position and applies each file's RescaleSlope/Intercept (HU).  Multi-frame
files (NM/SPECT reconstructions, enhanced CT/PET: one file, ``NumberOfFrames`` > 1) are read
here with pydicom, because SimpleITK/GDCM (checked with SimpleITK 2.5) silently uses a
1 mm slice spacing for NM files without ``SpacingBetweenSlices``, puts the origin at 0 when
an NM file has ``ImagePositionPatient`` at the top level rather than in
``DetectorInformationSequence``, and ignores ``RealWorldValueMappingSequence`` (the
quantitative scaling of SPECT reconstructions, e.g. to Bq/ml).  Where GDCM does read an NM
file right, both readers agree (tested).

Geometry of a multi-frame file, in order of preference:

* orientation: ``ImageOrientationPatient`` at the top level, in
  ``DetectorInformationSequence[0]`` (NM Image IOD) or in the shared functional groups
  (``PlaneOrientationSequence``); identity when absent (logged);
* position of each frame: ``PerFrameFunctionalGroupsSequence[i].PlanePositionSequence``
  (enhanced IODs) — frames are re-ordered along the slice normal and must be evenly spaced;
  otherwise the first frame at ``ImagePositionPatient`` (top level or
  ``DetectorInformationSequence[0]``) and frames stacked along the normal
  ``row x column`` (as GDCM/ITK do), ``|SpacingBetweenSlices|`` apart (a negative value
  stacks them along the opposite direction), falling back to ``SliceThickness``;
* pixel spacing: ``PixelSpacing`` (row spacing = y, column spacing = x), top level or
  ``PixelMeasuresSequence``.

Values: ``RealWorldValueMappingSequence[0]`` slope/intercept when present (its units in
``MeasurementUnitsCodeSequence``), else ``RescaleSlope``/``RescaleIntercept`` (top level,
shared or per-frame ``PixelValueTransformationSequence``), else the stored values.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from mcdose.errors import InputError
from mcdose.io.case import Geometry

__all__ = [
    "check_pixel_data_length",
    "find_dicom_series",
    "is_dicom_file",
    "is_multiframe",
    "read_dicom_metadata",
    "read_multiframe",
]

log = logging.getLogger(__name__)

_METADATA_KEYS = (
    "Modality",
    "SOPClassUID",
    "PatientID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "FrameOfReferenceUID",
    "SeriesDescription",
    "Manufacturer",
    "ManufacturerModelName",
    "SeriesDate",
    "SeriesTime",
    "AcquisitionDate",
    "AcquisitionTime",
    "Units",
    "DecayCorrection",
    "CorrectedImage",
    "NumberOfFrames",
    "Rows",
    "Columns",
    "RescaleSlope",
    "RescaleIntercept",
    "RescaleType",
)


def is_dicom_file(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a file with the DICOM preamble (``DICM`` at byte 128).

    Files without a preamble (old ACR-NEMA style) are accepted when pydicom parses a
    header with a SOP class, modality or pixel data in it.
    """
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    if len(head) == 132 and head[128:132] == b"DICM":
        return True
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception:  # noqa: BLE001 - anything unparsable is simply not DICOM
        return False
    return any(k in ds for k in ("SOPClassUID", "Modality", "Rows"))


def _may_hold_dicom(folder: Path, parse_limit: int = 10) -> bool:
    """Cheap pre-check: a file with the DICM preamble, or one of the first few parses."""
    try:
        files = sorted(p for p in folder.iterdir() if p.is_file())
    except OSError:
        return False
    for p in files:
        try:
            with open(p, "rb") as fh:
                head = fh.read(132)
        except OSError:
            continue
        if len(head) == 132 and head[128:132] == b"DICM":
            return True
    return any(is_dicom_file(p) for p in files[:parse_limit])


def _holds_image(path: str) -> bool:
    """True unless the file is a DICOM object without an image (RTSTRUCT, RT Plan, SR)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception:  # noqa: BLE001 - let the series reader report it
        return True
    return "Rows" in ds or "PixelData" in ds


def find_dicom_series(folder: str | os.PathLike[str]) -> list[tuple[str, list[str]]]:
    """DICOM series in ``folder`` (not its subfolders), the largest first.

    Parameters
    ----------
    folder : path-like
        Folder holding the files of one or more series.

    Returns
    -------
    list of (series_instance_uid, file_names)
        File names sorted by slice position (GDCM), series sorted by number of files
        (descending), then by UID.
    """
    import SimpleITK as sitk

    if not _may_hold_dicom(Path(folder)):
        return []  # spares ITK's "No Series were found" warning on stderr
    folder = str(folder)
    out = []
    for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder):
        files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, uid))
        if files and _holds_image(files[0]):
            out.append((uid, files))
    out.sort(key=lambda item: (-len(item[1]), item[0]))
    return out


def is_multiframe(ds: Any) -> bool:
    """True when a pydicom dataset holds several frames (``NumberOfFrames`` > 1)."""
    try:
        return int(ds.get("NumberOfFrames", 1) or 1) > 1
    except (TypeError, ValueError):
        return False


def _first(seq: Any) -> Any:
    return seq[0] if seq is not None and len(seq) > 0 else None


def _find(ds: Any, keyword: str, *paths: tuple[str, ...]) -> Any:
    """Value of ``keyword`` at the top level of ``ds`` or below one of the sequence paths."""
    value = ds.get(keyword)
    if value is not None and value != "":
        return value
    for path in paths:
        item = ds
        for seq in path:
            item = _first(item.get(seq)) if item is not None else None
        if item is not None:
            value = item.get(keyword)
            if value is not None and value != "":
                return value
    return None


def _shared(name: str) -> tuple[str, ...]:
    return ("SharedFunctionalGroupsSequence", name)


def _rwvm_linear(item: Any, path: Path) -> tuple[float, float, str | None]:
    if "RealWorldValueSlope" not in item:
        raise InputError(
            f"{path}: RealWorldValueMappingSequence without RealWorldValueSlope "
            f"(lookup-table mappings are not supported)"
        )
    slope = float(item.RealWorldValueSlope)
    intercept = float(item.get("RealWorldValueIntercept", 0.0) or 0.0)
    code = _first(item.get("MeasurementUnitsCodeSequence"))
    units = str(code.CodeValue) if code is not None and "CodeValue" in code else None
    return slope, intercept, units


def _check_rescale_agrees(ds: Any, slope: float, intercept: float, path: Path) -> None:
    """Refuse a file whose Rescale Slope/Intercept and Real World Value Mapping disagree.

    PS3.3 C.7.6.16.2.11: the Real World Value Mapping gives the quantitative value of a
    stored pixel; a modality rescale that is not the identity is a second, competing
    scaling of the same pixels.  When both are present and differ, which one the scanner
    meant cannot be told, so the file is refused (an identity rescale, 1 and 0, is the
    usual companion of a mapping and accepted).
    """
    rs = _find(ds, "RescaleSlope", _shared("PixelValueTransformationSequence"))
    ri = _find(ds, "RescaleIntercept", _shared("PixelValueTransformationSequence"))
    rs = 1.0 if rs is None else float(rs)
    ri = 0.0 if ri is None else float(ri)
    if rs == 1.0 and ri == 0.0:
        return
    if abs(rs - slope) <= 1e-6 * max(abs(slope), 1e-30) and abs(ri - intercept) <= 1e-6 * max(
            abs(intercept), abs(slope), 1e-30):
        return
    raise InputError(
        f"{path}: RealWorldValueMapping (slope {slope:.6g}, intercept {intercept:.6g}) and "
        f"Rescale Slope/Intercept ({rs:.6g}, {ri:.6g}) disagree; which scaling gives the "
        f"activity cannot be told, refusing rather than guessing a factor"
    )


def check_pixel_data_length(ds: Any, path: Path) -> None:
    """Refuse uncompressed pixel data shorter or longer than ``NumberOfFrames`` frames.

    The expected length is ``NumberOfFrames x Rows x Columns x SamplesPerPixel x
    BitsAllocated / 8`` bytes, padded to an even length (PS3.5 section 8.1.1).
    """
    tsyntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if tsyntax is not None and getattr(tsyntax, "is_compressed", False):
        return
    try:
        nframes = int(ds.get("NumberOfFrames", 1) or 1)
        rows, cols = int(ds.Rows), int(ds.Columns)
        bits = int(ds.get("BitsAllocated", 16) or 16)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
    except (TypeError, ValueError, AttributeError):
        raise InputError(f"{path}: Rows, Columns or NumberOfFrames is not a number") from None
    if nframes < 1:
        raise InputError(f"{path}: NumberOfFrames is {nframes}")
    frame_bytes = rows * cols * samples * bits // 8
    expected = nframes * frame_bytes
    have = len(ds.PixelData)
    if have not in (expected, expected + (expected % 2)):
        frames = have / frame_bytes if frame_bytes else 0
        raise InputError(
            f"{path}: NumberOfFrames is {nframes} ({expected} bytes of pixel data), but the "
            f"pixel data holds {have} bytes ({frames:.4g} frames of {rows}x{cols})"
        )


def _value_mapping(ds: Any, nframes: int, path: Path
                   ) -> tuple[np.ndarray, np.ndarray, str | None, str]:
    """Per-frame (slope, intercept), units and mapping kind for stored -> real values."""
    slopes = np.ones(nframes)
    intercepts = np.zeros(nframes)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and len(per_frame) != nframes:
        per_frame = None

    rwvm = _find(ds, "RealWorldValueMappingSequence", ("SharedFunctionalGroupsSequence",))
    if rwvm:
        slope, intercept, units = _rwvm_linear(rwvm[0], path)
        _check_rescale_agrees(ds, slope, intercept, path)
        slopes[:], intercepts[:] = slope, intercept
        return slopes, intercepts, units, "real_world"
    if per_frame is not None and all(
        item.get("RealWorldValueMappingSequence") for item in per_frame
    ):
        units = None
        for i, item in enumerate(per_frame):
            slopes[i], intercepts[i], units = _rwvm_linear(
                item.RealWorldValueMappingSequence[0], path
            )
        return slopes, intercepts, units, "real_world"

    top_slope = _find(ds, "RescaleSlope", _shared("PixelValueTransformationSequence"))
    top_intercept = _find(ds, "RescaleIntercept", _shared("PixelValueTransformationSequence"))
    if top_slope is not None:
        slopes[:] = float(top_slope)
    if top_intercept is not None:
        intercepts[:] = float(top_intercept)
    if per_frame is not None:
        for i, item in enumerate(per_frame):
            pvt = _first(item.get("PixelValueTransformationSequence"))
            if pvt is not None:
                if pvt.get("RescaleSlope") is not None:
                    slopes[i] = float(pvt.RescaleSlope)
                if pvt.get("RescaleIntercept") is not None:
                    intercepts[i] = float(pvt.RescaleIntercept)
    units = ds.get("Units") or ds.get("RescaleType")
    return slopes, intercepts, (str(units) if units else None), "rescale"


def _frame_positions(ds: Any, nframes: int) -> np.ndarray | None:
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is None or len(per_frame) != nframes:
        return None
    positions = []
    for item in per_frame:
        plane = _first(item.get("PlanePositionSequence"))
        if plane is None or plane.get("ImagePositionPatient") is None:
            return None
        positions.append([float(v) for v in plane.ImagePositionPatient])
    return np.asarray(positions, dtype=np.float64)


def read_multiframe(path: str | os.PathLike[str]) -> tuple[np.ndarray, Geometry, dict[str, Any]]:
    """Read a multi-frame DICOM file (NM/SPECT reconstruction, enhanced CT/PET) as a volume.

    Parameters
    ----------
    path : path-like
        One DICOM file with ``NumberOfFrames`` >= 1 frames.

    Returns
    -------
    array : numpy.ndarray
        float32 ``(z, y, x)`` real-world values (see the module docstring for the mapping).
    geometry : Geometry
        Spacing / origin in mm, direction cosines.
    info : dict
        ``units`` (e.g. ``"BQML"``, ``"Bq/ml"``, ``"HU"`` or ``None``), ``value_mapping``
        (``"real_world"``, ``"rescale"``), ``spacing_source`` (which attribute gave the slice
        spacing).

    Raises
    ------
    InputError
        Unreadable file, no pixel data, undecodable pixel data, missing slice spacing,
        unevenly spaced frames.
    """
    import pydicom

    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:  # noqa: BLE001 - report any parse failure as bad input
        raise InputError(f"{path}: cannot read DICOM file ({exc})") from None
    if "PixelData" not in ds:
        raise InputError(f"{path}: DICOM file holds no pixel data")
    nframes = int(ds.get("NumberOfFrames", 1) or 1)
    rows, cols = int(ds.Rows), int(ds.Columns)
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise InputError(f"{path}: colour DICOM images are not supported")

    iop = _find(ds, "ImageOrientationPatient", ("DetectorInformationSequence",),
                _shared("PlaneOrientationSequence"))
    if iop is None:
        log.warning("%s: no ImageOrientationPatient, assuming identity orientation", path)
        iop = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    row = np.asarray([float(v) for v in iop[:3]])
    col = np.asarray([float(v) for v in iop[3:6]])
    row /= np.linalg.norm(row)
    col /= np.linalg.norm(col)
    normal = np.cross(row, col)

    ps = _find(ds, "PixelSpacing", _shared("PixelMeasuresSequence"))
    if ps is None:
        raise InputError(f"{path}: PixelSpacing is missing")
    spacing_y, spacing_x = float(ps[0]), float(ps[1])

    order = np.arange(nframes)
    positions = _frame_positions(ds, nframes)
    spacing_source = "ImagePositionPatient (per frame)"
    if positions is not None and nframes > 1:
        along = positions @ normal
        order = np.argsort(along, kind="stable")
        along = along[order]
        steps = np.diff(along)
        spacing_z = float(np.mean(steps))
        if spacing_z <= 0 or np.max(np.abs(steps - spacing_z)) > max(1e-3, 1e-3 * spacing_z):
            raise InputError(
                f"{path}: frames are not evenly spaced along the slice normal "
                f"(steps {np.round(steps, 4).tolist()} mm)"
            )
        origin = positions[order[0]]
        zdir = normal
    else:
        ipp = _find(ds, "ImagePositionPatient", ("DetectorInformationSequence",))
        if ipp is None and positions is not None:
            ipp = positions[0]
        if ipp is None:
            log.warning("%s: no ImagePositionPatient, origin set to 0", path)
            ipp = [0.0, 0.0, 0.0]
        origin = np.asarray([float(v) for v in ipp])
        sbs = _find(ds, "SpacingBetweenSlices", _shared("PixelMeasuresSequence"))
        thickness = _find(ds, "SliceThickness", _shared("PixelMeasuresSequence"))
        zdir = normal
        if sbs is not None and float(sbs) != 0.0:
            spacing_z = abs(float(sbs))
            if float(sbs) < 0:
                zdir = -normal
            spacing_source = "SpacingBetweenSlices"
        elif thickness is not None and float(thickness) > 0:
            spacing_z = float(thickness)
            spacing_source = "SliceThickness"
        elif nframes == 1:
            spacing_z = 1.0
            spacing_source = "default (single frame)"
        else:
            raise InputError(
                f"{path}: neither SpacingBetweenSlices nor SliceThickness gives the slice "
                f"spacing of this {nframes}-frame image"
            )

    direction = np.column_stack([row, col, zdir]).reshape(-1)
    geometry = Geometry((spacing_x, spacing_y, spacing_z), tuple(origin), tuple(direction))

    check_pixel_data_length(ds, path)
    try:
        raw = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - missing codec etc.
        raise InputError(
            f"{path}: cannot decode pixel data ({str(exc).splitlines()[0]}); install "
            f"pylibjpeg / python-gdcm for compressed transfer syntaxes"
        ) from None
    raw = raw.reshape(nframes, rows, cols)
    slopes, intercepts, units, mapping = _value_mapping(ds, nframes, path)
    out = np.empty((nframes, rows, cols), dtype=np.float32)
    for k, src in enumerate(order):
        np.multiply(raw[src], np.float32(slopes[src]), out=out[k], casting="unsafe")
        out[k] += np.float32(intercepts[src])
    return out, geometry, {"units": units, "value_mapping": mapping,
                           "spacing_source": spacing_source}


def _plain(value: Any) -> Any:
    """pydicom value -> str / int / float / list."""
    if value is None:
        return None
    if isinstance(value, (int, float, str)):
        return value
    if hasattr(value, "__iter__") and not isinstance(value, (bytes, str)):
        return [_plain(v) for v in value]
    for kind in (int, float):
        try:
            return kind(value)
        except (TypeError, ValueError):
            continue
    return str(value)


def read_dicom_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A small summary of a DICOM file or series, for consistency checks.

    Parameters
    ----------
    path : path-like
        A DICOM file, or a folder (the series with the most files is described).

    Returns
    -------
    dict
        Keys ``Modality``, ``SOPClassUID``, ``PatientID``, ``StudyInstanceUID``,
        ``SeriesInstanceUID``, ``FrameOfReferenceUID``, ``SeriesDescription``,
        ``Manufacturer``, ``ManufacturerModelName``, ``SeriesDate``, ``SeriesTime``,
        ``AcquisitionDate``, ``AcquisitionTime``, ``Units``, ``DecayCorrection``,
        ``CorrectedImage``, ``NumberOfFrames``, ``Rows``, ``Columns``, ``RescaleSlope``,
        ``RescaleIntercept``, ``RescaleType`` (``None`` when absent), plus
        ``RealWorldValueUnits``, ``Radionuclide`` (code meaning from the
        radiopharmaceutical information), ``RadionuclideTotalDose`` (as stored: MBq in NM
        files, Bq in PET files, per the DICOM standard), ``files`` (number of files in the
        series) and ``path`` (the file described).

    Raises
    ------
    InputError
        Missing path, no DICOM in the folder, unreadable file.
    """
    import pydicom

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    n_files = 1
    if path.is_dir():
        series = find_dicom_series(path)
        if not series:
            raise InputError(f"{path}: folder holds no DICOM series (subfolders are not searched)")
        n_files = len(series[0][1])
        path = Path(series[0][1][0])
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{path}: cannot read DICOM header ({exc})") from None
    out: dict[str, Any] = {key: _plain(ds.get(key)) for key in _METADATA_KEYS}
    for key in ("SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        if out[key] is not None:
            out[key] = str(out[key])
    if out["FrameOfReferenceUID"] is None:
        for seq in ("SharedFunctionalGroupsSequence",):
            item = _first(ds.get(seq))
            if item is not None and item.get("FrameOfReferenceUID"):
                out["FrameOfReferenceUID"] = str(item.FrameOfReferenceUID)
    rwvm = _find(ds, "RealWorldValueMappingSequence", ("SharedFunctionalGroupsSequence",))
    units = None
    if rwvm:
        code = _first(rwvm[0].get("MeasurementUnitsCodeSequence"))
        if code is not None and "CodeValue" in code:
            units = str(code.CodeValue)
    out["RealWorldValueUnits"] = units
    radionuclide = None
    total_dose = None
    info = _first(ds.get("RadiopharmaceuticalInformationSequence"))
    if info is not None:
        code = _first(info.get("RadionuclideCodeSequence"))
        if code is not None and code.get("CodeMeaning"):
            radionuclide = str(code.CodeMeaning)
        if info.get("RadionuclideTotalDose") is not None:
            total_dose = float(info.RadionuclideTotalDose)
    out["Radionuclide"] = radionuclide
    out["RadionuclideTotalDose"] = total_dose
    out["files"] = n_files
    out["path"] = str(path)
    return out
