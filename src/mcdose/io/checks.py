"""Checks of image files that SimpleITK does not make: stated voxel spacing, non-finite voxels.

:func:`mcdose.io.images.read_image` applies them to every image it reads, so that no caller
gets a silently wrong volume:

* **missing spacing** -- SimpleITK substitutes 1 mm for a voxel spacing the file does not
  state (DICOM without ``PixelSpacing``; NIfTI ``pixdim`` 0; NRRD without
  ``space directions``/``spacings``; MetaImage without ``ElementSpacing``).  A dose computed
  on a wrong voxel size is wrong by the cube of the error, so the header itself is asked;
* **non-finite voxels in NIfTI** -- ITK's NIfTI reader turns NaN into 0 without a word
  (SimpleITK 2.5; NRRD and MetaImage keep NaN), so float NIfTI files are scanned directly,
  in bounded memory.  Arrays read from the other formats are checked after reading
  (:func:`count_nonfinite`).

Every refusal is an :class:`~mcdose.errors.InputError` with one line naming the file.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mcdose.errors import InputError

__all__ = [
    "NiftiHeader",
    "check_finite_array",
    "check_finite_file",
    "check_spacing_present",
    "count_nonfinite",
    "dicom_has_pixel_spacing",
    "read_dicom_header",
    "read_nifti_header",
]

#: bytes scanned at a time (file scan and array check)
_CHUNK_BYTES = 32 * 2**20
_NIFTI_SUFFIXES = (".nii", ".nii.gz")
_NRRD_SUFFIXES = (".nrrd", ".nhdr")
_META_SUFFIXES = (".mha", ".mhd")
#: NIfTI datatype code -> NumPy kind of the floating-point types (others cannot hold NaN)
_NIFTI_FLOAT_TYPES = {16: "f4", 64: "f8"}


def _lower_name(path: Path) -> str:
    return path.name.lower()


def _open_maybe_gzip(path: Path) -> Any:
    return gzip.open(path, "rb") if _lower_name(path).endswith(".gz") else open(path, "rb")


# --------------------------------------------------------------------------------------
# NIfTI
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NiftiHeader:
    """The fields of a NIfTI-1 or NIfTI-2 header that the checks need.

    Attributes
    ----------
    endian : str
        ``"<"`` or ``">"``.
    dims : tuple of int
        ``dim[1 : 1 + dim[0]]``, the array size (x, y, z, ...).
    datatype : int
        NIfTI datatype code (16 float32, 64 float64, ...).
    vox_offset : int
        Byte offset of the voxel data in the (uncompressed) file.
    pixdim : tuple of 3 float
        ``pixdim[1:4]``, the voxel spacing (mm for the usual ``xyzt_units``).
    header_size : int
        348 (NIfTI-1) or 540 (NIfTI-2).
    ndim_stored : int
        ``dim[0]`` as stored (``dims`` is cut to 1–7 of them).
    bitpix : int
        Bits per voxel as stored.
    """

    endian: str
    dims: tuple[int, ...]
    datatype: int
    vox_offset: int
    pixdim: tuple[float, float, float]
    header_size: int = 348
    ndim_stored: int = 3
    bitpix: int = 0


def _parse_nifti_header(head: bytes) -> NiftiHeader | None:
    if len(head) < 348:
        return None
    for endian in ("<", ">"):
        size = struct.unpack(endian + "i", head[:4])[0]
        if size == 348:
            dim = struct.unpack(endian + "8h", head[40:56])
            datatype = struct.unpack(endian + "h", head[70:72])[0]
            bitpix = struct.unpack(endian + "h", head[72:74])[0]
            pixdim = struct.unpack(endian + "3f", head[80:92])
            offset = struct.unpack(endian + "f", head[108:112])[0]
        elif size == 540 and len(head) >= 540:
            datatype = struct.unpack(endian + "h", head[12:14])[0]
            bitpix = struct.unpack(endian + "h", head[14:16])[0]
            dim = struct.unpack(endian + "8q", head[16:80])
            pixdim = struct.unpack(endian + "3d", head[112:136])
            offset = struct.unpack(endian + "q", head[168:176])[0]
        else:
            continue
        ndim = max(1, min(7, int(dim[0])))
        vox_offset = int(offset) if math.isfinite(offset) else 0
        return NiftiHeader(
            endian=endian,
            dims=tuple(int(d) for d in dim[1 : 1 + ndim]),
            datatype=int(datatype),
            vox_offset=max(vox_offset, 0),
            pixdim=(float(pixdim[0]), float(pixdim[1]), float(pixdim[2])),
            header_size=int(size),
            ndim_stored=int(dim[0]),
            bitpix=int(bitpix),
        )
    return None


def read_nifti_header(path: str | os.PathLike[str]) -> NiftiHeader | None:
    """The header of a ``.nii`` / ``.nii.gz`` file, or None when it is not a readable NIfTI."""
    try:
        with _open_maybe_gzip(Path(path)) as fh:
            head = fh.read(540)
    except (OSError, EOFError, gzip.BadGzipFile):
        return None
    return _parse_nifti_header(head)


def _nifti_nonfinite(path: Path) -> int:
    """Non-finite voxels stored in a float NIfTI file (0 for integer data), read in chunks."""
    header = read_nifti_header(path)
    if header is None:
        return 0
    kind = _NIFTI_FLOAT_TYPES.get(header.datatype)
    if kind is None:
        return 0
    dtype = np.dtype(header.endian + kind)
    remaining = int(np.prod([max(1, d) for d in header.dims], dtype=np.int64))
    per_chunk = max(1, _CHUNK_BYTES // dtype.itemsize)
    bad = 0
    try:
        with _open_maybe_gzip(path) as fh:
            fh.seek(header.vox_offset)
            while remaining > 0:
                raw = fh.read(min(remaining, per_chunk) * dtype.itemsize)
                n = len(raw) // dtype.itemsize
                if n == 0:
                    break  # truncated file: the reader reports it
                data = np.frombuffer(raw, dtype=dtype, count=n)
                bad += int(np.count_nonzero(~np.isfinite(data)))
                remaining -= n
    except (OSError, EOFError, gzip.BadGzipFile):
        return bad
    return bad


# --------------------------------------------------------------------------------------
# NRRD / MetaImage text headers
# --------------------------------------------------------------------------------------


def _text_header(path: Path, limit: int = 65536) -> list[str]:
    """The ASCII header lines of an NRRD or MetaImage file (up to the first blank line)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(limit)
    except OSError:
        return []
    lines = []
    for line in raw.split(b"\n"):
        if not line.strip():
            break  # NRRD: header ends at the first blank line
        try:
            lines.append(line.decode("ascii", errors="strict").strip())
        except UnicodeDecodeError:
            break
    return lines


def _header_keys(path: Path, separator: str) -> set[str]:
    return {ln.split(separator, 1)[0].strip().lower() for ln in _text_header(path)
            if separator in ln}


# --------------------------------------------------------------------------------------
# DICOM
# --------------------------------------------------------------------------------------


def read_dicom_header(path: str | os.PathLike[str]) -> Any | None:
    """pydicom header (no pixels) of a DICOM file, or of the first file of the largest
    series in a folder; None when there is no readable DICOM."""
    import pydicom

    from mcdose.io.dicom import find_dicom_series, is_dicom_file

    path = Path(path)
    if path.is_dir():
        series = find_dicom_series(path)
        if not series:
            return None
        first = Path(series[0][1][0])
    elif is_dicom_file(path):
        first = path
    else:
        return None
    try:
        return pydicom.dcmread(first, stop_before_pixels=True, force=True)
    except Exception:  # noqa: BLE001 - the reader reports unreadable files itself
        return None


def dicom_has_pixel_spacing(ds: Any) -> bool:
    """True when a DICOM header states ``PixelSpacing`` (top level or functional groups)."""
    if ds.get("PixelSpacing") is not None:
        return True
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        seq = ds.get(groups)
        if seq:
            measures = seq[0].get("PixelMeasuresSequence")
            if measures and measures[0].get("PixelSpacing") is not None:
                return True
    return False


# --------------------------------------------------------------------------------------
# the checks
# --------------------------------------------------------------------------------------


def check_spacing_present(path: str | os.PathLike[str], *, dicom_header: Any = None) -> None:
    """Refuse an image file whose voxel spacing is not stated (or is zero / negative).

    Parameters
    ----------
    path : path-like
        DICOM file or folder, NIfTI, NRRD/NHDR or MetaImage file.
    dicom_header : pydicom.Dataset, optional
        The header of a DICOM ``path`` when the caller has read it already (else it is read
        here; for a folder, the first file of its largest series).

    Raises
    ------
    InputError
        ``"<path>: voxel spacing is missing (<what the header lacks>); ..."``.
    """
    path = Path(path)
    name = _lower_name(path)
    detail = ""
    if name.endswith(_NIFTI_SUFFIXES) and path.is_file():
        header = read_nifti_header(path)
        if header is not None and not all(math.isfinite(v) and v > 0 for v in header.pixdim):
            detail = f"NIfTI pixdim[1:4] = {tuple(round(v, 6) for v in header.pixdim)}"
    elif name.endswith(_NRRD_SUFFIXES) and path.is_file():
        keys = _header_keys(path, ":")
        if keys and not ({"space directions", "spacings"} & keys):
            detail = "no 'space directions' or 'spacings' in the NRRD header"
    elif name.endswith(_META_SUFFIXES) and path.is_file():
        keys = _header_keys(path, "=")
        if keys and not ({"elementspacing", "elementsize"} & keys):
            detail = "no ElementSpacing in the MetaImage header"
    else:
        ds = dicom_header if dicom_header is not None else read_dicom_header(path)
        if ds is not None and not dicom_has_pixel_spacing(ds):
            detail = "no PixelSpacing in the DICOM header"
    if detail:
        raise InputError(f"{path}: voxel spacing is missing ({detail}); refusing to assume "
                         f"1 mm, which would scale the dose wrongly")


def check_finite_file(path: str | os.PathLike[str]) -> None:
    """Refuse a NIfTI file holding NaN or infinity (which SimpleITK would read as 0).

    Other formats are left to :func:`check_finite_array` on the array read.

    Raises
    ------
    InputError
        ``"<path>: image contains <n> non-finite value(s)"``.
    """
    path = Path(path)
    if path.is_file() and _lower_name(path).endswith(_NIFTI_SUFFIXES):
        _raise_nonfinite(_nifti_nonfinite(path), path)


def count_nonfinite(array: np.ndarray) -> int:
    """NaN and infinite values of an array (0 for integer arrays), counted slab by slab."""
    arr = np.asarray(array)
    if arr.dtype.kind not in "fc":
        return 0
    if arr.ndim == 0 or arr.shape[0] == 0:
        return int(np.count_nonzero(~np.isfinite(arr)))
    step = max(1, _CHUNK_BYTES // max(1, arr[0].nbytes))
    return sum(int(np.count_nonzero(~np.isfinite(arr[i : i + step])))
               for i in range(0, arr.shape[0], step))


def check_finite_array(array: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Refuse an array read from ``path`` that holds NaN or infinity.

    Raises
    ------
    InputError
        ``"<path>: image contains <n> non-finite value(s)"``.
    """
    _raise_nonfinite(count_nonfinite(array), Path(path))


def _raise_nonfinite(bad: int, path: Path) -> None:
    if bad:
        raise InputError(f"{path}: image contains {bad} non-finite value(s)")
