"""Integrity of NIfTI and MetaImage files before SimpleITK reads them.

SimpleITK 2.5 reads a truncated ``.nii`` or ``.nii.gz`` as if it were whole (the missing
voxels come out 0: half the activity of a SPECT can vanish without a word), reads an
uncompressed file named ``.nii.gz`` (and our NaN scan would then miss it), and reports a
truncated MetaImage as "No such file or directory".  :func:`check_image_file` asks the file
itself:

* **gzip magic** -- a name ending in ``.gz`` must start with the gzip magic bytes
  ``1f 8b`` (RFC 1952, section 2.3.1) and a ``.nii`` / ``.mha`` must not; a mismatch is
  refused with the name it should have;
* **NIfTI size** -- the voxel data must hold ``prod(dim[1:dim[0]+1]) * bitpix / 8`` bytes
  after ``vox_offset`` (NIfTI-1 standard, ``nifti1.h``); a ``.nii.gz`` is decompressed as
  a stream (bounded memory) until that many bytes have come out, and a stream that ends
  early or is corrupt is refused;
* **MetaImage size** -- the uncompressed data (``ElementDataFile = LOCAL`` after the
  header, or a separate raw file) must hold ``prod(DimSize) * ElementNumberOfChannels *
  sizeof(ElementType)`` bytes.

:func:`stored_pixel_type` tells the stored voxel type without reading the voxels (used to
refuse CT numbers stored in 8 bits, which cannot hold HU).

Every refusal is an :class:`~mcdose.errors.InputError` with one line naming the file.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np

from mcdose.errors import InputError

__all__ = ["GZIP_MAGIC", "check_image_file", "nifti_expected_bytes", "stored_pixel_type"]

#: first two bytes of every gzip stream (RFC 1952)
GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 8 * 2**20

#: MetaImage ElementType -> bytes per value
_MET_BYTES = {
    "MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4,
    "MET_UINT": 4, "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8,
    "MET_FLOAT": 4, "MET_DOUBLE": 8,
}


def _name(path: Path) -> str:
    return path.name.lower()


def _head(path: Path, n: int) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _check_gzip_magic(path: Path) -> bool:
    """True when the file is gzip-compressed; refuse a name that says otherwise."""
    head = _head(path, 2)
    compressed = head == GZIP_MAGIC
    name = _name(path)
    if name.endswith(".gz") and not compressed:
        raise InputError(
            f"{path}: named .gz but not gzip-compressed (no gzip magic bytes 1f 8b); rename "
            f"it to {path.name[:-3]}"
        )
    if name.endswith((".nii", ".mha", ".mhd")) and compressed:
        raise InputError(f"{path}: gzip-compressed but not named .gz; rename it to "
                         f"{path.name}.gz")
    return compressed


def _decompressed_size(path: Path) -> tuple[int, bool]:
    """Decompress a gzip file as a stream (bounded memory): (bytes out, stream complete).

    "Complete" means the deflate stream ended and its trailer (CRC-32, size; RFC 1952
    section 2.3.1) was present.
    """
    out = 0
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        with open(path, "rb") as fh:
            while not d.eof:
                chunk = fh.read(_CHUNK)
                if not chunk:
                    break
                out += len(d.decompress(chunk, _CHUNK))
                while d.unconsumed_tail and not d.eof:
                    out += len(d.decompress(d.unconsumed_tail, _CHUNK))
            if not d.eof:
                out += len(d.flush())
    except zlib.error as exc:
        raise InputError(f"{path}: cannot read, corrupt gzip data ({exc})") from None
    return out, bool(d.eof)


# --------------------------------------------------------------------------------------
# NIfTI
# --------------------------------------------------------------------------------------


def nifti_expected_bytes(head: bytes) -> tuple[int, int] | None:
    """``(vox_offset, data bytes)`` from a NIfTI-1/-2 header, None if it is not one.

    The offset is at least the header's own end (352 / 544 bytes, as readers assume).
    """
    from mcdose.io.checks import _parse_nifti_header

    h = _parse_nifti_header(head)
    if h is None or not 1 <= h.ndim_stored <= 7 or h.bitpix <= 0 or h.bitpix % 8:
        return None
    offset = max(h.vox_offset, 352 if h.header_size == 348 else 544)
    n = 1
    for d in h.dims:
        n *= max(int(d), 1)
    return offset, n * h.bitpix // 8


def _check_nifti(path: Path) -> None:
    compressed = _check_gzip_magic(path)
    if compressed:
        import gzip

        try:
            with gzip.open(path, "rb") as fh:
                head = fh.read(540)
        except (OSError, EOFError) as exc:
            raise InputError(f"{path}: cannot read, corrupt gzip data ({exc})") from None
    else:
        head = _head(path, 540)
    expected = nifti_expected_bytes(head)
    if expected is None:
        return  # not a NIfTI header: SimpleITK reports it
    offset, nbytes = expected
    needed = offset + nbytes
    complete = True
    if compressed:
        have, complete = _decompressed_size(path)
    else:
        have = path.stat().st_size
    if have >= needed and not complete:
        raise InputError(f"{path}: truncated gzip file (the stream ends without its CRC "
                         f"trailer); refusing an image whose integrity cannot be checked")
    if have < needed:
        got = max(have - offset, 0)
        raise InputError(
            f"{path}: truncated NIfTI file: the header promises {nbytes} bytes of voxel data, "
            f"the file holds {got} ({100.0 * got / max(nbytes, 1):.1f} %); refusing to read "
            f"missing voxels as 0"
        )


# --------------------------------------------------------------------------------------
# MetaImage
# --------------------------------------------------------------------------------------


def _meta_header(path: Path) -> tuple[dict[str, str], int]:
    """MetaImage header keys and the byte offset just after the ElementDataFile line."""
    raw = _head(path, 65536)
    keys: dict[str, str] = {}
    offset = 0
    for line in raw.split(b"\n"):
        offset += len(line) + 1
        try:
            text = line.decode("ascii").strip()
        except UnicodeDecodeError:
            break
        if "=" not in text:
            continue
        k, v = text.split("=", 1)
        keys[k.strip().lower()] = v.strip()
        if k.strip().lower() == "elementdatafile":
            break
    return keys, offset


def _check_meta(path: Path) -> None:
    _check_gzip_magic(path)
    keys, offset = _meta_header(path)
    if "dimsize" not in keys or "elementtype" not in keys:
        return
    if keys.get("compresseddata", "false").lower() == "true":
        return  # zlib stream: ITK reports a short stream itself
    try:
        dims = [int(v) for v in keys["dimsize"].split()]
        channels = int(keys.get("elementnumberofchannels", "1"))
    except ValueError:
        raise InputError(f"{path}: MetaImage DimSize {keys['dimsize']!r} is not integers"
                         ) from None
    per = _MET_BYTES.get(keys["elementtype"].upper())
    if per is None:
        return
    nbytes = int(np.prod(dims, dtype=np.int64)) * channels * per
    data_file = keys.get("elementdatafile", "LOCAL")
    if data_file.upper() == "LOCAL":
        have = path.stat().st_size - offset
        where = path
    else:
        where = path.parent / data_file
        if not where.is_file():
            raise InputError(f"{path}: its data file {where.name} is missing")
        have = where.stat().st_size
    if have < nbytes:
        raise InputError(
            f"{path}: truncated MetaImage: the header promises {nbytes} bytes of voxel data, "
            f"{where.name} holds {max(have, 0)}"
        )


def check_image_file(path: str | os.PathLike[str]) -> None:
    """Refuse a NIfTI or MetaImage file that is truncated or misnamed as to compression.

    Other formats pass unchecked.

    Raises
    ------
    InputError
        ``"<path>: truncated NIfTI file: ..."``, ``"<path>: named .gz but not
        gzip-compressed ..."``, ``"<path>: truncated MetaImage ..."``.
    """
    path = Path(path)
    if not path.is_file():
        return
    name = _name(path)
    if name.endswith((".nii", ".nii.gz")):
        _check_nifti(path)
    elif name.endswith((".mha", ".mhd")):
        _check_meta(path)


def stored_pixel_type(path: str | os.PathLike[str]) -> np.dtype | None:
    """NumPy dtype of the voxels as stored in an image file (no voxel data read).

    Returns None when SimpleITK cannot tell (DICOM folders, unknown formats).
    """
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    names = {
        sitk.sitkInt8: np.int8, sitk.sitkUInt8: np.uint8, sitk.sitkInt16: np.int16,
        sitk.sitkUInt16: np.uint16, sitk.sitkInt32: np.int32, sitk.sitkUInt32: np.uint32,
        sitk.sitkInt64: np.int64, sitk.sitkUInt64: np.uint64, sitk.sitkFloat32: np.float32,
        sitk.sitkFloat64: np.float64,
    }
    kind = names.get(reader.GetPixelID())
    return np.dtype(kind) if kind is not None else None
