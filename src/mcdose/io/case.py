"""Case files: one HDF5 file per patient or phantom, shared by every stage.

A case file holds the voxel grid (:class:`Geometry`), the nuclide and the voxel datasets of
one case (see ``ARCHITECTURE.md``, "Public contract")::

    /                      attrs: schema="mcdose-case", schema_version=1,
                                  spacing_mm (x, y, z), origin_mm (x, y, z),
                                  direction (9, row-major 3x3), nuclide, provenance (JSON), ...
    density                g/cm³            float32 (z, y, x)
    activity               MBq per voxel    float32
    spect                  MBq per voxel    float32
    labels                 integer          int16/int32, attr ``names`` (JSON value -> name)
    dose/mc, dose/vdk, dose/mc_spect, dose/cnn
                           Gy/s             float32, attrs method, nuclide, histories, seed,
                                            software_version, params (JSON), provenance (JSON)
    dose/mc_uncertainty    1 (relative)     float32

Storage layout
--------------
Voxel datasets are chunked by axial slice, ``chunks=(1, ny, nx)``, and compressed with LZF,
so that a reader streams slices (``ds[z0:z1]`` touches only those chunks) and a validator
holds one slab in memory at a time.  Measured on a 130x512x512 float32 array (136 MB;
2 shared cores; write includes fsync, read from the page cache; best of 3):

=====================  =========================  =========================
array                  no compression             LZF
=====================  =========================  =========================
density (piecewise)    write 0.19 s, read 0.09 s  write 0.24 s, read 0.24 s, 1.3 % size
dose, 0 outside body   write 0.20 s, read 0.05 s  write 0.58 s, read 0.40 s, 35 % size
dose, > 0 everywhere   write 0.36 s, read 0.35 s  write 1.7 s, read 0.7 s, 85 % size
=====================  =========================  =========================

LZF is used for every dataset: density, labels and activity maps shrink 50-100x at no
cost, dose maps by 1.2-3x for about a second per write; smaller files also make the copy
that every atomic :func:`write_datasets` makes cheaper.  (gzip level 1 compresses only
slightly better and writes 3-5x slower than LZF.)

Atomicity
---------
Files are never modified in place.  :func:`create_case` writes a temporary file next to the
destination and renames it; :func:`write_datasets` copies the case to a temporary file
(a plain file copy when datasets are only added; a rebuild that copies every other object
when datasets are replaced, so the file does not grow with dead space), writes, fsyncs and
renames it over the original.  A stage killed mid-write leaves the original case
byte-identical (and at worst a hidden ``.*.tmp.h5`` file that no reader opens).  One writer
per case at a time: of two processes adding datasets to the same case concurrently, the
later rename would drop the other's addition (campaigns run one stage per case at a time).

HDF5 file locking is turned off (``locking=False``) because no file is ever written while
another process may read it, and locking fails on some cluster file systems (NFS, Lustre).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mcdose.errors import CaseFileError, InputError
from mcdose.io.atomic import atomic_path
from mcdose.io.jsonio import json_default, json_dict

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "DOSE_DATASETS",
    "CaseInfo",
    "Geometry",
    "create_case",
    "dose_attrs",
    "open_case",
    "read_case_info",
    "read_dataset",
    "read_label_names",
    "read_slices",
    "source_fingerprint",
    "stage_done",
    "validate_case",
    "write_datasets",
]

SCHEMA = "mcdose-case"
SCHEMA_VERSION = 1

#: Dose-rate datasets named by the contract (Gy/s).
DOSE_DATASETS = ("dose/mc", "dose/vdk", "dose/mc_spect", "dose/cnn")
#: Datasets on the case grid that hold non-negative floating-point values.  Every dataset
#: under ``dose/`` (including ``dose/mc_uncertainty``) is treated the same way.
NON_NEGATIVE_DATASETS = ("density", "activity", "spect")
LABELS = "labels"

_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
_RESERVED_ROOT_ATTRS = frozenset(
    {"schema", "schema_version", "spacing_mm", "origin_mm", "direction", "nuclide"}
)
_JSON_ATTRS = frozenset({"params", "provenance", "names"})
#: Bytes of one slab read or written at a time by the streaming checks and writers.
_SLAB_BYTES = 32 * 2**20
#: HDF5 chunk cache per open file: a few 512x512 float32 slices.
_CHUNK_CACHE_BYTES = 16 * 2**20
_DIRECTION_TOLERANCE = 1e-3


# --------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------


def _float_triple(value: Any, what: str) -> tuple[float, float, float]:
    try:
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be 3 numbers (x, y, z), got {value!r}") from None
    if arr.size != 3:
        raise InputError(f"{what} must be 3 numbers (x, y, z), got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{what} must be finite, got {tuple(arr.tolist())}")
    return (float(arr[0]), float(arr[1]), float(arr[2]))


@dataclass(frozen=True)
class Geometry:
    """The voxel grid of a volume, as SimpleITK describes it.

    The centre of voxel ``(i, j, k)`` (array index ``[k, j, i]``) lies at
    ``origin_mm + D @ (spacing_mm * (i, j, k))`` with ``D`` the direction matrix.

    Parameters
    ----------
    spacing_mm : sequence of 3 float
        Voxel size along x, y, z in mm; positive and finite.
    origin_mm : sequence of 3 float, optional
        Physical position of the centre of the first voxel, (x, y, z) in mm.
    direction : sequence of 9 float, optional
        Direction cosines, a row-major 3x3 matrix whose columns are the x, y, z axes of the
        array in patient coordinates (SimpleITK's ``GetDirection()``); must be orthonormal
        to within 1e-3.  Identity by default.

    Raises
    ------
    InputError
        Non-positive or non-finite spacing, non-finite origin, non-orthonormal direction.
    """

    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = _IDENTITY

    def __post_init__(self) -> None:
        spacing = _float_triple(self.spacing_mm, "spacing_mm")
        if min(spacing) <= 0.0:
            raise InputError(f"spacing_mm must be positive, got {spacing}")
        origin = _float_triple(self.origin_mm, "origin_mm")
        try:
            d = np.asarray(self.direction, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise InputError(f"direction must be 9 numbers, got {self.direction!r}") from None
        if d.size != 9 or not np.all(np.isfinite(d)):
            raise InputError(f"direction must be 9 finite numbers, got {d.size} values")
        m = d.reshape(3, 3)
        err = float(np.max(np.abs(m.T @ m - np.eye(3))))
        if err > _DIRECTION_TOLERANCE:
            raise InputError(
                f"direction must be an orthonormal 3x3 matrix (row-major), "
                f"deviation {err:.3g}: {tuple(d.tolist())}"
            )
        object.__setattr__(self, "spacing_mm", spacing)
        object.__setattr__(self, "origin_mm", origin)
        object.__setattr__(self, "direction", tuple(float(v) for v in d))

    @property
    def voxel_volume_cm3(self) -> float:
        """Volume of one voxel in cm³."""
        sx, sy, sz = self.spacing_mm
        return sx * sy * sz * 1e-3

    @property
    def voxel_volume_mm3(self) -> float:
        """Volume of one voxel in mm³."""
        sx, sy, sz = self.spacing_mm
        return sx * sy * sz

    @property
    def direction_matrix(self) -> np.ndarray:
        """Direction cosines as a 3x3 float64 array (columns = array x, y, z axes)."""
        return np.asarray(self.direction, dtype=np.float64).reshape(3, 3)

    @property
    def affine(self) -> np.ndarray:
        """4x4 matrix mapping the homogeneous index ``(i, j, k, 1)`` (x, y, z order) to mm."""
        a = np.eye(4)
        a[:3, :3] = self.direction_matrix * np.asarray(self.spacing_mm)[None, :]
        a[:3, 3] = self.origin_mm
        return a

    def index_to_physical(self, index_xyz: Any) -> np.ndarray:
        """Physical position in mm of continuous indices ``(..., 3)`` given in (x, y, z) order."""
        idx = np.asarray(index_xyz, dtype=np.float64)
        a = self.affine
        return idx @ a[:3, :3].T + a[:3, 3]

    def allclose(self, other: Geometry, *, atol_mm: float = 1e-3, atol_direction: float = 1e-5
                 ) -> bool:
        """True when ``other`` describes the same grid to within ``atol_mm`` (mm)."""
        return bool(
            np.allclose(self.spacing_mm, other.spacing_mm, rtol=0.0, atol=atol_mm)
            and np.allclose(self.origin_mm, other.origin_mm, rtol=0.0, atol=atol_mm)
            and np.allclose(self.direction, other.direction, rtol=0.0, atol=atol_direction)
        )

    # -- SimpleITK -----------------------------------------------------------------------

    @classmethod
    def from_sitk(cls, image: Any) -> Geometry:
        """Geometry of a 2-D or 3-D SimpleITK image (a 2-D image gets z spacing 1 mm).

        Parameters
        ----------
        image : SimpleITK.Image
            Any object with ``GetSpacing``, ``GetOrigin``, ``GetDirection`` and
            ``GetDimension``.
        """
        dim = image.GetDimension()
        spacing, origin, direction = image.GetSpacing(), image.GetOrigin(), image.GetDirection()
        if dim == 3:
            return cls(spacing, origin, direction)
        if dim == 2:
            d = direction
            return cls(
                (spacing[0], spacing[1], 1.0),
                (origin[0], origin[1], 0.0),
                (d[0], d[1], 0.0, d[2], d[3], 0.0, 0.0, 0.0, 1.0),
            )
        raise InputError(f"expected a 2-D or 3-D image, got {dim}-D")

    def apply_to_sitk(self, image: Any) -> Any:
        """Set spacing, origin and direction of a 3-D SimpleITK image in place; return it."""
        if image.GetDimension() != 3:
            raise InputError(f"expected a 3-D image, got {image.GetDimension()}-D")
        image.SetSpacing(self.spacing_mm)
        image.SetOrigin(self.origin_mm)
        image.SetDirection(self.direction)
        return image

    # -- HDF5 attributes -----------------------------------------------------------------

    def to_attrs(self) -> dict[str, np.ndarray]:
        """Root attributes ``spacing_mm``, ``origin_mm``, ``direction`` (float64 arrays)."""
        return {
            "spacing_mm": np.asarray(self.spacing_mm, dtype=np.float64),
            "origin_mm": np.asarray(self.origin_mm, dtype=np.float64),
            "direction": np.asarray(self.direction, dtype=np.float64),
        }

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> Geometry:
        """Inverse of :meth:`to_attrs`; a missing origin / direction defaults to 0 / identity.

        Raises
        ------
        InputError
            Missing or invalid ``spacing_mm``; invalid origin or direction.
        """
        if "spacing_mm" not in attrs:
            raise InputError("attribute 'spacing_mm' is missing")
        return cls(
            attrs["spacing_mm"],
            attrs.get("origin_mm", (0.0, 0.0, 0.0)),
            attrs.get("direction", _IDENTITY),
        )


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------


def _to_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=json_default)


def _canonical(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples -> lists, numpy scalars -> Python)."""
    return json.loads(_to_json(obj))


def _encode_attr(key: str, value: Any) -> Any:
    """HDF5-storable form of an attribute value (dicts and mixed lists become JSON)."""
    if key in _JSON_ATTRS and not isinstance(value, str):
        return _to_json(value)
    if isinstance(value, Mapping):
        return _to_json(value)
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
                         for v in value):
            return np.asarray(value)
        return _to_json(list(value))
    if isinstance(value, Path):
        return str(value)
    return value


def _decode_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "OSU":
            return [_decode_attr(v) for v in value.tolist()]
        return value.tolist()
    return value


def _set_attrs(obj: h5py.HLObject, attrs: Mapping[str, Any]) -> None:
    for key, value in attrs.items():
        if value is None:
            if key in obj.attrs:
                del obj.attrs[key]
            continue
        obj.attrs[key] = _encode_attr(key, value)


def _normalise_name(name: str) -> str:
    if not isinstance(name, str):
        raise InputError(f"dataset name must be a string, got {type(name).__name__}")
    clean = name.strip().strip("/")
    parts = clean.split("/")
    if not clean or any(p in ("", ".", "..") for p in parts):
        raise InputError(f"invalid dataset name {name!r}")
    return clean


def _is_grid_dataset(name: str) -> bool:
    return name in NON_NEGATIVE_DATASETS or name == LABELS or name.startswith("dose/")


def _is_non_negative(name: str) -> bool:
    return name in NON_NEGATIVE_DATASETS or name.startswith("dose/")


def _slab_size(shape: tuple[int, ...], itemsize: int) -> int:
    per_slice = max(1, itemsize * int(np.prod(shape[1:], dtype=np.int64)))
    return max(1, _SLAB_BYTES // per_slice)


def _first_index(mask: np.ndarray, z0: int) -> tuple[int, ...]:
    idx = np.unravel_index(int(np.argmax(mask)), mask.shape)
    return (int(idx[0]) + z0, *(int(i) for i in idx[1:]))


def _check_values(block: np.ndarray, name: str, path: Path | str, z0: int = 0) -> None:
    """Raise CaseFileError if ``block`` (slices ``z0:``) is non-finite or negative."""
    if block.dtype.kind == "f":
        finite = np.isfinite(block)
        if not finite.all():
            bad = ~finite
            raise CaseFileError(
                f"{path}: dataset '{name}' contains {int(bad.sum())} non-finite value(s) "
                f"in slices {z0}..{z0 + block.shape[0] - 1}, first at (z, y, x) = "
                f"{_first_index(bad, z0)}"
            )
        del finite
    if name == "density" and block.size:
        from mcdose.io.limits import MAX_DENSITY_G_CM3

        hi = float(np.max(block))
        if hi > MAX_DENSITY_G_CM3:
            raise CaseFileError(
                f"{path}: dataset 'density' holds {hi:.4g} g/cm3 in slices "
                f"{z0}..{z0 + block.shape[0] - 1}, above {MAX_DENSITY_G_CM3} g/cm3 (osmium, "
                f"the densest element)"
            )
    if _is_non_negative(name) and block.dtype.kind in "fi":
        neg = block < 0
        if neg.any():
            first = _first_index(neg, z0)
            raise CaseFileError(
                f"{path}: dataset '{name}' contains {int(neg.sum())} negative value(s) in "
                f"slices {z0}..{z0 + block.shape[0] - 1}, first at (z, y, x) = {first}: "
                f"{float(block[(first[0] - z0, *first[1:])])!r}"
            )


def _check_array_values(arr: np.ndarray, name: str, path: Path | str, z_offset: int = 0
                        ) -> None:
    """Value checks on an in-memory array, slab by slab (bounded temporaries)."""
    if arr.ndim == 0 or arr.shape[0] == 0:
        return
    step = _slab_size(arr.shape, arr.dtype.itemsize)
    for z0 in range(0, arr.shape[0], step):
        _check_values(arr[z0 : z0 + step], name, path, z0 + z_offset)


def _parse_label_names(raw: Any, path: Path | str) -> dict[int, str]:
    text = _decode_attr(raw)
    try:
        data = json.loads(text) if isinstance(text, str) else None
    except json.JSONDecodeError as exc:
        raise CaseFileError(
            f"{path}: dataset 'labels' attribute 'names' is not valid JSON ({exc.msg})"
        ) from None
    if not isinstance(data, dict):
        raise CaseFileError(
            f"{path}: dataset 'labels' attribute 'names' must be a JSON object "
            f"mapping label value to name"
        )
    try:
        return {int(k): str(v) for k, v in data.items()}
    except (TypeError, ValueError):
        raise CaseFileError(
            f"{path}: dataset 'labels' attribute 'names' has a key that is not an integer"
        ) from None


def _label_names_json(label_names: Mapping[Any, Any] | None) -> str:
    names: dict[str, str] = {}
    for key, value in (label_names or {}).items():
        try:
            k = int(key)
        except (TypeError, ValueError):
            raise InputError(f"label_names keys must be integers, got {key!r}") from None
        if not isinstance(value, str) or not value:
            raise InputError(f"label_names[{k}] must be a non-empty string, got {value!r}")
        names[str(k)] = value
    return json.dumps(dict(sorted(names.items(), key=lambda kv: int(kv[0]))))


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":  # pragma: no cover - directories cannot be fsynced on Windows
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _h5open(path: Path | str, mode: str) -> h5py.File:
    return h5py.File(path, mode, locking=False, rdcc_nbytes=_CHUNK_CACHE_BYTES)


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseInfo:
    """What a case file holds, without its voxel data.

    Attributes
    ----------
    path : Path
        The case file.
    geometry : Geometry
        Voxel grid (spacing / origin in mm).
    nuclide : str
        Nuclide name as stored (e.g. ``"Lu-177"``).
    shape : tuple of 3 int or None
        Grid shape ``(z, y, x)``, from ``density`` (or the first grid dataset present);
        ``None`` only for a case without any grid dataset.
    datasets : tuple of str
        Every dataset, full names sorted (``"density"``, ``"dose/mc"``, ...).
    attrs : dict
        Root attributes other than schema, geometry and nuclide, decoded to Python values
        (``provenance`` stays a JSON string; see :attr:`provenance`).
    schema_version : int
        Version of the case-file layout.
    """

    path: Path
    geometry: Geometry
    nuclide: str
    shape: tuple[int, int, int] | None
    datasets: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def has(self, name: str) -> bool:
        """True when dataset ``name`` (e.g. ``"dose/mc"``) is present."""
        return _normalise_name(name) in self.datasets

    @property
    def provenance(self) -> dict[str, Any]:
        """Root ``provenance`` attribute parsed from JSON (empty when absent or invalid)."""
        return json_dict(self.attrs.get("provenance"))


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise CaseFileError(f"{path}: case file does not exist")
    if path.is_dir():
        raise CaseFileError(f"{path}: is a folder, not a case file")


@contextlib.contextmanager
def _open_checked(path: Path) -> Iterator[h5py.File]:
    _check_exists(path)
    try:
        f = _h5open(path, "r")
    except OSError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CaseFileError(f"{path}: not a readable HDF5 file ({reason})") from None
    with f:
        schema = _decode_attr(f.attrs.get("schema"))
        if schema != SCHEMA:
            raise CaseFileError(
                f"{path}: not an mcdose case file (root attribute 'schema' is {schema!r}, "
                f"expected {SCHEMA!r})"
            )
        yield f


def _list_datasets(f: h5py.File) -> list[str]:
    names: list[str] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            names.append(name)

    f.visititems(visit)
    return sorted(names)


def _info_from_file(f: h5py.File, path: Path) -> CaseInfo:
    attrs = f.attrs
    version = _decode_attr(attrs.get("schema_version"))
    if not isinstance(version, int) or isinstance(version, bool):
        raise CaseFileError(f"{path}: root attribute 'schema_version' is missing or not an int")
    if version < 1:
        raise CaseFileError(f"{path}: case-file schema_version {version} is unknown (versions "
                            f"start at 1)")
    if version > SCHEMA_VERSION:
        raise CaseFileError(
            f"{path}: case-file schema_version {version} is newer than this mcdose "
            f"understands ({SCHEMA_VERSION}); upgrade mcdose"
        )
    if "spacing_mm" not in attrs:
        raise CaseFileError(f"{path}: root attribute 'spacing_mm' is missing")
    try:
        geometry = Geometry.from_attrs({k: attrs[k] for k in ("spacing_mm", "origin_mm",
                                                              "direction") if k in attrs})
    except InputError as exc:
        raise CaseFileError(f"{path}: invalid geometry attributes: {exc}") from None
    nuclide = _decode_attr(attrs.get("nuclide"))
    if not isinstance(nuclide, str) or not nuclide.strip():
        raise CaseFileError(f"{path}: root attribute 'nuclide' is missing or empty")
    datasets = _list_datasets(f)
    shape: tuple[int, int, int] | None = None
    candidates = (["density"] if "density" in datasets else []) + [
        n for n in datasets if _is_grid_dataset(n)
    ]
    for name in candidates:
        shp = f[name].shape
        if len(shp) == 3:
            shape = (int(shp[0]), int(shp[1]), int(shp[2]))
            break
    extra = {k: _decode_attr(v) for k, v in attrs.items() if k not in _RESERVED_ROOT_ATTRS}
    return CaseInfo(
        path=path,
        geometry=geometry,
        nuclide=nuclide,
        shape=shape,
        datasets=tuple(datasets),
        attrs=extra,
        schema_version=version,
    )


def _get_dataset(f: h5py.File, name: str, path: Path, info: CaseInfo) -> h5py.Dataset:
    if name not in info.datasets:
        present = ", ".join(info.datasets) or "none"
        raise CaseFileError(f"{path}: dataset '{name}' is missing (present: {present})")
    ds = f[name]
    _check_dataset_header(ds, name, path, info.shape)
    return ds


def _check_dataset_header(ds: h5py.Dataset, name: str, path: Path,
                          shape: tuple[int, int, int] | None) -> None:
    """Shape and dtype checks of a grid dataset (no data read)."""
    if not _is_grid_dataset(name):
        return
    if ds.ndim != 3:
        raise CaseFileError(f"{path}: dataset '{name}' must be 3-D (z, y, x), got shape {ds.shape}")
    if shape is not None and tuple(ds.shape) != tuple(shape):
        raise CaseFileError(
            f"{path}: dataset '{name}' has shape {tuple(ds.shape)}, expected {tuple(shape)} "
            f"(z, y, x) like the other datasets"
        )
    kind = ds.dtype.kind
    if name == LABELS:
        if kind not in "iu":
            raise CaseFileError(f"{path}: dataset 'labels' must be integer, got {ds.dtype}")
    elif name == "density" and kind != "f":
        raise CaseFileError(
            f"{path}: dataset 'density' is stored as {ds.dtype}; a density (g/cm3) must be "
            f"floating point (integers truncate it; mcdose writes float32)"
        )
    elif kind not in "fiu":
        raise CaseFileError(f"{path}: dataset '{name}' must be numeric, got {ds.dtype}")


def _stream_check(ds: h5py.Dataset, name: str, path: Path) -> None:
    """Value checks of one dataset, reading slab by slab (bounded memory)."""
    if not _is_grid_dataset(name) or name == LABELS or ds.shape[0] == 0:
        return
    step = _slab_size(ds.shape, ds.dtype.itemsize)
    for z0 in range(0, ds.shape[0], step):
        _check_values(ds[z0 : z0 + step], name, path, z0)


def read_case_info(path: str | os.PathLike[str]) -> CaseInfo:
    """Read the geometry, nuclide and dataset list of a case file (no voxel data).

    Parameters
    ----------
    path : path-like
        Case file (``*.h5``).

    Returns
    -------
    CaseInfo

    Raises
    ------
    CaseFileError
        Missing file, not HDF5, wrong schema, missing/invalid spacing or nuclide.
    """
    path = Path(path)
    with _open_checked(path) as f:
        return _info_from_file(f, path)


@contextlib.contextmanager
def open_case(path: str | os.PathLike[str]) -> Iterator[h5py.File]:
    """Open a case file read-only for streaming access (``f["density"][z0:z1]``).

    The schema is checked on opening; voxel values are not (use :func:`read_slices` or
    :func:`read_dataset` for validated reads).  Datasets are chunked by axial slice, so
    reading a range of slices reads only those chunks.

    Parameters
    ----------
    path : path-like
        Case file.

    Yields
    ------
    h5py.File
        Opened read-only (16 MiB chunk cache, HDF5 file locking off).

    Raises
    ------
    CaseFileError
        Missing file, not HDF5 or wrong schema.
    """
    path = Path(path)
    with _open_checked(path) as f:
        yield f


def read_dataset(path: str | os.PathLike[str], name: str) -> np.ndarray:
    """Read one whole dataset, validated.

    Parameters
    ----------
    path : path-like
        Case file.
    name : str
        Dataset name, e.g. ``"density"`` (g/cm³), ``"activity"`` (MBq per voxel),
        ``"dose/mc"`` (Gy/s), ``"labels"``.

    Returns
    -------
    numpy.ndarray
        ``(z, y, x)`` array as stored (float32; labels int16/int32).

    Raises
    ------
    CaseFileError
        Missing dataset, shape differing from the case grid, non-finite values, negative
        density / activity / spect / dose.
    """
    path = Path(path)
    name = _normalise_name(name)
    with _open_checked(path) as f:
        info = _info_from_file(f, path)
        ds = _get_dataset(f, name, path, info)
        arr = ds[()]
    if _is_grid_dataset(name) and name != LABELS:
        _check_array_values(arr, name, path)
    return arr


def read_slices(path: str | os.PathLike[str], name: str, z0: int, z1: int) -> np.ndarray:
    """Read axial slices ``z0:z1`` of a grid dataset, validated.

    Parameters
    ----------
    path : path-like
        Case file.
    name : str
        Dataset name (units as in :func:`read_dataset`).
    z0, z1 : int
        First and one-past-last slice, ``0 <= z0 <= z1 <= nz``.

    Returns
    -------
    numpy.ndarray
        ``(z1 - z0, ny, nx)`` array.

    Raises
    ------
    InputError
        Slice range outside the grid.
    CaseFileError
        As :func:`read_dataset`, for the slices read.
    """
    path = Path(path)
    name = _normalise_name(name)
    with _open_checked(path) as f:
        info = _info_from_file(f, path)
        ds = _get_dataset(f, name, path, info)
        nz = ds.shape[0] if ds.ndim else 0
        z0, z1 = int(z0), int(z1)
        if not 0 <= z0 <= z1 <= nz:
            raise InputError(f"{path}: slice range {z0}:{z1} outside dataset '{name}' (0:{nz})")
        arr = ds[z0:z1]
    if _is_grid_dataset(name) and name != LABELS:
        _check_array_values(arr, name, path, z0)
    return arr


def read_label_names(path: str | os.PathLike[str]) -> dict[int, str]:
    """Label value -> name mapping stored with the ``labels`` dataset.

    Returns
    -------
    dict of int to str
        Empty when the ``names`` attribute is absent.

    Raises
    ------
    CaseFileError
        No ``labels`` dataset, or ``names`` is not a JSON object of integer keys.
    """
    path = Path(path)
    with _open_checked(path) as f:
        info = _info_from_file(f, path)
        ds = _get_dataset(f, LABELS, path, info)
        if "names" not in ds.attrs:
            return {}
        return _parse_label_names(ds.attrs["names"], path)


def read_dataset_attrs(path: str | os.PathLike[str], name: str) -> dict[str, Any]:
    """Attributes of dataset ``name`` (JSON strings stay strings; arrays become lists).

    Raises
    ------
    CaseFileError
        The file is not a case file or has no dataset ``name``.
    """
    path = Path(path)
    with _open_checked(path) as f:
        info = _info_from_file(f, path)
        ds = _get_dataset(f, _normalise_name(name), path, info)
        return {k: _decode_attr(v) for k, v in ds.attrs.items()}


def validate_case(
    path: str | os.PathLike[str],
    require: Iterable[str] = ("density",),
    *,
    check_values: bool = True,
) -> CaseInfo:
    """Check a whole case file and return its :class:`CaseInfo`.

    Checks the schema and geometry attributes, that every name in ``require`` is present,
    that every grid dataset (``density``, ``activity``, ``spect``, ``labels``, ``dose/*``)
    has the grid shape and a proper dtype, that label names are valid JSON, and (with
    ``check_values``) that float datasets are finite and density / activity / spect / dose
    are non-negative.  Values are read slab by slab (about 32 MiB at a time), so a
    512x512x350 case validates in bounded memory.  Other datasets are not checked.

    Parameters
    ----------
    path : path-like
        Case file.
    require : iterable of str, optional
        Datasets that must be present.
    check_values : bool, optional
        Read the voxel values (finite, non-negative).  ``False`` checks headers only.

    Returns
    -------
    CaseInfo

    Raises
    ------
    CaseFileError
        The first problem found, as one line naming the file and dataset.
    """
    path = Path(path)
    require = [require] if isinstance(require, str) else list(require)
    with _open_checked(path) as f:
        info = _info_from_file(f, path)
        for name in require:
            _get_dataset(f, _normalise_name(name), path, info)
        for name in info.datasets:
            if not _is_grid_dataset(name):
                continue
            ds = f[name]
            _check_dataset_header(ds, name, path, info.shape)
            if name == LABELS and "names" in ds.attrs:
                _parse_label_names(ds.attrs["names"], path)
            if check_values:
                _stream_check(ds, name, path)
    return info


def stage_done(path: str | os.PathLike[str], name: str, params: Mapping[str, Any]) -> bool:
    """True when dataset ``name`` exists and was written with the same ``params``.

    Parameters are compared after a JSON round trip (tuples equal lists, numpy scalars
    equal Python numbers); the dataset's values are not read.

    Parameters
    ----------
    path : path-like
        Case file.
    name : str
        Output dataset of the stage, e.g. ``"dose/mc"``.
    params : dict
        The stage's parameters, as it would store them in the ``params`` attribute.

    Raises
    ------
    CaseFileError
        The case file is missing or invalid.
    """
    path = Path(path)
    name = _normalise_name(name)
    with _open_checked(path) as f:
        if name not in f or not isinstance(f[name], h5py.Dataset):
            return False
        stored = _json_or_raw(f[name].attrs.get("params"))
    return bool(stored == _canonical(dict(params)))


def _json_or_raw(value: Any) -> Any:
    """An attribute parsed from JSON; the attribute itself when it is not JSON text."""
    value = _decode_attr(value)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def source_fingerprint(path: str | os.PathLike[str], name: str) -> dict[str, Any]:
    """What identifies the contents of dataset ``name``, for the parameters of a stage
    computed from it.

    A stage that reads a dataset written by an earlier stage (``dose/vdk`` and
    ``dose/mc_spect`` from ``spect``, ``dose/mc`` from ``activity``) puts this into its
    own ``params``, so that :func:`stage_done` sees a recomputed source as a change and
    the stage runs again.  The values are not read.

    Parameters
    ----------
    path : path-like
        Case file.
    name : str
        Source dataset, e.g. ``"spect"``.

    Returns
    -------
    dict
        ``dataset`` (the name), ``params`` (the source's own ``params`` attribute, parsed
        from JSON; None without one) and ``created_utc`` (of the source's ``provenance``,
        else of the case's root ``provenance``, for datasets written with the case by
        :func:`create_case`; None without either).  All None but ``dataset`` when the
        case has no such dataset.

    Raises
    ------
    CaseFileError
        The case file is missing or invalid.
    """
    path = Path(path)
    name = _normalise_name(name)
    out: dict[str, Any] = {"dataset": name, "params": None, "created_utc": None}
    with _open_checked(path) as f:
        if name not in f or not isinstance(f[name], h5py.Dataset):
            return out
        attrs = f[name].attrs
        out["params"] = _json_or_raw(attrs.get("params"))
        for raw in (attrs.get("provenance"), f.attrs.get("provenance")):
            created = json_dict(_decode_attr(raw)).get("created_utc")
            if created:
                out["created_utc"] = str(created)
                break
    return _canonical(out)


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def dose_attrs(
    method: str,
    nuclide: str,
    params: Mapping[str, Any],
    *,
    histories: int | None = None,
    seed: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The standard attributes of a ``dose/*`` dataset, ready for :func:`write_datasets`.

    Parameters
    ----------
    method : str
        ``"mc"``, ``"vdk"``, ``"cnn"``, ...
    nuclide : str
        Nuclide of the dose rate.
    params : dict
        Stage parameters (stored as JSON, compared by :func:`stage_done`).
    histories, seed : int, optional
        Monte Carlo histories and seed; omitted when ``None`` (e.g. for the VDK).
    **extra
        Further attributes (``units`` etc.).

    Returns
    -------
    dict
        ``method``, ``nuclide``, ``histories``, ``seed``, ``software_version``, ``params``
        (JSON), ``provenance`` (JSON, from :func:`mcdose.provenance.provenance`).
    """
    from mcdose import __version__
    from mcdose.provenance import provenance

    out: dict[str, Any] = {
        "method": method,
        "nuclide": nuclide,
        "software_version": __version__,
        "params": _to_json(dict(params)),
        "provenance": _to_json(provenance(method=method, seed=seed, histories=histories)),
    }
    if histories is not None:
        out["histories"] = int(histories)
    if seed is not None:
        out["seed"] = int(seed)
    out.update(extra)
    return out


def _prepare(name: str, value: Any, grid: tuple[int, int, int] | None, path: Path
             ) -> tuple[np.ndarray, np.dtype]:
    """Check a dataset to be written (cheap checks only) and choose its stored dtype."""
    arr = np.asarray(value)
    if not _is_grid_dataset(name):
        if arr.dtype.kind in "OU":
            raise InputError(f"{path}: dataset '{name}' has unsupported dtype {arr.dtype}")
        return arr, arr.dtype
    if arr.ndim != 3:
        raise CaseFileError(f"{path}: dataset '{name}' must be 3-D (z, y, x), got shape "
                            f"{arr.shape}")
    if grid is not None and tuple(arr.shape) != tuple(grid):
        raise CaseFileError(
            f"{path}: dataset '{name}' has shape {arr.shape}, expected {tuple(grid)} (z, y, x) "
            f"like the other datasets"
        )
    if name == LABELS:
        if arr.dtype.kind == "b":
            return arr, np.dtype(np.int16)
        if arr.dtype.kind not in "iu":
            raise CaseFileError(f"{path}: dataset 'labels' must be integer, got {arr.dtype}")
        if arr.size == 0:
            return arr, np.dtype(np.int16)
        info16 = np.iinfo(np.int16)
        lo, hi = int(arr.min()), int(arr.max())
        if info16.min <= lo and hi <= info16.max:
            return arr, np.dtype(np.int16)
        info32 = np.iinfo(np.int32)
        if info32.min <= lo and hi <= info32.max:
            return arr, np.dtype(np.int32)
        raise CaseFileError(f"{path}: dataset 'labels' values {lo}..{hi} do not fit in int32")
    if arr.dtype.kind not in "fiub":
        raise CaseFileError(f"{path}: dataset '{name}' must be numeric, got {arr.dtype}")
    return arr, np.dtype(np.float32)


def _write_array(f: h5py.File, name: str, arr: np.ndarray, dtype: np.dtype, path: Path) -> None:
    """Create dataset ``name`` and fill it slab by slab (values checked on the way)."""
    if arr.ndim == 3 and arr.shape[0] > 0 and arr.shape[1] > 0 and arr.shape[2] > 0:
        ds = f.create_dataset(
            name, shape=arr.shape, dtype=dtype, chunks=(1, arr.shape[1], arr.shape[2]),
            compression="lzf",
        )
        step = _slab_size(arr.shape, max(arr.dtype.itemsize, dtype.itemsize))
        for z0 in range(0, arr.shape[0], step):
            block = arr[z0 : z0 + step]
            if _is_grid_dataset(name) and name != LABELS:
                _check_values(block, name, path, z0)
            ds[z0 : z0 + block.shape[0]] = block.astype(dtype, copy=False)
    else:
        if _is_grid_dataset(name) and name != LABELS:
            _check_array_values(arr, name, path)
        f.create_dataset(name, data=arr.astype(dtype, copy=False))


def _copy_except(src: h5py.Group, dst: h5py.Group, skip: set[str]) -> None:
    """Copy every object of ``src`` into ``dst`` except the full names in ``skip``."""
    for key, value in src.attrs.items():
        dst.attrs[key] = value
    for key in src:
        obj = src[key]
        full = obj.name.lstrip("/")
        if full in skip:
            continue
        if isinstance(obj, h5py.Group) and any(s.startswith(full + "/") for s in skip):
            _copy_except(obj, dst.create_group(key), skip)
        else:
            src.copy(obj, dst, name=key)


def _check_name_conflicts(names: Iterable[str], existing: set[str], groups: set[str],
                          path: Path) -> None:
    new = set(names)
    for name in new:
        parts = name.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent in existing or parent in new:
                raise CaseFileError(
                    f"{path}: cannot write dataset '{name}': '{parent}' is a dataset"
                )
        if name in groups:
            raise CaseFileError(f"{path}: cannot write dataset '{name}': it is a group")


def _group_names(f: h5py.File) -> set[str]:
    groups: set[str] = set()

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Group):
            groups.add(name)

    f.visititems(visit)
    return groups


_ALLOW_FOREIGN: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "mcdose_allow_foreign_replacement", default=False)


def foreign_datasets(path: str | os.PathLike[str], names: Any = None) -> list[str]:
    """``dose/*`` datasets of a case that mcdose did not write (no ``params`` and no
    ``provenance`` attribute), among ``names`` (default all)."""
    path = Path(path)
    out = []
    with _open_checked(path) as f:
        candidates = _list_datasets(f) if names is None else [
            _normalise_name(n) for n in names]
        for name in candidates:
            if not name.startswith("dose/") or name not in f:
                continue
            attrs = f[name].attrs
            if "params" not in attrs and "provenance" not in attrs:
                out.append(name)
    return out


@contextlib.contextmanager
def replacing_foreign_datasets() -> Iterator[None]:
    """Within this block :func:`write_datasets` may replace datasets mcdose did not write
    (what ``--force`` asks for); outside it such a replacement is refused."""
    token = _ALLOW_FOREIGN.set(True)
    try:
        yield
    finally:
        _ALLOW_FOREIGN.reset(token)


def write_datasets(
    path: str | os.PathLike[str],
    datasets: Mapping[str, Any],
    attrs: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """Add or replace datasets (and attributes) of a case file, atomically.

    The case is copied to a temporary file in the same folder, the datasets are written
    (slab by slab, values checked on the way), the file is fsynced and renamed over the
    original.  Any error, or the process dying, leaves the original byte-identical.

    Parameters
    ----------
    path : path-like
        Existing case file.
    datasets : mapping of str to array-like
        ``{name: array}``.  Grid datasets (``density`` g/cm³, ``activity`` / ``spect`` MBq
        per voxel, ``labels``, ``dose/*`` Gy/s) must have the case shape ``(z, y, x)``;
        they are stored float32 (labels int16, or int32 when needed), chunked by slice,
        LZF-compressed.  Other names are stored as given.
    attrs : mapping of str to dict, optional
        ``{name: {key: value}}`` attributes for new or existing datasets or groups; the
        name ``"/"`` addresses the root (schema, geometry and nuclide attributes cannot be
        changed).  Dicts and mixed lists are stored as JSON strings, as are ``params`` and
        ``provenance`` always; ``None`` deletes the key.  A new dataset without a
        ``provenance`` attribute gets one from :func:`mcdose.provenance.provenance`.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    CaseFileError
        Invalid case file; wrong shape or dtype; non-finite or negative values; name
        conflicts; attributes for an object that does not exist.
    InputError
        Invalid dataset names or reserved root attributes.
    """
    from mcdose.provenance import provenance

    path = Path(path)
    new = {_normalise_name(k): v for k, v in datasets.items()}
    attr_map: dict[str, dict[str, Any]] = {}
    for target, values in (attrs or {}).items():
        key = "/" if target.strip() in ("", "/") else _normalise_name(target)
        attr_map.setdefault(key, {}).update(dict(values))
    if attr_map.get(LABELS, {}).get("names") is not None:
        names = attr_map[LABELS]["names"]
        if isinstance(names, str):
            names = _parse_label_names(names, path)
        attr_map[LABELS]["names"] = _label_names_json(names)
    reserved = _RESERVED_ROOT_ATTRS.intersection(attr_map.get("/", {}))
    if reserved:
        raise InputError(f"{path}: root attribute(s) {sorted(reserved)} cannot be changed")

    with _open_checked(path) as f:
        info = _info_from_file(f, path)
        groups = _group_names(f)
    existing = set(info.datasets)
    _check_name_conflicts(new, existing - set(new), groups, path)

    grid = info.shape  # the grid of a case never changes, even when density is replaced
    prepared: dict[str, tuple[np.ndarray, np.dtype]] = {}
    for name, value in new.items():
        arr, dtype = _prepare(name, value, grid, path)
        if grid is None and _is_grid_dataset(name):
            grid = (int(arr.shape[0]), int(arr.shape[1]), int(arr.shape[2]))
        prepared[name] = (arr, dtype)
    for target in attr_map:
        if target != "/" and target not in existing and target not in groups and not any(
            n == target or n.startswith(target + "/") for n in prepared
        ):
            raise CaseFileError(f"{path}: cannot set attributes of '{target}': no such dataset")

    replaced = {n for n in prepared if n in existing}
    if replaced and not _ALLOW_FOREIGN.get():
        foreign = foreign_datasets(path, sorted(replaced))
        if foreign:
            raise CaseFileError(
                f"{path}: dataset '{foreign[0]}' was not written by mcdose (no 'params' or "
                f"'provenance' attribute); refusing to replace it (--force replaces it)"
            )
    stamp = _to_json(provenance())
    with atomic_path(path, copy_existing=not replaced) as tmp:
        if replaced:
            with _open_checked(path) as src, _h5open(tmp, "w") as dst:
                _copy_except(src, dst, replaced)
            shutil.copymode(path, tmp)
        with _h5open(tmp, "r+") as out:
            for name, (arr, dtype) in prepared.items():
                _write_array(out, name, arr, dtype, path)
                if "provenance" not in attr_map.get(name, {}):
                    out[name].attrs["provenance"] = stamp
            for target, values in attr_map.items():
                _set_attrs(out if target == "/" else out[target], values)
            out.flush()
        _fsync_file(tmp)
    _fsync_dir(path.parent)
    return path


def create_case(
    path: str | os.PathLike[str],
    *,
    geometry: Geometry,
    nuclide: str,
    density: Any,
    activity: Any = None,
    labels: Any = None,
    label_names: Mapping[int, str] | None = None,
    attrs: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    spect: Any = None,
    provenance: Mapping[str, Any] | None = None,
) -> Path:
    """Write a new case file (atomically).

    Parameters
    ----------
    path : path-like
        Destination ``*.h5``; its folder must exist.
    geometry : Geometry
        Voxel grid (spacing / origin in mm).
    nuclide : str
        Nuclide, normalised by :func:`mcdose.nuclides.normalize_nuclide_name`
        (``"lu177"`` -> ``"Lu-177"``).
    density : array-like (z, y, x)
        Mass density in g/cm³, finite and non-negative.
    activity : array-like (z, y, x), optional
        Activity in MBq per voxel.
    labels : integer array-like (z, y, x), optional
        Organ / lesion labels (0 = background).
    label_names : dict of int to str, optional
        Label value -> name, stored as JSON in the ``names`` attribute of ``labels``.
    attrs : dict, optional
        Extra root attributes (free; dicts are stored as JSON).
    overwrite : bool, optional
        Replace an existing file.
    spect : array-like (z, y, x), optional
        SPECT-reconstructed activity in MBq per voxel.
    provenance : dict, optional
        Stored as the root ``provenance`` JSON; default
        :func:`mcdose.provenance.provenance` ``()``.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    CaseFileError
        File exists (without ``overwrite``), shape mismatch, invalid values.
    InputError
        Invalid geometry, nuclide or label names; missing output folder.
    """
    from mcdose.provenance import provenance as make_provenance

    path = Path(path)
    if not isinstance(geometry, Geometry):
        raise InputError(f"{path}: geometry must be a mcdose.io.case.Geometry, got "
                         f"{type(geometry).__name__}")
    if not path.parent.is_dir():
        raise InputError(f"{path}: output folder does not exist")
    if path.exists() and not overwrite:
        raise CaseFileError(f"{path}: already exists (pass overwrite=True to replace it)")
    if path.is_dir():
        raise CaseFileError(f"{path}: is a folder")
    nuclide = _normalise_nuclide(nuclide)
    if label_names is not None and labels is None:
        raise InputError(f"{path}: label_names given without labels")
    extra = dict(attrs or {})
    reserved = _RESERVED_ROOT_ATTRS.intersection(extra)
    if reserved:
        raise InputError(f"{path}: attrs may not set reserved root attribute(s) {sorted(reserved)}")

    arrays: dict[str, Any] = {"density": density}
    for name, value in (("activity", activity), ("spect", spect), ("labels", labels)):
        if value is not None:
            arrays[name] = value
    grid: tuple[int, int, int] | None = None
    prepared: dict[str, tuple[np.ndarray, np.dtype]] = {}
    for name, value in arrays.items():
        arr, dtype = _prepare(name, value, grid, path)
        if grid is None:
            grid = (int(arr.shape[0]), int(arr.shape[1]), int(arr.shape[2]))
        prepared[name] = (arr, dtype)
    names_json = _label_names_json(label_names) if labels is not None else None
    prov = _to_json(dict(provenance) if provenance is not None else make_provenance())

    with atomic_path(path) as tmp:
        with _h5open(tmp, "w") as f:
            f.attrs["schema"] = SCHEMA
            f.attrs["schema_version"] = np.int64(SCHEMA_VERSION)
            for key, value in geometry.to_attrs().items():
                f.attrs[key] = value
            f.attrs["nuclide"] = nuclide
            f.attrs["provenance"] = prov
            _set_attrs(f, extra)
            for name, (arr, dtype) in prepared.items():
                _write_array(f, name, arr, dtype, path)
            if names_json is not None:
                f[LABELS].attrs["names"] = names_json
            f.flush()
        _fsync_file(tmp)
    _fsync_dir(path.parent)
    return path


def _normalise_nuclide(nuclide: Any) -> str:
    if not isinstance(nuclide, str) or not nuclide.strip():
        raise InputError(f"nuclide must be a non-empty string, got {nuclide!r}")
    try:
        from mcdose.nuclides import normalize_nuclide_name
    except ImportError:  # pragma: no cover - nuclides module not available
        return nuclide.strip()
    return normalize_nuclide_name(nuclide)

