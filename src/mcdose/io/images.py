"""Image files through SimpleITK: NIfTI, NRRD, MetaImage and DICOM, plus resampling.

Arrays are ``(z, y, x)``; :class:`~mcdose.io.case.Geometry` gives spacing and origin
``(x, y, z)`` in mm and the direction cosines as SimpleITK reports them (LPS patient
coordinates; NIfTI's RAS is converted by ITK on reading and writing).

Memory: SimpleITK cannot share its buffer with NumPy for good, so every read makes one
copy (image -> array; the image is freed right after) and every write / resample makes one
copy (array -> image).  Reading converts to float32 in that same copy.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from mcdose.errors import InputError
from mcdose.io.atomic import atomic_path
from mcdose.io.case import Geometry
from mcdose.io.checks import check_finite_array, check_finite_file, check_spacing_present
from mcdose.io.dicom import (
    find_dicom_series,
    is_dicom_file,
    read_dicom_metadata,
    read_multiframe,
)
from mcdose.io.nifti import check_image_file

__all__ = [
    "IMAGE_SUFFIXES",
    "from_sitk",
    "is_dicom_input",
    "read_dicom_metadata",
    "read_image",
    "resample_to_grid",
    "to_sitk",
    "write_image",
]

log = logging.getLogger(__name__)

#: File name endings read and written by SimpleITK here (``.mhd``/``.nhdr`` keep their
#: voxel data in a second file).
IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
_DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
#: Interfile headers (:mod:`mcdose.io.interfile`); an Analyze ``.hdr`` goes to SimpleITK
INTERFILE_SUFFIXES = (".hdr", ".h33")
_SERIES_TOLERANCE_MM = 0.01


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in sorted(IMAGE_SUFFIXES + _DICOM_SUFFIXES + INTERFILE_SUFFIXES, key=len,
                         reverse=True):
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


def is_dicom_input(path: str | os.PathLike[str]) -> bool:
    """True for a folder or a file not named like NIfTI / NRRD / MetaImage / Interfile."""
    path = Path(path)
    return path.is_dir() or _suffix(path) not in IMAGE_SUFFIXES + INTERFILE_SUFFIXES


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    # ITK messages start with the source location; the last line is the useful one
    return lines[-1] if lines else type(exc).__name__


# --------------------------------------------------------------------------------------
# SimpleITK <-> NumPy
# --------------------------------------------------------------------------------------


def to_sitk(array: Any, geometry: Geometry) -> sitk.Image:
    """A 3-D SimpleITK image of a ``(z, y, x)`` array (one copy) with ``geometry``.

    Boolean arrays become uint8 images.
    """
    arr = np.asarray(array)
    if arr.ndim != 3:
        raise InputError(f"expected a 3-D (z, y, x) array, got shape {arr.shape}")
    if arr.dtype == np.bool_:
        arr = arr.view(np.uint8)
    if arr.dtype.kind not in "fiu":
        raise InputError(f"unsupported image dtype {arr.dtype}")
    image = sitk.GetImageFromArray(arr, isVector=False)
    return geometry.apply_to_sitk(image)


def from_sitk(image: sitk.Image, dtype: Any = np.float32) -> tuple[np.ndarray, Geometry]:
    """``(array (z, y, x), Geometry)`` of a 2-D or 3-D scalar SimpleITK image.

    Parameters
    ----------
    image : SimpleITK.Image
        A 2-D image gives a single-slice volume.  A 4-D image with one time point is
        accepted.
    dtype : numpy dtype or None
        Output dtype; ``None`` keeps the image's pixel type.

    Returns
    -------
    array, Geometry
        A fresh array (one copy of the image buffer).
    """
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"expected a scalar image, got {image.GetNumberOfComponentsPerPixel()} components "
            f"per pixel"
        )
    dim = image.GetDimension()
    if dim == 4:
        size = image.GetSize()
        if size[3] != 1:
            raise InputError(f"expected a 3-D image, got a 4-D image with {size[3]} time points")
        image = sitk.Extract(image, (*size[:3], 0), (0, 0, 0, 0))
        dim = 3
    if dim not in (2, 3):
        raise InputError(f"expected a 2-D or 3-D image, got {dim}-D")
    geometry = Geometry.from_sitk(image)
    view = sitk.GetArrayViewFromImage(image)
    arr = np.array(view, dtype=dtype, copy=True)
    del view
    if arr.ndim == 2:
        arr = arr[None]
    return arr, geometry


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------


def _read_with_sitk(path: Path, dtype: Any) -> tuple[np.ndarray, Geometry]:
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(f"{path}: cannot read image ({_first_line(exc)})") from None
    try:
        return from_sitk(image, dtype)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


def _series_positions(reader: sitk.ImageSeriesReader, n: int) -> np.ndarray | None:
    positions = []
    for i in range(n):
        if not reader.HasMetaDataKey(i, "0020|0032"):
            return None
        try:
            positions.append([float(v) for v in reader.GetMetaData(i, "0020|0032").split("\\")])
        except ValueError:
            return None
    return np.asarray(positions)


#: per-slice tags that must not change within a series: (tag, name, numeric tolerance)
_SERIES_CONSTANT_TAGS = (
    ("0028|0030", "PixelSpacing", 1e-4),
    ("0028|0010", "Rows", 0.0),
    ("0028|0011", "Columns", 0.0),
    ("0020|0037", "ImageOrientationPatient", 1e-4),
    ("0020|0052", "FrameOfReferenceUID", None),
)


def _check_series_consistency(folder: Path, reader: sitk.ImageSeriesReader, n: int) -> None:
    """Refuse a series whose slices disagree on spacing, size, orientation or frame."""
    for tag, name, tol in _SERIES_CONSTANT_TAGS:
        values = [reader.GetMetaData(i, tag).strip() if reader.HasMetaDataKey(i, tag) else None
                  for i in range(n)]
        present = [v for v in values if v is not None]
        if len(set(present)) <= 1:
            continue
        if tol is not None:
            try:
                arr = np.asarray([[float(x) for x in v.split("\\")] for v in present])
            except ValueError:
                arr = None
            if arr is not None and arr.ndim == 2 and np.max(np.ptp(arr, axis=0)) <= tol:
                continue
        distinct = sorted(set(present))
        raise InputError(
            f"{folder}: {name} changes within the DICOM series ({len(distinct)} different "
            f"values, e.g. {distinct[0]!r} and {distinct[-1]!r}); the slices do not form one "
            f"volume"
        )


def _read_dicom_series(folder: Path, files: list[str], dtype: Any) -> tuple[np.ndarray, Geometry]:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    if dtype is not None and np.dtype(dtype) == np.float32:
        reader.SetOutputPixelType(sitk.sitkFloat32)  # rescale applied per file, in float
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"{folder}: cannot read DICOM series ({_first_line(exc)})") from None
    _check_series_consistency(folder, reader, len(files))
    geometry = Geometry.from_sitk(image)
    positions = _series_positions(reader, len(files))
    if positions is not None and len(files) > 1:
        normal = geometry.direction_matrix[:, 2]
        steps = positions[1:] - positions[:-1]
        along = steps @ normal
        across = np.linalg.norm(steps - along[:, None] * normal[None, :], axis=1)
        spacing_z = geometry.spacing_mm[2]
        if np.max(across) > _SERIES_TOLERANCE_MM:
            raise InputError(
                f"{folder}: slice positions are not along the slice normal (gantry tilt "
                f"of {np.degrees(np.arctan2(across.max(), along.mean())):.2f} degrees is not "
                f"supported; resample the series first)"
            )
        if np.any(along <= 0) or np.max(np.abs(along - spacing_z)) > max(
            _SERIES_TOLERANCE_MM, 1e-3 * spacing_z
        ):
            raise InputError(
                f"{folder}: DICOM slices are not evenly spaced (steps from "
                f"{along.min():.4g} to {along.max():.4g} mm; missing or duplicate slices?)"
            )
    return from_sitk(image, dtype)


def _dicom_header(path: Path) -> Any:
    import pydicom

    try:
        return pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{path}: cannot read DICOM file ({exc})") from None


def _read_dicom_file(path: Path, dtype: Any, header: Any) -> tuple[np.ndarray, Geometry]:
    nframes = int(header.get("NumberOfFrames", 1) or 1)
    if nframes > 1:
        arr, geometry, info = read_multiframe(path)
        log.debug("%s: multi-frame DICOM read by pydicom: %s", path, info)
        if dtype is not None and arr.dtype != np.dtype(dtype):
            arr = arr.astype(dtype)
        return arr, geometry
    return _read_with_sitk(path, dtype)


def _read_hdr(path: Path, dtype: Any) -> tuple[np.ndarray, Geometry]:
    """An Interfile header (mcdose.io.interfile), else an Analyze 7.5 pair (SimpleITK)."""
    from mcdose.io.interfile import is_interfile, read_interfile

    if is_interfile(path):
        arr, geometry, info = read_interfile(path, dtype)
        log.debug("%s: Interfile read: %s", path, info)
        return arr, geometry
    check_spacing_present(path)
    return _read_with_sitk(path, dtype)


def read_image(
    path: str | os.PathLike[str],
    *,
    dtype: Any = np.float32,
    check_finite: bool = True,
) -> tuple[np.ndarray, Geometry]:
    """Read a 3-D image and its geometry.

    Parameters
    ----------
    path : path-like
        NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``), MetaImage (``.mha``,
        ``.mhd``), Interfile (``.hdr`` + ``.img``, :mod:`mcdose.io.interfile`; an Analyze
        ``.hdr`` goes to SimpleITK), a single DICOM file, or a folder holding one DICOM
        image series (several series are refused).  CT values come out in HU (each file's
        RescaleSlope/Intercept applied); multi-frame NM/SPECT files come out in their
        real-world units (see :mod:`mcdose.io.dicom`).
    dtype : numpy dtype or None, optional
        Output dtype, float32 by default; ``None`` keeps the stored type (labels).
    check_finite : bool, optional
        Refuse NaN / infinity in floating-point images (float NIfTI files are scanned on
        disk, since ITK's NIfTI reader turns NaN into 0; see :mod:`mcdose.io.checks`).

    Returns
    -------
    array : numpy.ndarray
        ``(z, y, x)``; a 2-D image gives one slice.
    geometry : Geometry
        Spacing and origin ``(x, y, z)`` in mm, direction cosines.

    Raises
    ------
    InputError
        Missing path, unknown format, folder without DICOM, unreadable file, voxel
        spacing not stated in the header (SimpleITK would assume 1 mm), unevenly spaced or
        tilted DICOM series, non-finite values (``"<path>: image contains <n> non-finite
        value(s)"``).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        series = find_dicom_series(path)
        if not series:
            raise InputError(f"{path}: folder holds no DICOM series (subfolders are not searched)")
        if len(series) > 1:
            listing = "; ".join(f"{uid} ({len(f)} file{'s' if len(f) > 1 else ''})"
                                for uid, f in series[:4])
            raise InputError(
                f"{path}: folder holds {len(series)} DICOM image series ({listing}"
                f"{'; ...' if len(series) > 4 else ''}); give a folder with one series"
            )
        files = series[0][1]
        header = _dicom_header(Path(files[0]))
        check_spacing_present(path, dicom_header=header)
        if len(files) == 1:
            arr, geometry = _read_dicom_file(Path(files[0]), dtype, header)
        else:
            arr, geometry = _read_dicom_series(path, files, dtype)
    else:
        suffix = _suffix(path)
        if suffix in IMAGE_SUFFIXES:
            check_image_file(path)  # truncation, gzip magic (mcdose.io.nifti)
            check_spacing_present(path)
            arr, geometry = _read_with_sitk(path, dtype)
            if check_finite:
                check_finite_file(path)  # NIfTI: ITK reads NaN as 0, so ask the file
        elif suffix in INTERFILE_SUFFIXES:
            arr, geometry = _read_hdr(path, dtype)
        elif is_dicom_file(path):
            header = _dicom_header(path)
            check_spacing_present(path, dicom_header=header)
            arr, geometry = _read_dicom_file(path, dtype, header)
        else:
            raise InputError(
                f"{path}: unknown image format (expected {', '.join(IMAGE_SUFFIXES)}, a DICOM "
                f"file or a DICOM folder)"
            )
    if check_finite:
        check_finite_array(arr, path)
    return arr, geometry


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def write_image(
    path: str | os.PathLike[str],
    array: Any,
    geometry: Geometry,
    *,
    compress: bool = True,
    description: str | None = None,
) -> Path:
    """Write a ``(z, y, x)`` array with its geometry, atomically; format from the suffix.

    Parameters
    ----------
    path : path-like
        ``.nii``, ``.nii.gz``, ``.nrrd``, ``.nhdr``, ``.mha`` or ``.mhd``.  Two-file formats
        (``.mhd``, ``.nhdr``) are written in a temporary folder and moved data file first,
        header last, so a reader never sees a header without its data.
    array : array-like
        3-D array, stored in its own dtype (bool as uint8).
    geometry : Geometry
        Spacing / origin in mm, direction.
    compress : bool, optional
        Compress where the format allows (``.nii`` never, ``.nii.gz`` always).
    description : str, optional
        One line stored in the header (NIfTI ``descrip``, 79 characters; NRRD/MHA
        ``ITK_FileNotes``), e.g. the quantity and its unit.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InputError
        Unknown suffix, missing folder, non-3-D array, invalid geometry.
    """
    path = Path(path)
    suffix = _suffix(path)
    if suffix not in IMAGE_SUFFIXES:
        raise InputError(f"{path}: cannot write this format (use {', '.join(IMAGE_SUFFIXES)})")
    if not path.parent.is_dir():
        raise InputError(f"{path}: output folder does not exist")
    if not isinstance(geometry, Geometry):
        raise InputError(f"{path}: geometry must be a Geometry, got {type(geometry).__name__}")
    image = to_sitk(array, geometry)
    if description:
        image.SetMetaData("ITK_FileNotes", str(description)[:79])
    if suffix in (".mhd", ".nhdr"):
        _write_two_files(path, image, compress)
        return path
    with atomic_path(path) as tmp:
        try:
            sitk.WriteImage(image, str(tmp), useCompression=compress)
        except RuntimeError as exc:
            raise InputError(f"{path}: cannot write image ({_first_line(exc)})") from None
    return path


def _write_two_files(path: Path, image: sitk.Image, compress: bool) -> None:
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        try:
            sitk.WriteImage(image, str(tmpdir / path.name), useCompression=compress)
        except RuntimeError as exc:
            raise InputError(f"{path}: cannot write image ({_first_line(exc)})") from None
        header = tmpdir / path.name
        for item in sorted(tmpdir.iterdir()):
            if item != header:
                os.replace(item, path.parent / item.name)
        os.replace(header, path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


# --------------------------------------------------------------------------------------
# Resampling
# --------------------------------------------------------------------------------------


def resample_to_grid(
    array: Any,
    geometry: Geometry,
    target_geometry: Geometry,
    target_shape: tuple[int, int, int],
    interpolation: str = "linear",
    default_value: float = 0.0,
) -> np.ndarray:
    """Resample a volume onto another grid (physical coordinates, ``sitk.Resample``).

    Used to put the CT (HU, ``"linear"``, ``default_value=-1000``) and the labels
    (``"nearest"``, ``default_value=0``) on the SPECT grid.

    Parameters
    ----------
    array : array-like (z, y, x)
        Volume on ``geometry``.
    geometry : Geometry
        Grid of ``array`` (mm).
    target_geometry : Geometry
        Output grid (mm).
    target_shape : tuple of 3 int
        Output shape ``(z, y, x)``.
    interpolation : {"linear", "nearest"}
        Trilinear (output float32) or nearest neighbour (output keeps ``array``'s dtype,
        so integer labels stay integer).
    default_value : float
        Value of output voxels whose centre lies outside the input grid (in the units of
        ``array``).

    Returns
    -------
    numpy.ndarray
        ``target_shape`` array.

    Raises
    ------
    InputError
        Unknown interpolation, bad shapes, non-integral default for integer nearest.
    """
    if interpolation not in ("linear", "nearest"):
        raise InputError(f"interpolation must be 'linear' or 'nearest', got {interpolation!r}")
    try:
        shape = tuple(int(n) for n in target_shape)
    except (TypeError, ValueError):
        raise InputError(f"target_shape must be 3 integers (z, y, x), got {target_shape!r}"
                         ) from None
    if len(shape) != 3 or min(shape) < 1:
        raise InputError(f"target_shape must be 3 positive integers (z, y, x), got {shape}")
    arr = np.asarray(array)
    if arr.ndim != 3:
        raise InputError(f"expected a 3-D (z, y, x) array, got shape {arr.shape}")
    if not isinstance(geometry, Geometry) or not isinstance(target_geometry, Geometry):
        raise InputError("geometry and target_geometry must be Geometry objects")

    if interpolation == "nearest":
        out_dtype = arr.dtype
        if arr.dtype.kind in "iub" and float(default_value) != int(default_value):
            raise InputError(
                f"default_value {default_value!r} is not an integer, as the {arr.dtype} "
                f"array needs"
            )
        src = arr
        interpolator = sitk.sitkNearestNeighbor
    else:
        out_dtype = np.dtype(np.float32)
        src = arr.astype(np.float32, copy=False)
        interpolator = sitk.sitkLinear

    if tuple(arr.shape) == shape and geometry.allclose(target_geometry, atol_mm=1e-6,
                                                       atol_direction=1e-9):
        return np.array(arr, dtype=out_dtype, copy=True)

    image = to_sitk(src, geometry)
    del src
    result = sitk.Resample(
        image,
        (shape[2], shape[1], shape[0]),
        sitk.Transform(),
        interpolator,
        target_geometry.origin_mm,
        target_geometry.spacing_mm,
        target_geometry.direction,
        float(default_value),
        image.GetPixelID(),
    )
    del image
    out = np.array(sitk.GetArrayViewFromImage(result), copy=True)
    if out.dtype != out_dtype:
        out = out.view(out_dtype) if out_dtype == np.bool_ else out.astype(out_dtype)
    return out
