"""A small Interfile writer for the tests (``.hdr`` + ``.img``, the keys STIR/GATE write).

Only what :mod:`mcdose.io.interfile` reads; ``extra`` adds or overrides keys and ``drop``
removes them, so that the tests can build broken headers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

_FORMAT = {"u": "unsigned integer", "i": "signed integer", "f": "float"}


def write_interfile(
    path: str | Path,
    array: np.ndarray,
    spacing_mm: Sequence[float],
    *,
    origin_mm: Sequence[float] = (0.0, 0.0, 0.0),
    slope: float | None = None,
    intercept: float | None = None,
    big_endian: bool = False,
    orientation: str | None = None,
    rotation: str | None = None,
    units: str | None = None,
    offset: int = 0,
    extra: Mapping[str, str] | None = None,
    drop: Sequence[str] = (),
    data: bytes | None = None,
) -> Path:
    """Write ``array`` (z, y, x; stored as its dtype) as ``path`` (.hdr) + ``.img``.

    ``slope`` / ``intercept`` are written as ``data rescale slope`` / ``offset`` (the file
    stores ``array`` as given: real values = array * slope + intercept).  ``data`` replaces
    the voxel bytes (truncated files).  Returns the header path.
    """
    path = Path(path)
    arr = np.asarray(array)
    nz, ny, nx = arr.shape
    img = path.with_suffix(".img")
    dtype = arr.dtype.newbyteorder(">" if big_endian else "<")
    raw = b"\0" * offset + (arr.astype(dtype).tobytes() if data is None else data)
    img.write_bytes(raw)
    keys: dict[str, str] = {
        "!imaging modality": "nucmed",
        "!version of keys": "3.3",
        "name of data file": img.name,
        "data offset in bytes": str(offset),
        "!type of data": "Tomographic",
        "imagedata byte order": "BIGENDIAN" if big_endian else "LITTLEENDIAN",
        "!number format": _FORMAT[arr.dtype.kind],
        "!number of bytes per pixel": str(arr.dtype.itemsize),
        "number of dimensions": "3",
        "!matrix size [1]": str(nx),
        "!matrix size [2]": str(ny),
        "!matrix size [3]": str(nz),
        "scaling factor (mm/pixel) [1]": repr(float(spacing_mm[0])),
        "scaling factor (mm/pixel) [2]": repr(float(spacing_mm[1])),
        "scaling factor (mm/pixel) [3]": repr(float(spacing_mm[2])),
        "first pixel offset (mm) [1]": repr(float(origin_mm[0])),
        "first pixel offset (mm) [2]": repr(float(origin_mm[1])),
        "first pixel offset (mm) [3]": repr(float(origin_mm[2])),
    }
    if slope is not None:
        keys["data rescale slope"] = repr(float(slope))
    if intercept is not None:
        keys["data rescale offset"] = repr(float(intercept))
    if orientation is not None:
        keys["patient orientation"] = orientation
    if rotation is not None:
        keys["patient rotation"] = rotation
    if units is not None:
        keys["quantification units"] = units
    keys.update(extra or {})
    for key in drop:
        keys.pop(key, None)
    lines = ["!INTERFILE :=", "; written by tests/interfile_writer.py"]
    lines += [f"{k} := {v}" for k, v in keys.items()]
    lines.append("!END OF INTERFILE :=")
    path.write_text("\n".join(lines) + "\n")
    return path
