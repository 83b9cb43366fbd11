"""Small synthetic case files for tests, smoke runs and benchmarks (no Monte Carlo needed).

A synthetic case is an elliptic body with liver, spleen, kidneys, a lung and a bone region,
liver and body lesions, and uniform organ activities.  Its "doses" are simple stand-ins that
reproduce the structure of the real problem — the ground truth is local (short blur, divided
by the density), SPECT is blurred and noisy, the VDK is a soft-tissue convolution of the SPECT
that ignores density, MC-on-SPECT is density-correct but keeps the SPECT blur — so
``GT − VDK`` is a smooth function of SPECT and density that a CNN can learn.  They are *not*
physics: use the real pipeline for anything quantitative.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from mcdose.io.case import Geometry, create_case, dose_attrs, write_datasets
from mcdose.io.jsonio import write_json

__all__ = ["LABEL_NAMES", "make_synthetic_case", "make_synthetic_dataset", "synthetic_arrays"]

LABEL_NAMES = {
    0: "background",
    1: "body",
    2: "liver",
    3: "spleen",
    4: "kidney_left_cortex",
    5: "kidney_right_cortex",
    6: "lung_left",
    7: "spine",
    8: "lesion_1_liver",
    9: "lesion_2_body",
}
#: Gy/s per MBq of a voxel's activity deposited locally (order of Lu-177 in a small voxel)
_LOCAL_DOSE_GY_S_PER_MBQ = 8e-3


def _ellipsoid(shape, center, radii) -> np.ndarray:
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    cz, cy, cx = center
    rz, ry, rx = radii
    return ((z - cz) / rz) ** 2 + ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1.0


def synthetic_arrays(
    shape: tuple[int, int, int] = (24, 32, 32), seed: int = 0
) -> dict[str, np.ndarray]:
    """Arrays of one synthetic case: density, activity, labels, spect, dose/vdk, dose/mc,
    dose/mc_spect (units as in a case file: g/cm³, MBq per voxel, Gy/s)."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    z, y, x = np.ogrid[:nz, :ny, :nx]
    jitter = rng.uniform(-0.06, 0.06, size=8)
    body = (((y - ny / 2) / (0.42 * ny)) ** 2 + ((x - nx / 2) / (0.47 * nx)) ** 2 <= 1.0)
    body = np.broadcast_to(body, shape).copy()
    labels = np.where(body, 1, 0).astype(np.int16)
    c = np.array([nz / 2, ny / 2, nx / 2])

    def organ(offset, radii):
        center = c + np.array(offset) * np.array(shape) + jitter[:3] * np.array(shape)
        return _ellipsoid(shape, center, np.array(radii) * np.array(shape)) & body

    regions = [
        (6, organ((-0.15, -0.1, 0.2), (0.2, 0.2, 0.15))),  # lung
        (7, organ((0.0, 0.3, 0.0), (0.5, 0.07, 0.07))),  # spine
        (2, organ((0.05, -0.02, -0.2), (0.25, 0.22, 0.2))),  # liver
        (3, organ((0.05, 0.05, 0.27), (0.12, 0.1, 0.08))),  # spleen
        (4, organ((0.1, 0.2, 0.15), (0.12, 0.07, 0.06))),  # kidney left
        (5, organ((0.1, 0.2, -0.15), (0.12, 0.07, 0.06))),  # kidney right
        (8, organ((0.05 + jitter[3], -0.05, -0.22 + jitter[4]), (0.08, 0.08, 0.08))),
        (9, organ((-0.1, -0.25 + jitter[5], 0.05), (0.07, 0.06, 0.06))),
    ]
    for value, mask in regions:
        labels[mask] = value
    density = np.full(shape, 0.0012, dtype=np.float32)
    density[labels > 0] = 1.0
    density[labels == 6] = 0.3
    density[labels == 7] = 1.6
    density[labels == 2] = 1.06
    density[labels == 9] = 1.05
    concentration = {1: 0.05, 2: 1.0, 3: 1.4, 4: 2.5, 5: 2.3, 6: 0.02, 7: 0.1, 8: 6.0, 9: 4.0}
    activity = np.zeros(shape, dtype=np.float64)
    for value, level in concentration.items():
        activity[labels == value] = level * rng.uniform(0.8, 1.25)
    activity *= 1.0 / max(activity.sum(), 1e-30) * 500.0 * rng.uniform(0.5, 2.0)  # MBq
    safe_density = np.maximum(density, 0.05)
    gt = gaussian_filter(activity, 0.7) / safe_density * _LOCAL_DOSE_GY_S_PER_MBQ
    spect = gaussian_filter(activity, 1.6)
    spect *= rng.gamma(50.0, 1.0 / 50.0, size=shape)  # mild noise, mean 1
    spect *= activity.sum() / spect.sum()
    vdk = gaussian_filter(spect, 0.7) * _LOCAL_DOSE_GY_S_PER_MBQ
    mc_spect = gaussian_filter(spect, 0.7) / safe_density * _LOCAL_DOSE_GY_S_PER_MBQ
    outside = labels == 0
    for arr in (gt, mc_spect):
        arr[outside] *= 0.05
    return {
        "density": density,
        "activity": activity.astype(np.float32),
        "labels": labels,
        "spect": spect.astype(np.float32),
        "dose/vdk": vdk.astype(np.float32),
        "dose/mc": gt.astype(np.float32),
        "dose/mc_spect": mc_spect.astype(np.float32),
    }


def make_synthetic_case(
    path: str | os.PathLike[str],
    *,
    shape: tuple[int, int, int] = (24, 32, 32),
    seed: int = 0,
    spacing_mm: tuple[float, float, float] = (4.0, 4.0, 4.0),
    nuclide: str = "Lu-177",
    with_mc_spect: bool = True,
) -> Path:
    """Write one synthetic case file (see the module docstring) and return its path."""
    arrays = synthetic_arrays(shape, seed)
    path = Path(path)
    create_case(
        path,
        geometry=Geometry(spacing_mm),
        nuclide=nuclide,
        density=arrays["density"],
        activity=arrays["activity"],
        labels=arrays["labels"],
        label_names=LABEL_NAMES,
        spect=arrays["spect"],
        attrs={"synthetic": True, "seed": seed},
        overwrite=True,
    )
    doses = {"dose/vdk": arrays["dose/vdk"], "dose/mc": arrays["dose/mc"]}
    if with_mc_spect:
        doses["dose/mc_spect"] = arrays["dose/mc_spect"]
    attrs = {
        name: dose_attrs(name.split("/")[1], nuclide, {"synthetic": True, "seed": seed})
        for name in doses
    }
    write_datasets(path, doses, attrs)
    return path


def make_synthetic_dataset(
    out_dir: str | os.PathLike[str],
    n_cases: int = 6,
    *,
    shape: tuple[int, int, int] = (24, 32, 32),
    seed: int = 0,
    splits: list[str] | None = None,
    spacing_mm: tuple[float, float, float] = (4.0, 4.0, 4.0),
) -> Path:
    """Write ``n_cases`` synthetic cases and a ``manifest.json`` into ``out_dir``.

    ``splits`` gives each case's split; default: the last case "test", the one before it
    "val", the rest "train" (at least 3 cases).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if splits is None:
        if n_cases < 3:
            raise ValueError("a default split needs at least 3 cases")
        splits = ["train"] * (n_cases - 2) + ["val", "test"]
    if len(splits) != n_cases:
        raise ValueError("one split per case")
    cases = []
    for i, split in enumerate(splits):
        name = f"case_{i:04d}.h5"
        make_synthetic_case(out / name, shape=shape, seed=seed + i, spacing_mm=spacing_mm)
        cases.append({"file": name, "split": split, "seed": seed + i, "synthetic": True})
    write_json(out / "manifest.json", {"cases": cases, "synthetic": True})
    return out
