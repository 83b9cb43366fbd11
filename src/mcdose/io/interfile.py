"""Interfile images (``.hdr`` + ``.img``, as SPECT consoles, STIR and GATE write them).

An Interfile header is ASCII text of ``key := value`` lines starting with ``!INTERFILE``
(Interfile 3.3, Todd-Pokropek et al. 1992, Nucl. Med. Commun. 13:673; the STIR/GATE
extensions).  Keys are compared case-insensitively with the leading ``!`` and extra blanks
removed.  Read here:

* data: ``name of data file`` (relative to the header's folder), ``data offset in bytes``,
  ``imagedata byte order`` (``LITTLEENDIAN`` / ``BIGENDIAN``), ``number format``
  (``unsigned integer``, ``signed integer``, ``float``, ``short float``, ``long float``)
  with ``number of bytes per pixel``;
* size: ``matrix size [1]`` (columns, x), ``[2]`` (rows, y), ``[3]`` (slices) -- or the
  slice count from ``number of images/energy window``, ``total number of images`` or
  ``number of slices``;
* spacing (mm): ``scaling factor (mm/pixel) [1..3]``; for the slices also ``slice
  thickness (pixels)`` or ``centre-centre slice separation (pixels)`` (in units of
  ``scaling factor [1]``, Interfile 3.3).  A missing in-plane scaling is refused: there is
  no default voxel size;
* origin (mm): ``first pixel offset (mm) [1..3]`` (STIR), 0 when absent;
* values: ``data rescale slope`` / ``data rescale offset`` (STIR) and ``image scaling
  factor [1]`` multiply the stored values; ``quantification units`` is reported;
* orientation: ``patient orientation`` (``head_in`` / ``feet_in``) and ``patient rotation``
  (``supine`` / ``prone``).  A head-first supine image (and one without these keys) is read
  with the identity direction in DICOM patient coordinates (LPS: columns toward the
  patient's left, rows toward posterior, slices toward superior); feet-first turns the
  image by 180 degrees about the anterior-posterior axis (x and z reversed), prone by 180
  degrees about the long axis (x and y reversed).

Refused, one line naming the header: not an Interfile header, projection data (``number
of projections``, ``process status := acquired``), several time frames, bit data, a data
file missing or shorter than the header promises, non-finite values.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mcdose.errors import InputError
from mcdose.io.case import Geometry

__all__ = ["InterfileHeader", "is_interfile", "read_interfile", "read_interfile_header"]

_MAGIC = "!interfile"
_FORMATS = {
    ("unsigned integer", 1): "u1", ("unsigned integer", 2): "u2",
    ("unsigned integer", 4): "u4", ("unsigned integer", 8): "u8",
    ("signed integer", 1): "i1", ("signed integer", 2): "i2", ("signed integer", 4): "i4",
    ("signed integer", 8): "i8", ("float", 4): "f4", ("float", 8): "f8",
    ("short float", 4): "f4", ("long float", 8): "f8",
}


def _normalise_key(key: str) -> str:
    key = key.strip().lstrip("!").strip().lower()
    key = re.sub(r"\s*\[\s*", " [", key)
    key = re.sub(r"\s*\]", "]", key)
    return re.sub(r"\s+", " ", key)


def is_interfile(path: str | os.PathLike[str]) -> bool:
    """True when the file starts (after blanks) with ``!INTERFILE``."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError:
        return False
    return head.lstrip().lower().startswith(_MAGIC.encode())


@dataclass(frozen=True)
class InterfileHeader:
    """What :func:`read_interfile` needs from a header (see the module docstring).

    Attributes
    ----------
    path, data_file : Path
    shape : tuple of 3 int
        ``(z, y, x)``.
    dtype : numpy.dtype
        Stored voxel type, with byte order.
    offset : int
        Bytes before the voxel data.
    geometry : Geometry
        Spacing / origin (mm), direction (LPS).
    slope, intercept : float
        Stored -> real value.
    units : str or None
        ``quantification units``.
    keys : dict
        Every key (normalised) -> value string.
    """

    path: Path
    data_file: Path
    shape: tuple[int, int, int]
    dtype: np.dtype
    offset: int
    geometry: Geometry
    slope: float = 1.0
    intercept: float = 0.0
    units: str | None = None
    keys: dict[str, str] = field(default_factory=dict)


def _parse(path: Path) -> dict[str, str]:
    try:
        text = path.read_bytes().decode("latin-1")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not text.lstrip().lower().startswith(_MAGIC):
        raise InputError(f"{path}: not an Interfile header (does not start with !INTERFILE)")
    keys: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split(";", 1)[0].strip()
        if ":=" not in line:
            continue
        k, v = line.split(":=", 1)
        k = _normalise_key(k)
        if k and k not in keys:
            keys[k] = v.strip()
        if k == "end of interfile":
            break
    return keys


def _number(keys: dict[str, str], key: str, path: Path, kind: type = float) -> Any:
    raw = keys.get(key)
    if raw is None or raw == "":
        return None
    raw = raw.strip("{} ")
    try:
        value = kind(float(raw)) if kind is int else float(raw)
    except ValueError:
        raise InputError(f"{path}: Interfile key '{key}' is {keys[key]!r}, not a number"
                         ) from None
    if not np.isfinite(value):
        raise InputError(f"{path}: Interfile key '{key}' is not finite ({keys[key]!r})")
    return value


def _positive(value: Any, key: str, path: Path) -> float:
    if value is None:
        raise InputError(f"{path}: Interfile key '{key}' is missing; refusing to assume a "
                         f"voxel size")
    if not value > 0:
        raise InputError(f"{path}: Interfile key '{key}' is {value}, must be > 0")
    return float(value)


def _direction(keys: dict[str, str], path: Path) -> tuple[float, ...]:
    orientation = keys.get("patient orientation", "head_in").strip().lower()
    rotation = keys.get("patient rotation", "supine").strip().lower()
    if orientation not in ("head_in", "feet_in"):
        raise InputError(f"{path}: patient orientation {orientation!r} is not head_in or "
                         f"feet_in")
    if rotation not in ("supine", "prone"):
        raise InputError(f"{path}: patient rotation {rotation!r} is not supine or prone")
    sx = sy = sz = 1.0
    if orientation == "feet_in":
        sx, sz = -sx, -sz
    if rotation == "prone":
        sx, sy = -sx, -sy
    return (sx, 0.0, 0.0, 0.0, sy, 0.0, 0.0, 0.0, sz)


def read_interfile_header(path: str | os.PathLike[str]) -> InterfileHeader:
    """Parse and check an Interfile image header (no voxel data read).

    Raises
    ------
    InputError
        Not Interfile, projections, several frames, unknown number format, missing matrix
        size or scaling, missing data file.
    """
    path = Path(path)
    keys = _parse(path)
    if "number of projections" in keys or keys.get("process status", "").lower() == "acquired":
        raise InputError(f"{path}: Interfile holds projections (acquired data), not a "
                         f"reconstructed image; reconstruct it first")
    frames = _number(keys, "number of time frames", path, int)
    if frames is not None and frames > 1:
        raise InputError(f"{path}: Interfile holds {frames} time frames; give one frame")
    fmt = keys.get("number format", "").strip().lower()
    nbytes = _number(keys, "number of bytes per pixel", path, int)
    if fmt == "bit":
        raise InputError(f"{path}: Interfile bit data is not supported")
    if nbytes is None:
        nbytes = {"short float": 4, "long float": 8, "float": 4}.get(fmt)
    code = _FORMATS.get((fmt, nbytes))
    if code is None:
        raise InputError(f"{path}: Interfile number format {fmt!r} with {nbytes} bytes per "
                         f"pixel is not supported")
    order = keys.get("imagedata byte order", "LITTLEENDIAN").strip().upper()
    if order not in ("LITTLEENDIAN", "BIGENDIAN"):
        raise InputError(f"{path}: imagedata byte order {order!r} is not LITTLEENDIAN or "
                         f"BIGENDIAN")
    dtype = np.dtype(("<" if order == "LITTLEENDIAN" else ">") + code)

    nx = _number(keys, "matrix size [1]", path, int)
    ny = _number(keys, "matrix size [2]", path, int)
    nz = _number(keys, "matrix size [3]", path, int)
    for alt in ("number of images/energy window", "total number of images",
                "number of slices"):
        if nz is None:
            nz = _number(keys, alt, path, int)
    if nx is None or ny is None:
        raise InputError(f"{path}: Interfile 'matrix size [1]' / '[2]' missing")
    nz = 1 if nz is None else nz
    if min(nx, ny, nz) < 1:
        raise InputError(f"{path}: Interfile matrix size {nx}x{ny}x{nz} is not positive")

    sx = _positive(_number(keys, "scaling factor (mm/pixel) [1]", path), "scaling factor "
                   "(mm/pixel) [1]", path)
    sy = _positive(_number(keys, "scaling factor (mm/pixel) [2]", path), "scaling factor "
                   "(mm/pixel) [2]", path)
    sz = _number(keys, "scaling factor (mm/pixel) [3]", path)
    if sz is None:
        for key in ("centre-centre slice separation (pixels)", "slice thickness (pixels)"):
            pixels = _number(keys, key, path)
            if pixels is not None:
                sz = pixels * sx
                break
    if sz is None:
        sz = _number(keys, "slice thickness (mm)", path)
    if sz is None and nz > 1:
        raise InputError(f"{path}: Interfile gives no slice spacing ('scaling factor "
                         f"(mm/pixel) [3]' or 'slice thickness (pixels)'); refusing to "
                         f"assume one")
    sz = _positive(sz if sz is not None else sx, "scaling factor (mm/pixel) [3]", path)

    origin = tuple(_number(keys, f"first pixel offset (mm) [{i}]", path) or 0.0
                   for i in (1, 2, 3))
    geometry = Geometry((sx, sy, sz), origin, _direction(keys, path))

    slope = _number(keys, "data rescale slope", path)
    intercept = _number(keys, "data rescale offset", path) or 0.0
    factor = _number(keys, "image scaling factor [1]", path)
    if factor is None:
        factor = _number(keys, "image scaling factor", path)
    slope = (1.0 if slope is None else slope) * (1.0 if factor is None else factor)
    if slope == 0:
        raise InputError(f"{path}: Interfile rescale slope is 0")

    name = keys.get("name of data file")
    if not name:
        raise InputError(f"{path}: Interfile 'name of data file' is missing")
    data_file = Path(name.replace("\\", "/"))
    if not data_file.is_absolute():
        data_file = path.parent / data_file
    if not data_file.is_file():
        raise InputError(f"{path}: its data file {data_file} is missing")
    offset = _number(keys, "data offset in bytes", path, int) or 0
    if offset < 0:
        raise InputError(f"{path}: Interfile data offset {offset} is negative")
    units = keys.get("quantification units") or None
    return InterfileHeader(path=path, data_file=data_file, shape=(nz, ny, nx), dtype=dtype,
                           offset=offset, geometry=geometry, slope=float(slope),
                           intercept=float(intercept), units=units, keys=keys)


def read_interfile(path: str | os.PathLike[str], dtype: Any = np.float32
                   ) -> tuple[np.ndarray, Geometry, dict[str, Any]]:
    """Read an Interfile image: ``(array (z, y, x), Geometry, info)``.

    Parameters
    ----------
    path : path-like
        The ``.hdr`` (or ``.h33``) header.
    dtype : numpy dtype or None
        Output dtype (float32 default); ``None`` keeps the stored type when no rescale is
        stated (labels).

    Returns
    -------
    array, Geometry, info
        Real values (stored x slope + intercept); ``info`` holds ``units``, ``slope``,
        ``intercept``, ``stored_dtype``.

    Raises
    ------
    InputError
        See :func:`read_interfile_header`; a data file shorter than the header promises.
    """
    h = read_interfile_header(path)
    n = int(np.prod(h.shape, dtype=np.int64))
    need = h.offset + n * h.dtype.itemsize
    have = h.data_file.stat().st_size
    if have < need:
        raise InputError(
            f"{h.path}: truncated Interfile data: {h.data_file.name} holds {have} bytes, the "
            f"header promises {need} ({h.shape[2]}x{h.shape[1]}x{h.shape[0]} of {h.dtype})"
        )
    raw = np.fromfile(h.data_file, dtype=h.dtype, count=n, offset=h.offset).reshape(h.shape)
    rescaled = h.slope != 1.0 or h.intercept != 0.0
    if dtype is None and not rescaled:
        arr = raw.astype(raw.dtype.newbyteorder("="), copy=False)
    else:
        out_dtype = np.float32 if dtype is None else dtype
        arr = raw.astype(out_dtype)
        if rescaled:
            arr *= np.asarray(h.slope, dtype=arr.dtype)
            arr += np.asarray(h.intercept, dtype=arr.dtype)
    info = {"units": h.units, "slope": h.slope, "intercept": h.intercept,
            "stored_dtype": str(h.dtype), "format": "interfile"}
    return np.ascontiguousarray(arr), h.geometry, info
