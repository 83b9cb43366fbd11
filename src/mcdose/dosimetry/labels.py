"""Organ and lesion labels on the dose grid, from a label image or a DICOM RTSTRUCT.

Label image
    An integer image (NIfTI, NRRD, MHA, DICOM) on the grid of the CT or of the SPECT (same
    shape and geometry within 0.01 mm); any other grid is refused as a mismatched label
    map (labels drawn on another scan).  It is resampled onto the dose grid by nearest
    neighbour.  Names come from ``--label-names`` (JSON ``{"1": "liver"}`` or CSV
    ``value,name``), else from a JSON file beside the image with the same stem
    (``labels.nii.gz`` → ``labels.json``), else ``label_<value>``.

RTSTRUCT
    Every ROI with ``CLOSED_PLANAR`` contours becomes a region; contours are rasterised in
    patient coordinates (LPS, mm) directly on the dose grid.  A contour stands for a slab
    of the CT slice thickness centred on its plane (planes normal to the CT slice
    direction); a dose voxel belongs to the ROI when its centre lies inside a contour of
    the nearest plane within half a slab (contours of one plane combine by the even-odd
    rule, so holes and islands work).  Overlapping ROIs stay overlapping: each region keeps
    its own mask, so a liver ROI still contains its lesions in the organ table; the painted
    label map used for pictures gives each voxel to the smallest ROI that contains it.
    The ROI frame of reference must be the CT's (or the SPECT's).

Errors: an empty label map (no labelled voxel on the dose grid), a mismatched grid or frame
of reference, non-integer or negative label values, unreadable names files.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mcdose.errors import InputError
from mcdose.io.case import Geometry

__all__ = [
    "LabelMap",
    "Region",
    "load_labels",
    "paint_regions",
    "rasterize_rtstruct",
    "read_label_names_file",
]

log = logging.getLogger(__name__)

_GRID_ATOL_MM = 0.01
_GRID_ATOL_DIRECTION = 1e-4


@dataclass
class Region:
    """One organ or lesion: its label value, name and boolean mask on the dose grid."""

    value: int
    name: str
    mask: np.ndarray

    @property
    def voxels(self) -> int:
        return int(np.count_nonzero(self.mask))


@dataclass
class LabelMap:
    """Regions on the dose grid.

    Attributes
    ----------
    labels : ndarray, int32 (z, y, x)
        Painted label map (0 = unlabelled).
    regions : list of Region
        Non-empty regions, in label-value order; masks may overlap (RTSTRUCT).
    source : str
        ``"image"`` or ``"rtstruct"``.
    path : Path
    dropped : list of str
        Regions that have no voxel on the dose grid.
    drawn_spacing_mm : tuple of 3 float or None
        Voxel size (x, y, z, mm) of the image the labels were drawn on (the label image's
        own; the CT's for an RTSTRUCT) — the segmentation's resolution, for the volume
        uncertainty.
    """

    labels: np.ndarray
    regions: list[Region]
    source: str
    path: Path
    dropped: list[str] = field(default_factory=list)
    drawn_spacing_mm: tuple[float, float, float] | None = None

    @property
    def names(self) -> dict[int, str]:
        return {r.value: r.name for r in self.regions}


# --------------------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------------------


def read_label_names_file(path: str | os.PathLike[str]) -> dict[int, str]:
    """Label value → name from JSON (``{"1": "liver"}``) or CSV (``value,name`` rows).

    Raises
    ------
    InputError
        Missing or unreadable file, non-integer values.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"label names {path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"label names {path}: cannot read ({exc})") from None
    out: dict[int, str] = {}
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("expected an object {value: name}")
            for key, name in data.items():
                out[int(key)] = str(name).strip()
        else:
            for row in csv.reader(line for line in text.splitlines()
                                  if line.strip() and not line.lstrip().startswith("#")):
                if len(row) < 2:
                    raise ValueError(f"row {row!r} needs value,name")
                if row[0].strip().lower() in ("value", "label"):
                    continue  # header
                out[int(row[0])] = row[1].strip()
    except (ValueError, json.JSONDecodeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"label names {path}: {msg}") from None
    return out


def _sidecar_names(path: Path) -> dict[int, str]:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm"):
        if name.lower().endswith(suffix):
            sidecar = path.with_name(name[: -len(suffix)] + ".json")
            if sidecar.is_file():
                try:
                    return read_label_names_file(sidecar)
                except InputError as exc:
                    log.warning("ignoring label names beside the image: %s", exc)
            break
    return {}


# --------------------------------------------------------------------------------------
# label image
# --------------------------------------------------------------------------------------


def _same_grid(geometry: Geometry, shape: tuple[int, ...], other: Geometry,
               other_shape: tuple[int, ...]) -> bool:
    return tuple(shape) == tuple(other_shape) and geometry.allclose(
        other, atol_mm=_GRID_ATOL_MM, atol_direction=_GRID_ATOL_DIRECTION)


def _label_image(path: Path, grid: Any, grids: dict[str, tuple[Geometry, tuple[int, ...]]],
                 names: dict[int, str]) -> LabelMap:
    from mcdose.dosimetry.inputs import _strip_path
    from mcdose.io.images import read_image, resample_to_grid

    try:  # refuses missing spacing and non-finite values
        raw, geometry = read_image(path, dtype=None)
    except InputError as exc:
        raise InputError(f"label map {_strip_path(str(exc), path)}") from None
    if raw.dtype.kind == "f":
        if not np.array_equal(raw, np.round(raw)):
            raise InputError(f"label map {path}: values are not integers (is it a label image?)")
    elif raw.dtype.kind not in "iub":
        raise InputError(f"label map {path}: unsupported pixel type {raw.dtype}")
    if raw.size and float(raw.min()) < 0:
        raise InputError(f"label map {path}: negative label values (min {raw.min()})")
    if raw.size and float(raw.max()) > np.iinfo(np.int32).max:
        raise InputError(f"label map {path}: label values too large (max {raw.max()})")
    labels = raw.astype(np.int32)
    shape = tuple(int(n) for n in labels.shape)
    if not any(_same_grid(geometry, shape, g, s) for g, s in grids.values()):
        desc = ", ".join(
            f"{name} {s[::-1]} voxels of {tuple(round(v, 3) for v in g.spacing_mm)} mm at "
            f"{tuple(round(v, 2) for v in g.origin_mm)}" for name, (g, s) in grids.items())
        raise InputError(
            f"label map {path}: its grid ({shape[::-1]} voxels of "
            f"{tuple(round(v, 3) for v in geometry.spacing_mm)} mm at "
            f"{tuple(round(v, 2) for v in geometry.origin_mm)}) matches neither {desc}; "
            f"labels must be drawn on the CT or the SPECT of this study"
        )
    if not np.any(labels):
        raise InputError(f"label map {path}: the label map is empty (all voxels are 0)")
    on_grid = resample_to_grid(labels, geometry, grid.geometry, grid.shape, "nearest",
                               default_value=0)
    values_in = [int(v) for v in np.unique(labels) if v != 0]
    regions = []
    dropped = []
    for v in values_in:
        name = names.get(v, f"label_{v}")
        mask = on_grid == v
        if mask.any():
            regions.append(Region(v, name, mask))
        else:
            dropped.append(name)
    if not regions:
        raise InputError(f"label map {path}: the label map is empty on the dose grid")
    if dropped:
        log.warning("label map %s: %s have no voxel on the dose grid", path, ", ".join(dropped))
    return LabelMap(on_grid.astype(np.int32), regions, "image", path, dropped,
                    tuple(float(v) for v in geometry.spacing_mm))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# RTSTRUCT
# --------------------------------------------------------------------------------------


def _is_rtstruct(path: Path) -> Any | None:
    import pydicom

    from mcdose.io.dicom import is_dicom_file

    if not path.is_file() or not is_dicom_file(path):
        return None
    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"label map {path}: cannot read DICOM file ({exc})") from None
    return ds if str(ds.get("Modality", "")).upper() == "RTSTRUCT" else None


def _rtstruct_frames(ds: Any) -> set[str]:
    uids = set()
    for item in ds.get("ReferencedFrameOfReferenceSequence") or []:
        if item.get("FrameOfReferenceUID"):
            uids.add(str(item.FrameOfReferenceUID))
    for roi in ds.get("StructureSetROISequence") or []:
        if roi.get("ReferencedFrameOfReferenceUID"):
            uids.add(str(roi.ReferencedFrameOfReferenceUID))
    return uids


def _plane_basis(normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = normal / np.linalg.norm(normal)
    helper = np.array([1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(n, helper)
    u /= np.linalg.norm(u)
    return u, np.cross(n, u)


def rasterize_rtstruct(
    ds: Any,
    grid: Any,
    *,
    slab_normal: np.ndarray,
    slab_mm: float | None,
    path: Path | str = "RTSTRUCT",
) -> tuple[list[Region], list[str]]:
    """Rasterise the closed planar contours of every ROI onto the dose grid.

    Parameters
    ----------
    ds : pydicom.Dataset
        The RTSTRUCT.
    grid : DoseGrid
        Target grid.
    slab_normal : ndarray (3,)
        Normal of the contour planes (the CT slice direction), LPS.
    slab_mm : float or None
        Thickness each contour stands for (the CT slice spacing); None: the median distance
        between a ROI's planes (the dose voxel size along the normal for one plane).
    path
        For messages.

    Returns
    -------
    regions, dropped
        Regions in ROI order (value = ROINumber) and names of ROIs without voxels.
    """
    from matplotlib.path import Path as MplPath

    n = np.asarray(slab_normal, dtype=np.float64)
    n = n / np.linalg.norm(n)
    u_axis, v_axis = _plane_basis(n)
    geometry: Geometry = grid.geometry
    nz, ny, nx = grid.shape
    jj, ii = np.meshgrid(np.arange(ny, dtype=np.float64), np.arange(nx, dtype=np.float64),
                         indexing="ij")
    a = geometry.affine
    # along the normal, for each dose slice: s(i, j, k) = s0(i, j) + k * ds
    base = (np.stack([ii.ravel(), jj.ravel(), np.zeros(ii.size)], axis=1) @ a[:3, :3].T
            + a[:3, 3])
    step_k = a[:3, 2]
    s_base = base @ n
    u_base, v_base = base @ u_axis, base @ v_axis
    ds_k, du_k, dv_k = step_k @ n, step_k @ u_axis, step_k @ v_axis
    along_voxel = float(abs(a[:3, :3].T @ n).max())

    names = {}
    for roi in ds.get("StructureSetROISequence") or []:
        names[int(roi.ROINumber)] = str(roi.get("ROIName", f"roi_{roi.ROINumber}")).strip()
    regions: list[Region] = []
    dropped: list[str] = []
    for item in ds.get("ROIContourSequence") or []:
        number = int(item.ReferencedROINumber)
        name = names.get(number, f"roi_{number}")
        planes: dict[float, list[np.ndarray]] = {}
        for contour in item.get("ContourSequence") or []:
            kind = str(contour.get("ContourGeometricType", "")).upper()
            if kind != "CLOSED_PLANAR":
                continue
            try:
                pts = np.asarray([float(v) for v in contour.ContourData],
                                 dtype=np.float64).reshape(-1, 3)
            except (AttributeError, ValueError):
                raise InputError(f"label map {path}: ROI {name!r} has malformed ContourData"
                                 ) from None
            if len(pts) < 3:
                continue
            s = pts @ n
            if float(s.max() - s.min()) > 0.1 * max(slab_mm or along_voxel, 1e-6):
                log.warning("%s: a contour of ROI %r is not in a CT slice plane (spread %.2f mm)",
                            path, name, float(s.max() - s.min()))
            key = round(float(s.mean()), 2)
            planes.setdefault(key, []).append(np.stack([pts @ u_axis, pts @ v_axis], axis=1))
        if not planes:
            log.info("%s: ROI %r has no closed planar contour; skipped", path, name)
            continue
        offsets = np.array(sorted(planes))
        if slab_mm is not None:
            half = 0.5 * float(slab_mm)
        elif len(offsets) > 1:
            half = 0.5 * float(np.median(np.diff(offsets)))
        else:
            half = 0.5 * along_voxel
        mask = np.zeros(grid.shape, dtype=bool)
        lo_s, hi_s = offsets[0] - half, offsets[-1] + half
        paths = {key: [MplPath(poly) for poly in polys] for key, polys in planes.items()}
        boxes = {key: (np.min([p.min(axis=0) for p in polys], axis=0),
                       np.max([p.max(axis=0) for p in polys], axis=0))
                 for key, polys in planes.items()}
        for k in range(nz):
            s = s_base + k * ds_k
            if s.max() < lo_s - 1e-6 or s.min() > hi_s + 1e-6:
                continue
            pos = np.clip(np.searchsorted(offsets, s), 1, max(len(offsets) - 1, 1))
            if len(offsets) == 1:
                nearest = np.zeros(s.shape, dtype=np.int64)
            else:
                left, right = offsets[pos - 1], offsets[pos]
                nearest = np.where(np.abs(s - left) <= np.abs(s - right), pos - 1, pos)
            ok = np.abs(s - offsets[nearest]) <= half + 1e-6
            if not ok.any():
                continue
            u = u_base + k * du_k
            v = v_base + k * dv_k
            inside = np.zeros(s.shape, dtype=bool)
            for p in np.unique(nearest[ok]):
                key = float(offsets[p])
                lo, hi = boxes[key]
                sel = np.flatnonzero(ok & (nearest == p) & (u >= lo[0] - 1e-6)
                                     & (u <= hi[0] + 1e-6) & (v >= lo[1] - 1e-6)
                                     & (v <= hi[1] + 1e-6))
                if sel.size == 0:
                    continue
                pts2 = np.stack([u[sel], v[sel]], axis=1)
                parity = np.zeros(sel.size, dtype=bool)
                for poly in paths[key]:
                    parity ^= poly.contains_points(pts2)
                inside[sel] = parity
            mask[k] = inside.reshape(ny, nx)
        if mask.any():
            regions.append(Region(number, name, mask))
        else:
            dropped.append(name)
    return regions, dropped


def _rtstruct(ds: Any, path: Path, grid: Any, *, ct: Any, spect: Any) -> LabelMap:
    frames = _rtstruct_frames(ds)
    for image, what in ((ct, "CT"), (spect, "SPECT")):
        uid = getattr(image, "frame_of_reference_uid", None) if image is not None else None
        if uid and frames and uid not in frames:
            raise InputError(
                f"label map {path}: RTSTRUCT frame of reference {sorted(frames)[0]} differs from "
                f"the {what}'s ({uid}); the contours were drawn on another scan"
            )
    if ct is not None:
        normal = ct.geometry.direction_matrix[:, 2]
        slab = ct.geometry.spacing_mm[2] if ct.shape[0] > 1 else None
    else:
        normal = grid.geometry.direction_matrix[:, 2]
        slab = None
    regions, dropped = rasterize_rtstruct(ds, grid, slab_normal=normal, slab_mm=slab, path=path)
    if not regions:
        raise InputError(
            f"label map {path}: the RTSTRUCT gives an empty label map on the dose grid (no "
            f"closed contour inside it)"
        )
    if dropped:
        log.warning("label map %s: ROIs %s have no voxel on the dose grid", path,
                    ", ".join(dropped))
    drawn = ct.geometry.spacing_mm if ct is not None else grid.geometry.spacing_mm
    return LabelMap(paint_regions(regions, grid.shape), regions, "rtstruct", path, dropped,
                    tuple(float(v) for v in drawn))  # type: ignore[arg-type]


def paint_regions(regions: list[Region], shape: tuple[int, int, int]) -> np.ndarray:
    """A label map of possibly overlapping regions: larger regions first, smaller on top."""
    labels = np.zeros(shape, dtype=np.int32)
    for region in sorted(regions, key=lambda r: -r.voxels):
        labels[region.mask] = region.value
    return labels


# --------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------


def load_labels(
    path: str | os.PathLike[str],
    grid: Any,
    *,
    ct: Any = None,
    spect: Any = None,
    names_path: str | os.PathLike[str] | None = None,
) -> LabelMap:
    """Organ/lesion labels on the dose grid from a label image or an RTSTRUCT file.

    Parameters
    ----------
    path : path-like
        Label image (integer; on the CT or SPECT grid) or DICOM RTSTRUCT file.
    grid : DoseGrid
        The dose grid.
    ct, spect : CTImage, SpectImage, optional
        The study's images: their grids are the allowed label-image grids and their DICOM
        frames of reference must match an RTSTRUCT's.
    names_path : path-like, optional
        JSON or CSV file of label names (label images only).

    Returns
    -------
    LabelMap

    Raises
    ------
    InputError
        Missing file, empty label map, grid or frame-of-reference mismatch, non-integer or
        negative labels.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"label map {path}: no such file or folder")
    ds = _is_rtstruct(path)
    if ds is not None:
        if names_path is not None:
            log.warning("--label-names ignored: an RTSTRUCT names its ROIs itself")
        return _rtstruct(ds, path, grid, ct=ct, spect=spect)
    names = read_label_names_file(names_path) if names_path is not None else _sidecar_names(path)
    grids = {}
    if ct is not None:
        grids["the CT"] = (ct.geometry, ct.shape)
    if spect is not None:
        grids["the SPECT"] = (spect.geometry, spect.shape)
    if not grids:
        grids["the dose grid"] = (grid.geometry, grid.shape)
    return _label_image(path, grid, grids, names)
