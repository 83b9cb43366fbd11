"""A tiny synthetic SPECT/CT patient written as DICOM (and NIfTI) for the dosimetry tests.

Geometry (LPS, mm), deliberately with non-trivial origins and different grids:

* CT: 40 × 40 × 24 voxels (x, y, z) of 2 × 2 × 3 mm, first voxel at (-41.3, 12.7, -250.5);
* SPECT: 20 × 20 × 12 voxels of 4 × 4 × 6 mm, first voxel at (-39.3, 14.7, -248.5) (axial),
  or the same volume with swapped row/column axes and the slice axis reversed.

The body is a box of soft tissue (40 HU) with a lung block (-800 HU) and a bone block
(800 HU) in air (-1000 HU).  Activity: a uniform background in the body and one hot SPECT
voxel (the lesion) whose centre is :data:`LESION_LPS`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mcdose.io.case import Geometry
from tests.helpers import write_ct_series, write_nm_multiframe

CT_GEOMETRY = Geometry((2.0, 2.0, 3.0), (-41.3, 12.7, -250.5))
CT_SHAPE = (24, 40, 40)
SPECT_GEOMETRY = Geometry((4.0, 4.0, 6.0), (-39.3, 14.7, -248.5))
SPECT_SHAPE = (12, 20, 20)
#: lesion voxel of the axial SPECT grid (z, y, x) and its centre in LPS (mm)
LESION_INDEX = (6, 10, 10)
LESION_LPS = (0.7, 54.7, -212.5)
#: body box, lung and bone blocks (LPS mm ranges, [lo, hi) per axis x, y, z)
BODY_BOX = ((-30.0, 27.0), (22.0, 83.0), (-245.0, -186.0))
LUNG_BOX = ((-28.0, -12.0), (26.0, 46.0), (-240.0, -200.0))
BONE_BOX = ((14.0, 24.0), (70.0, 80.0), (-240.0, -190.0))
LIVER_BOX = ((-8.0, 20.0), (40.0, 70.0), (-230.0, -195.0))
BACKGROUND_BQ_ML = 2.0e4
LESION_BQ_ML = 2.0e6
NM_SLOPE = 50.0
#: decays per VDK kernel part in the tests (kernels are generated once per session, in a
#: private cache folder, see conftest.py)
KERNEL_HISTORIES = 20_000


def swapped_spect_geometry() -> Geometry:
    """The axial SPECT volume described with rows along y, columns along x, slices reversed.

    Row direction (0, 1, 0), column direction (1, 0, 0), normal row × column = (0, 0, -1).
    The first voxel moves to the other end of the slice axis.
    """
    g = SPECT_GEOMETRY
    nz = SPECT_SHAPE[0]
    origin = (g.origin_mm[0], g.origin_mm[1], g.origin_mm[2] + (nz - 1) * g.spacing_mm[2])
    return Geometry((g.spacing_mm[1], g.spacing_mm[0], g.spacing_mm[2]), origin,
                    (0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0))


def centres(geometry: Geometry, shape: tuple[int, int, int]) -> np.ndarray:
    """Voxel centres (z, y, x, 3) in LPS mm."""
    nz, ny, nx = shape
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    idx = np.stack([i, j, k], axis=-1).astype(np.float64)
    return geometry.index_to_physical(idx.reshape(-1, 3)).reshape(nz, ny, nx, 3)


def _inside(points: np.ndarray, box: tuple[tuple[float, float], ...]) -> np.ndarray:
    ok = np.ones(points.shape[:-1], dtype=bool)
    for axis, (lo, hi) in enumerate(box):
        ok &= (points[..., axis] >= lo) & (points[..., axis] < hi)
    return ok


def ct_hu(geometry: Geometry = CT_GEOMETRY, shape: tuple[int, int, int] = CT_SHAPE,
          shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """HU of the phantom on a grid; ``shift_mm`` moves the patient (LPS)."""
    p = centres(geometry, shape) - np.asarray(shift_mm)
    hu = np.full(shape, -1000.0)
    hu[_inside(p, BODY_BOX)] = 40.0
    hu[_inside(p, LUNG_BOX)] = -800.0
    hu[_inside(p, BONE_BOX)] = 800.0
    return hu


def activity_bq_ml(geometry: Geometry, shape: tuple[int, int, int], *,
                   background: float = BACKGROUND_BQ_ML, lesion: float = LESION_BQ_ML,
                   shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """Bq/ml: background in the body (not the lung), ``lesion`` in the voxel at the lesion."""
    p = centres(geometry, shape) - np.asarray(shift_mm)
    values = np.zeros(shape)
    values[_inside(p, BODY_BOX) & ~_inside(p, LUNG_BOX)] = background
    d = np.linalg.norm(p - np.asarray(LESION_LPS), axis=-1)
    values[d < 0.5 * min(geometry.spacing_mm)] = lesion
    return values


def label_array(geometry: Geometry = CT_GEOMETRY, shape: tuple[int, int, int] = CT_SHAPE
                ) -> np.ndarray:
    """1 = liver box, 2 = lesion (sphere of 5 mm around the lesion), 3 = lung."""
    p = centres(geometry, shape)
    labels = np.zeros(shape, dtype=np.int16)
    labels[_inside(p, LIVER_BOX)] = 1
    labels[_inside(p, LUNG_BOX)] = 3
    labels[np.linalg.norm(p - np.asarray(LESION_LPS), axis=-1) <= 5.0] = 2
    return labels


LABEL_NAMES = {1: "liver", 2: "lesion_1_liver", 3: "lung_left"}


@dataclass
class Patient:
    """Paths of one synthetic patient."""

    folder: Path
    ct: Path
    spect: Path
    frame_uid: str
    spect_geometry: Geometry
    hu: np.ndarray
    spect_bq_ml: np.ndarray


def write_patient(folder: str | Path, *, swapped: bool = False, background: float =
                  BACKGROUND_BQ_ML, lesion: float = LESION_BQ_ML, name: str = "spect.dcm",
                  frame_uid: str | None = None, spect_frame_uid: str | None = None,
                  ct_folder: str = "ct", hu_shift_mm=(0.0, 0.0, 0.0), **nm_kwargs: Any
                  ) -> Patient:
    """DICOM CT series + NM multi-frame SPECT (Bq/ml) in one frame of reference."""
    from pydicom.uid import generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frame_uid = frame_uid or generate_uid()
    hu = ct_hu(shift_mm=hu_shift_mm)
    ct_path, stored = write_ct_series(folder / ct_folder, hu, CT_GEOMETRY, frame_uid=frame_uid)
    g = swapped_spect_geometry() if swapped else SPECT_GEOMETRY
    shape = SPECT_SHAPE if not swapped else (SPECT_SHAPE[0], SPECT_SHAPE[2], SPECT_SHAPE[1])
    values = activity_bq_ml(g, shape, background=background, lesion=lesion,
                            shift_mm=hu_shift_mm)
    spect_path, stored_values = write_nm_multiframe(
        folder / name, values, g, slope=NM_SLOPE, frame_uid=spect_frame_uid or frame_uid,
        **nm_kwargs)
    return Patient(folder, ct_path, spect_path, frame_uid, g, stored, stored_values)


def write_label_names(path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps({str(k): v for k, v in LABEL_NAMES.items()}))
    return path


def _polygon(box_xy: tuple[tuple[float, float], tuple[float, float]], z: float) -> list[float]:
    (x0, x1), (y0, y1) = box_xy
    pts = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    return [v for x, y in pts for v in (x, y, z)]


def _circle(centre: tuple[float, float], radius: float, z: float, n: int = 24) -> list[float]:
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return [v for x, y in zip(centre[0] + radius * np.cos(a), centre[1] + radius * np.sin(a),
                              strict=True) for v in (float(x), float(y), z)]


def write_rtstruct(path: str | Path, frame_uid: str, *, ct_geometry: Geometry = CT_GEOMETRY,
                   ct_shape: tuple[int, int, int] = CT_SHAPE, hole: bool = False) -> Path:
    """An RTSTRUCT with 'Liver' (box contours on every CT slice inside LIVER_BOX, optionally
    with a square hole), 'Lesion' (circles of radius ≤ 5 mm around the lesion) and a POINT
    ROI that must be ignored."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTSTRUCT"
    ds.PatientID = "MCDOSE-TEST"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ref = Dataset()
    ref.FrameOfReferenceUID = frame_uid
    ds.ReferencedFrameOfReferenceSequence = [ref]
    zs = [ct_geometry.origin_mm[2] + k * ct_geometry.spacing_mm[2] for k in range(ct_shape[0])]
    rois, contours = [], []
    for number, name in ((1, "Liver"), (2, "Lesion"), (3, "Marker")):
        roi = Dataset()
        roi.ROINumber = number
        roi.ROIName = name
        roi.ReferencedFrameOfReferenceUID = frame_uid
        rois.append(roi)
        item = Dataset()
        item.ReferencedROINumber = number
        seq = []
        for z in zs:
            polys: list[tuple[str, list[float]]] = []
            if name == "Liver" and LIVER_BOX[2][0] <= z < LIVER_BOX[2][1]:
                polys.append(("CLOSED_PLANAR", _polygon(
                    ((LIVER_BOX[0][0] - 1, LIVER_BOX[0][1] - 1),
                     (LIVER_BOX[1][0] - 1, LIVER_BOX[1][1] - 1)), z)))
                if hole:
                    polys.append(("CLOSED_PLANAR", _polygon(((-4.0, 4.0), (58.0, 66.0)), z)))
            dz = abs(z - LESION_LPS[2])
            if name == "Lesion" and dz < 5.0:
                r = float(np.sqrt(25.0 - dz * dz))
                polys.append(("CLOSED_PLANAR", _circle(LESION_LPS[:2], r, z)))
            for kind, data in polys:
                c = Dataset()
                c.ContourGeometricType = kind
                c.NumberOfContourPoints = len(data) // 3
                c.ContourData = [f"{v:.4f}" for v in data]
                seq.append(c)
        if name == "Marker":
            c = Dataset()
            c.ContourGeometricType = "POINT"
            c.NumberOfContourPoints = 1
            c.ContourData = ["0.0", "50.0", "-210.0"]
            seq.append(c)
        item.ContourSequence = seq
        contours.append(item)
    ds.StructureSetROISequence = rois
    ds.ROIContourSequence = contours
    path = Path(path)
    ds.save_as(path, enforce_file_format=True)
    return path
