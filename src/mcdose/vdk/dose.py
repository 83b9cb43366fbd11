"""Absorbed-dose rate by voxel-dose-kernel convolution, with the paper's density correction.

Single kernel (the paper's baseline, Li et al. 2022)::

    Ḋ(t) = [ (A·1e6) ⊛ S ](t) · ρ_kernel / max(ρ(t), ρ_floor)          (Gy/s)

with A the activity in MBq per voxel (1e6 decays/s per MBq), S the soft-tissue kernel in Gy per
decay (ρ_kernel = 1.04 g/cm³) — the β and photon kernels summed — and ρ(t) the local density.

Tissue classes (``kernels="tissue"``): every voxel is put in a class by its density
(:data:`MATERIAL_CLASS` of :func:`mcdose.materials.assign_materials`): lung (lung kernel,
0.26 g/cm³; air voxels too), soft tissue (soft-tissue kernel, 1.04 g/cm³; adipose too) or bone
(cortical-bone kernel, 1.92 g/cm³).  The activity is convolved with each class's kernel and a
voxel takes the result of its own class, density-scaled within the class:
``Ḋ(t) = [(A·1e6) ⊛ S_c(t)](t) · ρ_c / max(ρ(t), ρ_floor)``.  This is the starting point of
density-specific kernel methods: it is right inside large regions of one tissue and still
wrong across interfaces (the kernel assumes the whole medium is of the target's class).

Density floor
-------------
The factor ρ_kernel/ρ is unbounded in air (ρ = 0.0012 g/cm³ would multiply the dose by
870).  The density used in the correction is clamped at :data:`DENSITY_FLOOR_G_CM3`
= 0.05 g/cm³, the air/lung boundary of :data:`mcdose.materials.DEFAULT_ASSIGNMENT`: every
voxel in the body (lung included) gets the paper's correction unchanged, and air voxels at
most ×20.8 (single kernel) or ×5.2 (tissue classes, lung kernel).  Dose in air is not
meaningful for either method; the clamp only keeps it finite and bounded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mcdose.errors import InputError
from mcdose.vdk.convolve import FFTConvolver
from mcdose.vdk.kernels import (
    PHOTON_HISTORY_FACTOR,
    Kernel,
    combine_kernels,
    format_voxel,
    kernel_density,
    normalize_voxel_mm,
    voxels_match,
)

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_KERNEL_HISTORIES",
    "DENSITY_FLOOR_G_CM3",
    "MATERIAL_CLASS",
    "TISSUE_CLASSES",
    "VdkResult",
    "case_kernels",
    "classify_tissue",
    "default_kernel_sizes",
    "density_correction",
    "tissue_class_dose",
    "vdk_case",
    "vdk_dose",
]

#: Lowest density used in the density correction, g/cm³ (see module doc).
DENSITY_FLOOR_G_CM3 = 0.05
#: Electron-part histories of kernels generated for cases (the photon kernels get 10×; see
#: docs/vdk.md, "Kernel noise", for the noise they give).
DEFAULT_KERNEL_HISTORIES = 10**6
#: Tissue class → (kernel material, kernel density g/cm³).
TISSUE_CLASSES: dict[str, tuple[str, float]] = {
    "lung": ("lung", 0.26),
    "soft_tissue": ("soft_tissue", 1.04),
    "bone": ("cortical_bone", 1.92),
}
#: Material of :data:`mcdose.materials.DEFAULT_ASSIGNMENT` → tissue class.  Air is given the
#: lung kernel: air inside the body borders lung or bowel gas, and outside the body the dose
#: is not used.
MATERIAL_CLASS: dict[str, str] = {
    "air": "lung",
    "lung": "lung",
    "adipose": "soft_tissue",
    "soft_tissue": "soft_tissue",
    "water": "soft_tissue",
    "muscle": "soft_tissue",
    "cortical_bone": "bone",
}
#: Extent of the default photon kernel: ±120 mm, at most 99 voxels per axis (the paper's
#: 99³ at 0.98×0.98×3 mm; 51³ at the SPECT's 4.7952 mm).
PHOTON_KERNEL_HALF_EXTENT_MM = 120.0
PHOTON_KERNEL_MAX_SIZE = 99
#: Smallest default electron kernel (the paper's 9³).
ELECTRON_KERNEL_MIN_SIZE = 9


# --------------------------------------------------------------------------------------
# Density correction and classification
# --------------------------------------------------------------------------------------


def density_correction(
    dose: np.ndarray,
    density: np.ndarray,
    kernel_density_g_cm3: float,
    *,
    floor_g_cm3: float = DENSITY_FLOOR_G_CM3,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Multiply a kernel dose by ``ρ_kernel / max(ρ, floor)`` (the paper's correction).

    Parameters
    ----------
    dose : ndarray
        Dose (rate) computed with a kernel of density ``kernel_density_g_cm3``.
    density : ndarray
        Local mass density, g/cm³, same shape.
    kernel_density_g_cm3 : float
        ρ_kernel, g/cm³ (1.04 for the paper's soft-tissue kernel).
    floor_g_cm3 : float
        Lowest density used in the correction (default 0.05 g/cm³).
    out : ndarray, optional
        Output array (may be ``dose``).

    Returns
    -------
    ndarray float32
    """
    if not floor_g_cm3 > 0:
        raise InputError(f"density floor must be > 0 g/cm3, got {floor_g_cm3}")
    rho = np.maximum(np.asarray(density, dtype=np.float32), np.float32(floor_g_cm3))
    factor = np.float32(kernel_density_g_cm3) / rho
    if out is None:
        return (np.asarray(dose, dtype=np.float32) * factor).astype(np.float32, copy=False)
    np.multiply(dose, factor, out=out)
    return out


def classify_tissue(density: np.ndarray, assignment: Any = None) -> tuple[np.ndarray, tuple]:
    """Tissue class of every voxel from its density.

    Parameters
    ----------
    density : ndarray
        Mass density, g/cm³.
    assignment : mcdose.materials.MaterialAssignment, optional
        Density → material thresholds (default :data:`~mcdose.materials.DEFAULT_ASSIGNMENT`);
        each material is mapped to a class by :data:`MATERIAL_CLASS`.

    Returns
    -------
    classes : ndarray uint8
        Index into ``names`` per voxel.
    names : tuple of str
        Class names (keys of :data:`TISSUE_CLASSES`), in index order.
    """
    from mcdose.materials import DEFAULT_ASSIGNMENT, assign_materials

    assignment = assignment or DEFAULT_ASSIGNMENT
    materials = assign_materials(density, assignment)
    names = tuple(TISSUE_CLASSES)
    lut = np.zeros(len(assignment.names), dtype=np.uint8)
    for i, m in enumerate(assignment.names):
        if m not in MATERIAL_CLASS:
            raise InputError(f"material {m!r} has no tissue class; known: "
                             f"{', '.join(MATERIAL_CLASS)}")  # fmt: skip
        lut[i] = names.index(MATERIAL_CLASS[m])
    return lut[materials], names


# --------------------------------------------------------------------------------------
# Kernel sets
# --------------------------------------------------------------------------------------


def _as_kernel_list(kernels: Any) -> list[Kernel]:
    if isinstance(kernels, Kernel):
        return [kernels]
    out = list(kernels)
    if not out or not all(isinstance(k, Kernel) for k in out):
        raise InputError("kernels must be a Kernel or a non-empty sequence of Kernels")
    return out


def _check_set(kernels: list[Kernel], spacing_mm: Sequence[float] | None) -> float:
    """Check that kernels to be summed agree; return their density (g/cm³)."""
    first = kernels[0]
    for k in kernels:
        where = k.attrs.get("path", "kernel")
        if spacing_mm is not None and not voxels_match(k.voxel_mm, spacing_mm):
            raise InputError(
                f"{where}: kernel voxel {format_voxel(k.voxel_mm)} does not match the case "
                f"spacing {format_voxel(spacing_mm)}; generate a kernel at the case spacing"
            )
        if not voxels_match(k.voxel_mm, first.voxel_mm):
            raise InputError(f"{where}: kernels of different voxel sizes cannot be summed")
        if not math.isclose(k.density_g_cm3, first.density_g_cm3, rel_tol=1e-6):
            raise InputError(f"{where}: kernels of different densities cannot be summed "
                             f"({k.density_g_cm3:g} vs {first.density_g_cm3:g} g/cm3)")  # fmt: skip
        if k.nuclide != first.nuclide:
            raise InputError(f"{where}: kernels of different nuclides cannot be summed")
    parts = [k.emissions for k in kernels]
    if len(kernels) > 1 and ("all" in parts or len(set(parts)) != len(parts)):
        log.warning("summing kernels with emissions %s: some radiation is counted twice", parts)
    return float(first.density_g_cm3)


def _check_maps(activity: np.ndarray, density: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(activity)
    d = np.asarray(density)
    if a.ndim != 3 or d.shape != a.shape:
        raise InputError(f"activity and density must be 3-D arrays of one shape, got "
                         f"{a.shape} and {d.shape}")  # fmt: skip
    # a float64 sum is finite exactly when every value is (no overflow from float32 input)
    if not (np.isfinite(a.sum(dtype=np.float64)) and np.isfinite(d.sum(dtype=np.float64))):
        raise InputError("activity and density must be finite")
    if a.size and (a.min() < 0 or d.min() < 0):
        raise InputError("activity and density must be non-negative")
    return a, d


def vdk_dose(
    activity_MBq: np.ndarray,
    density: np.ndarray,
    kernels: Kernel | Sequence[Kernel],
    backend: str = "auto",
    *,
    spacing_mm: Sequence[float] | None = None,
    device: str | None = None,
    precision: str = "float32",
    max_bytes: int | None = None,
    density_floor_g_cm3: float = DENSITY_FLOOR_G_CM3,
    correct_density: bool = True,
    convolver: FFTConvolver | None = None,
) -> np.ndarray:
    """Dose rate of ``activity_MBq`` by convolution with one kernel set, density-corrected.

    Parameters
    ----------
    activity_MBq : ndarray (z, y, x)
        Activity per voxel, MBq.
    density : ndarray (z, y, x)
        Mass density, g/cm³.
    kernels : Kernel or sequence of Kernel
        Kernels of one medium, summed (e.g. the 9³ β and the 99³ photon kernel).
    backend : {"auto", "scipy", "torch", "cupy"}
        FFT backend (:func:`mcdose.vdk.convolve.resolve_backend`).
    spacing_mm : (x, y, z), optional
        Voxel size of the maps; when given it must equal the kernels' voxel size.
    device, precision, max_bytes
        See :class:`mcdose.vdk.convolve.FFTConvolver`.
    density_floor_g_cm3 : float
        Lowest density used in the correction (default 0.05 g/cm³).
    correct_density : bool
        Apply ``× ρ_kernel / ρ`` (default True).
    convolver : FFTConvolver, optional
        Reuse a convolver built for these kernels (its spectra stay cached across calls).

    Returns
    -------
    ndarray float32 (z, y, x)
        Absorbed-dose rate, Gy/s.
    """
    ks = _as_kernel_list(kernels)
    rho_k = _check_set(ks, spacing_mm)
    a, d = _check_maps(activity_MBq, density)
    if convolver is None:
        convolver = FFTConvolver(combine_kernels([k.kernel for k in ks]), backend=backend,
                                 device=device, precision=precision,
                                 max_bytes=max_bytes)  # fmt: skip
    if correct_density:
        # × 1e6 decays/s per MBq × ρ_kernel / max(ρ, floor), on the convolution's device
        if not density_floor_g_cm3 > 0:
            raise InputError(f"density floor must be > 0 g/cm3, got {density_floor_g_cm3}")
        (dose,) = convolver.convolve(a, nonnegative=True, factor=rho_k * 1e6, divide_by=d,
                                     floor=density_floor_g_cm3)  # fmt: skip
    else:
        (dose,) = convolver.convolve(a, nonnegative=True, factor=1e6)  # MBq -> decays/s
    return dose


def tissue_class_dose(
    activity_MBq: np.ndarray,
    density: np.ndarray,
    class_kernels: Mapping[str, Kernel | Sequence[Kernel]],
    *,
    spacing_mm: Sequence[float] | None = None,
    classes: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    backend: str = "auto",
    device: str | None = None,
    precision: str = "float32",
    max_bytes: int | None = None,
    density_floor_g_cm3: float = DENSITY_FLOOR_G_CM3,
    convolver: FFTConvolver | None = None,
) -> np.ndarray:
    """Dose rate by tissue-class convolution (one kernel set per class, see module doc).

    Parameters
    ----------
    activity_MBq, density : ndarray (z, y, x)
        MBq per voxel; g/cm³.
    class_kernels : mapping class name → Kernel or sequence of Kernel
        Kernels per class (keys of :data:`TISSUE_CLASSES`); classes without voxels may be
        left out.
    spacing_mm : (x, y, z), optional
        Checked against every kernel's voxel size.
    classes, class_names : optional
        Precomputed classification (default :func:`classify_tissue` of ``density``).
    backend, device, precision, max_bytes, density_floor_g_cm3
        As for :func:`vdk_dose`.
    convolver : FFTConvolver, optional
        Built for the class kernels in the order of ``class_kernels``.

    Returns
    -------
    ndarray float32 (z, y, x)
        Absorbed-dose rate, Gy/s.
    """
    a, d = _check_maps(activity_MBq, density)
    if classes is None:
        classes, class_names = classify_tissue(d)
    elif class_names is None:
        raise InputError("class_names must accompany classes")
    class_names = tuple(class_names)
    counts = np.bincount(np.asarray(classes, dtype=np.intp).ravel(), minlength=len(class_names))
    present = {class_names[i] for i in np.flatnonzero(counts)}
    missing = sorted(present - set(class_kernels))
    if missing:
        raise InputError(f"no kernel for tissue class(es) {', '.join(missing)} present in "
                         f"the volume")  # fmt: skip
    order = list(class_kernels)
    sets = [_as_kernel_list(class_kernels[c]) for c in order]
    densities = [_check_set(s, spacing_mm) for s in sets]
    if convolver is None:
        convolver = FFTConvolver([combine_kernels([k.kernel for k in s]) for s in sets],
                                 backend=backend, device=device, precision=precision,
                                 max_bytes=max_bytes)  # fmt: skip
    if not density_floor_g_cm3 > 0:
        raise InputError(f"density floor must be > 0 g/cm3, got {density_floor_g_cm3}")
    # each class's dose, × 1e6 decays/s per MBq × ρ_class / max(ρ, floor) on the device
    results = convolver.convolve(a, which=[name in present for name in order],
                                 nonnegative=True, factor=[r * 1e6 for r in densities],
                                 divide_by=d, floor=density_floor_g_cm3)  # fmt: skip
    dose = np.zeros(a.shape, dtype=np.float32)
    for name, res in zip(order, results, strict=True):
        if name in present:
            np.copyto(dose, res, where=classes == class_names.index(name))
    return dose


# --------------------------------------------------------------------------------------
# Case files
# --------------------------------------------------------------------------------------


def default_kernel_sizes(
    voxel_mm: Sequence[float],
    *,
    nuclide: str = "Lu-177",
    material: str = "soft_tissue",
    density_g_cm3: float | None = None,
    shape: Sequence[int] | None = None,
) -> dict[str, tuple[int, int, int]]:
    """Default kernel sizes (voxels along x, y, z) for a grid.

    Electrons: per axis at least 9 (the paper) and 2·⌈R/Δ⌉ + 3, with R the CSDA range of the
    nuclide's largest energy in the kernel medium (so the kernel holds the whole β track plus
    a voxel).  Photons: a cube of 2·round(120 mm/Δ_min) + 1 voxels, at most 99 (the paper's
    99³ at 0.98×0.98×3 mm; 51³ at 4.7952 mm).  With ``shape`` (z, y, x) the sizes are
    cropped to 2n − 1 (offsets beyond the grid are never used).
    """
    from mcdose.nuclides import load_nuclide
    from mcdose.physics.electron_data import csda_range

    voxel = normalize_voxel_mm(voxel_mm)
    rho = kernel_density(material, density_g_cm3)
    nuc = load_nuclide(nuclide)
    r_mm = float(csda_range(material, [float(nuc.max_energy_keV)])[0]) / rho * 10.0
    electrons = [max(ELECTRON_KERNEL_MIN_SIZE, 2 * math.ceil(r_mm / v) + 3) for v in voxel]
    n_p = min(PHOTON_KERNEL_MAX_SIZE, 2 * round(PHOTON_KERNEL_HALF_EXTENT_MM / min(voxel)) + 1)
    photons = [n_p] * 3
    if shape is not None:
        nz, ny, nx = (int(n) for n in shape)
        cap = (2 * nx - 1, 2 * ny - 1, 2 * nz - 1)
        electrons = [min(n, c) for n, c in zip(electrons, cap, strict=True)]
        photons = [min(n, c) for n, c in zip(photons, cap, strict=True)]
    return {"electrons": tuple(electrons), "photons": tuple(photons)}  # type: ignore[dict-item]


def case_kernels(
    nuclide: str,
    spacing_mm: Sequence[float],
    shape: Sequence[int],
    *,
    mode: str = "single",
    classes: Sequence[str] | None = None,
    histories: int = DEFAULT_KERNEL_HISTORIES,
    seed: int = 0,
    device: str = "auto",
    cache: bool = True,
    progress: bool = False,
    generate: bool = True,
) -> dict[str, list[Any]]:
    """Kernel sets for a case grid: ``{class: [β kernel, photon kernel]}``.

    ``mode="single"`` gives ``{"soft_tissue": [...]}`` (1.04 g/cm³); ``"tissue"`` one set per
    class in ``classes`` (default all of :data:`TISSUE_CLASSES`).  With ``generate=False``
    the cache keys are returned instead of kernels (cheap; used to skip finished stages).
    """
    from mcdose.vdk.cache import get_kernel, kernel_key

    if mode not in ("single", "tissue"):
        raise InputError(f"kernels must be 'single' or 'tissue', got {mode!r}")
    names = ["soft_tissue"] if mode == "single" else list(classes or TISSUE_CLASSES)
    out: dict[str, list[Any]] = {}
    for cls in names:
        material, rho = TISSUE_CLASSES[cls]
        sizes = default_kernel_sizes(spacing_mm, nuclide=nuclide, material=material,
                                     density_g_cm3=rho, shape=shape)  # fmt: skip
        items = []
        for part in ("electrons", "photons"):
            n = histories if part == "electrons" else PHOTON_HISTORY_FACTOR * histories
            kw = dict(density_g_cm3=rho, emissions=part, histories=n, seed=seed)
            if generate:
                items.append(get_kernel(nuclide, spacing_mm, sizes[part], material, **kw,
                                        device=device, progress=progress, cache=cache))  # fmt: skip
            else:
                items.append(kernel_key(nuclide, spacing_mm, sizes[part], material, **kw))
        out[cls] = items
    return out


def _kernel_digest(k: Kernel) -> str:
    h = hashlib.sha256(np.ascontiguousarray(k.kernel, dtype=np.float32).tobytes())
    h.update(json.dumps([k.voxel_mm, k.density_g_cm3, k.nuclide]).encode())
    return "file:" + h.hexdigest()[:16]


@dataclass
class VdkResult:
    """What :func:`vdk_case` computed.

    Attributes
    ----------
    path : Path
        The case file.
    dataset : str
        Where the dose rate was written (``dose/vdk`` by default).
    dose_rate_Gy_s : ndarray float32
        The dose rate.
    params : dict
        Stage parameters (stored as ``params``; equal ones skip the stage).
    kernels : dict
        Class → descriptions of the kernels used.
    backend : str
        FFT backend and device, e.g. ``"scipy/cpu"``.
    timings : dict
        ``kernels_s`` (loading or generating), ``convolution_s``, ``total_s``.
    """

    path: Path
    dataset: str
    dose_rate_Gy_s: np.ndarray
    params: dict
    kernels: dict
    backend: str
    timings: dict = field(default_factory=dict)


def vdk_case(
    path: str | Path,
    *,
    source: str = "spect",
    kernels: str = "single",
    kernel_files: Sequence[str | Path] | None = None,
    output: str = "dose/vdk",
    histories: int = DEFAULT_KERNEL_HISTORIES,
    seed: int = 0,
    device: str = "auto",
    backend: str = "auto",
    precision: str = "float32",
    max_bytes: int | None = None,
    density_floor_g_cm3: float = DENSITY_FLOOR_G_CM3,
    cache: bool = True,
    force: bool = False,
    progress: bool = False,
    convolvers: dict | None = None,
) -> VdkResult | None:
    """VDK dose rate of a case file's activity, written to ``dose/vdk``.

    Parameters
    ----------
    path : path-like
        Case file with ``density`` and the source dataset.
    source : {"spect", "activity"}
        Activity to convolve (MBq per voxel).
    kernels : {"single", "tissue", "learned"}
        The paper's single soft-tissue kernel with density scaling, tissue classes, or the
        learned density-specific kernels of :mod:`lvdk` (:func:`mcdose.vdk.learned.learned_case`;
        needs torch).
    kernel_files : sequence of path, optional
        Use these kernel files (summed; e.g. a β and a photon kernel) instead of cached or
        generated ones (``kernels="single"`` only).  Their voxel size must equal the case
        spacing.
    output : str
        Dataset to write (default ``dose/vdk``).
    histories, seed, device
        Monte Carlo settings of kernels that have to be generated: decays of the β kernel
        (the photon kernel gets 10×).
    backend, precision, max_bytes
        Convolution settings (:class:`~mcdose.vdk.convolve.FFTConvolver`).
    density_floor_g_cm3 : float
        Lowest density in the correction.
    cache : bool
        Read and store generated kernels in the kernel cache.
    force : bool
        Recompute even if ``output`` holds a result with the same parameters.
    progress : bool
        Progress bars while kernels are generated.
    convolvers : dict, optional
        A dict shared between calls (e.g. all cases of one command) in which convolvers and
        their kernel spectra are kept.

    Returns
    -------
    VdkResult or None
        None when the stage was already done (skipped).

    Raises
    ------
    InputError
        Missing source dataset, kernel voxel size differing from the case spacing, bad
        parameters.
    """
    from mcdose.io.case import (
        dose_attrs,
        read_case_info,
        read_dataset,
        source_fingerprint,
        stage_done,
        write_datasets,
    )
    from mcdose.vdk.kernels import read_kernel

    t0 = time.perf_counter()
    path = Path(path)
    if source not in ("spect", "activity"):
        raise InputError(f"source must be 'spect' or 'activity', got {source!r}")
    if kernels not in ("single", "tissue", "learned"):
        raise InputError(f"kernels must be 'single', 'tissue' or 'learned', got {kernels!r}")
    if kernels == "learned":
        if kernel_files:
            raise InputError("kernel files can only be used with kernels='single'")
        from mcdose.vdk.learned import learned_case

        return learned_case(path, source=source, output=output, histories=histories,
                            seed=seed, device=device, force=force, progress=progress)
    if not output.startswith("dose/"):
        raise InputError(f"output must be a dataset under dose/, got {output!r}")
    info = read_case_info(path)
    if source not in info.datasets:
        raise InputError(f"{path}: case has no '{source}' dataset to convolve "
                         f"(present: {', '.join(info.datasets) or 'none'})")  # fmt: skip
    if "density" not in info.datasets or info.shape is None:
        raise InputError(f"{path}: case has no 'density' dataset")
    spacing = info.geometry.spacing_mm
    nuclide = info.nuclide

    files: list[Kernel] | None = None
    if kernel_files:
        if kernels != "single":
            raise InputError("kernel files can only be used with kernels='single'")
        files = [read_kernel(p) for p in kernel_files]
        rho = _check_set(files, spacing)
        from mcdose.nuclides import normalize_nuclide_name

        if files[0].nuclide != normalize_nuclide_name(nuclide):
            raise InputError(f"{kernel_files[0]}: kernel nuclide {files[0].nuclide} does not "
                             f"match the case nuclide {nuclide}")  # fmt: skip
        keys: dict[str, list[str]] = {"soft_tissue": [_kernel_digest(k) for k in files]}
        densities = {"soft_tissue": rho}
    else:
        keys = case_kernels(nuclide, spacing, info.shape, mode=kernels, histories=histories,
                            seed=seed, generate=False)  # fmt: skip
        densities = {c: TISSUE_CLASSES[c][1] for c in keys}
    params = {
        "source": source,
        "kernels": kernels,
        "kernel_keys": keys,
        "density_floor_g_cm3": float(density_floor_g_cm3),
        "precision": precision,
        # which activity: a recomputed source (a new SPECT) makes this stage stale
        "source_fingerprint": source_fingerprint(path, source),
    }
    if not force and stage_done(path, output, params):
        return None

    activity = read_dataset(path, source)
    density = read_dataset(path, "density")
    t_k = time.perf_counter()
    classes = names = None
    if files is not None:
        sets = {"soft_tissue": files}
    elif kernels == "single":
        sets = case_kernels(nuclide, spacing, info.shape, mode="single", histories=histories,
                            seed=seed, device=device, cache=cache, progress=progress)  # fmt: skip
    else:
        classes, names = classify_tissue(density)
        sets = case_kernels(nuclide, spacing, info.shape, mode="tissue", histories=histories,
                            seed=seed, device=device, cache=cache, progress=progress)  # fmt: skip
    kernels_s = time.perf_counter() - t_k

    conv_key = (json.dumps(keys, sort_keys=True), backend, device, precision, max_bytes)
    convolvers = {} if convolvers is None else convolvers
    convolver = convolvers.get(conv_key)
    if convolver is None:
        combined = [combine_kernels([k.kernel for k in s]) for s in sets.values()]
        # --device picks the FFT device only where the backend has a choice
        fft_device = device if backend in ("auto", "torch") and device != "auto" else None
        convolver = FFTConvolver(combined, backend=backend, device=fft_device,
                                 precision=precision, max_bytes=max_bytes)  # fmt: skip
        convolvers[conv_key] = convolver
    t_c = time.perf_counter()
    if kernels == "single":
        dose = vdk_dose(activity, density, sets["soft_tissue"], spacing_mm=spacing,
                        density_floor_g_cm3=density_floor_g_cm3, convolver=convolver)  # fmt: skip
    else:
        dose = tissue_class_dose(activity, density, sets, spacing_mm=spacing, classes=classes,
                                 class_names=names, density_floor_g_cm3=density_floor_g_cm3,
                                 convolver=convolver)  # fmt: skip
    conv_s = time.perf_counter() - t_c

    described = {c: [k.describe() for k in s] for c, s in sets.items()}
    hist = [int(k.histories) for s in sets.values() for k in s]
    seeds = [k.attrs.get("seed") for s in sets.values() for k in s]
    attrs = dose_attrs(
        "vdk", nuclide, params,
        histories=max(hist) if hist else None,
        seed=seeds[0] if seeds and isinstance(seeds[0], int) else None,
        units="Gy/s",
        source=source,
        kernels=kernels,
        kernel_descriptions=json.dumps(described),
        kernel_density_g_cm3=json.dumps(densities),
        density_floor_g_cm3=float(density_floor_g_cm3),
        backend=f"{convolver.backend}/{convolver.device}",
    )  # fmt: skip
    write_datasets(path, {output: dose}, attrs={output: attrs})
    return VdkResult(
        path=path,
        dataset=output,
        dose_rate_Gy_s=dose,
        params=params,
        kernels=described,
        backend=f"{convolver.backend}/{convolver.device}",
        timings={"kernels_s": kernels_s, "convolution_s": conv_s,
                 "total_s": time.perf_counter() - t0},  # fmt: skip
    )
