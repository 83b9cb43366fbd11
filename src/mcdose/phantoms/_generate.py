"""Presets, the :class:`Phantom` container and :func:`generate_phantom` (the voxeliser)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mcdose.errors import InputError
from mcdose.io.case import Geometry

from ._activity import lookup_tables, sample_uptake
from ._anatomy import Anatomy, sample_anatomy, tissue_code
from ._fields import LatticeField
from ._lesions import sample_lesions
from ._shapes import sub_ranges
from ._tissues import (
    DENSITY_MAX_G_CM3,
    DENSITY_MIN_G_CM3,
    LESION_BASE,
    ORGAN_LABELS,
    TISSUE_CODE,
    TISSUE_DENSITY,
    TISSUE_TEXTURE,
    lesion_name,
)

MODEL = "mcdose-torso"
MODEL_VERSION = 1

#: random-field streams (see :mod:`._fields`)
_STREAM_TEXTURE, _STREAM_BOWEL, _STREAM_UPTAKE = 1, 2, 3
#: correlation lengths (Gaussian σ, mm) of density texture, bowel pattern, uptake pattern
TEXTURE_SIGMA_MM, BOWEL_SIGMA_MM, UPTAKE_SIGMA_MM = 6.0, 9.0, 5.0
#: bowel lattice is fixed (it shapes anatomy); texture lattices follow the voxel size
BOWEL_LATTICE_MM = 5.0
#: voxels per slab processed at once (bounds the temporaries to ~100 MB)
_SLAB_VOXELS = 2_000_000


@dataclass(frozen=True)
class PhantomPreset:
    """A phantom grid: shape ``(z, y, x)`` and spacing ``(x, y, z)`` in mm."""

    name: str
    shape_zyx: tuple[int, int, int]
    spacing_mm_xyz: tuple[float, float, float]
    description: str = ""

    @property
    def fov_mm_xyz(self) -> tuple[float, float, float]:
        """Extent of the grid (x, y, z) in mm."""
        nz, ny, nx = self.shape_zyx
        sx, sy, sz = self.spacing_mm_xyz
        return (nx * sx, ny * sy, nz * sz)

    @property
    def n_voxels(self) -> int:
        return int(np.prod(self.shape_zyx))


#: ``paper``: the DblurDoseNet grid (512×512×130 at 0.98×0.98×3 mm, 50×50×39 cm);
#: ``small``: 4 mm voxels, < 10⁶ voxels, for CPU Monte Carlo; ``tiny``: 12 mm, unit tests.
PRESETS: dict[str, PhantomPreset] = {
    "paper": PhantomPreset(
        "paper", (130, 512, 512), (0.98, 0.98, 3.0), "DblurDoseNet grid, 34 M voxels"
    ),
    "small": PhantomPreset(
        "small", (96, 88, 112), (4.0, 4.0, 4.0), "4 mm voxels, 0.95 M voxels (CPU Monte Carlo)"
    ),
    "tiny": PhantomPreset("tiny", (32, 28, 38), (12.0, 12.0, 12.0), "12 mm voxels, tests"),
}


@dataclass
class Phantom:
    """A voxelised virtual patient.

    Attributes
    ----------
    density : numpy.ndarray
        Mass density, g/cm³, float32 ``(z, y, x)``.
    activity_MBq : numpy.ndarray
        Activity per voxel, MBq, float32 ``(z, y, x)``; zero outside the body.
    labels : numpy.ndarray
        int16 ``(z, y, x)``; names in ``label_names``.
    label_names : dict of int to str
        Every label value present in ``labels`` and its name (docs/DEVELOPING.md).
    geometry : mcdose.io.case.Geometry
        Spacing and origin (x, y, z) in mm.
    params : dict
        JSON-able provenance: seed, preset, grid and every sampled anatomy / uptake parameter.
    """

    density: np.ndarray
    activity_MBq: np.ndarray
    labels: np.ndarray
    label_names: dict[int, str]
    geometry: Geometry
    params: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.density.shape)  # type: ignore[return-value]

    @property
    def total_activity_MBq(self) -> float:
        return float(self.activity_MBq.sum(dtype=np.float64))

    def label_value(self, name: str) -> int:
        """Value of the label called ``name`` (InputError if absent)."""
        for value, n in self.label_names.items():
            if n == name:
                return value
        raise InputError(f"label {name!r} is not in this phantom")

    def mask(self, name: str) -> np.ndarray:
        """Boolean mask of label ``name``."""
        return self.labels == self.label_value(name)


def resolve_grid(
    preset: str | PhantomPreset, shape=None, spacing_mm=None
) -> tuple[PhantomPreset, tuple[int, int, int], tuple[float, float, float]]:
    """Preset plus overrides → (preset, shape zyx, spacing xyz).

    With only ``spacing_mm`` the preset's field of view is kept (shape rounded); with only
    ``shape`` the spacing is chosen to keep it.
    """
    if isinstance(preset, PhantomPreset):
        pre = preset
    elif preset in PRESETS:
        pre = PRESETS[preset]
    else:
        raise InputError(f"unknown phantom preset {preset!r}; choose from {', '.join(PRESETS)}")
    fov = np.asarray(pre.fov_mm_xyz)
    if spacing_mm is not None:
        sp = np.broadcast_to(np.asarray(spacing_mm, dtype=np.float64), (3,)).copy()
        if not np.all(np.isfinite(sp)) or np.any(sp <= 0):
            raise InputError(f"spacing_mm must be positive, got {spacing_mm!r}")
    if shape is not None:
        sh = np.asarray(shape, dtype=np.int64).reshape(-1)
        if sh.size != 3 or np.any(sh < 1):
            raise InputError(f"shape must be 3 positive integers (z, y, x), got {shape!r}")
        if spacing_mm is None:
            sp = fov / sh[::-1]
    elif spacing_mm is not None:
        sh = np.maximum(1, np.rint(fov / sp).astype(np.int64))[::-1]
    else:
        sh, sp = np.asarray(pre.shape_zyx), np.asarray(pre.spacing_mm_xyz, dtype=np.float64)
    return (
        pre,
        (int(sh[0]), int(sh[1]), int(sh[2])),
        (float(sp[0]), float(sp[1]), float(sp[2])),
    )


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or int(seed) < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def generate_phantom(
    seed: int,
    preset: str | PhantomPreset = "small",
    *,
    shape: tuple[int, int, int] | None = None,
    spacing_mm: tuple[float, float, float] | float | None = None,
) -> Phantom:
    """Generate a random torso phantom (density, Lu-177 DOTATATE activity, labels).

    The anatomy (body habitus, fat layer, organ sizes / positions / rotations, lesions) is
    drawn from ``numpy.random.Generator(PCG64(seed))`` in continuous coordinates and then
    sampled at the voxel centres of the grid, so one seed gives the same anatomy on every
    grid (up to sampling).  Generation runs slab by slab (memory: the four output arrays
    plus ~100 MB).

    Parameters
    ----------
    seed : int
        Non-negative; the whole phantom is a function of it (and the grid).
    preset : {"paper", "small", "tiny"} or PhantomPreset
        Grid; see :data:`PRESETS`.
    shape : tuple of 3 int, optional
        Override the preset's ``(z, y, x)`` shape.
    spacing_mm : float or tuple of 3 float, optional
        Override the preset's ``(x, y, z)`` spacing in mm (alone: keeps the preset's field
        of view).

    Returns
    -------
    Phantom

    Raises
    ------
    InputError
        Negative / non-integer seed, unknown preset, bad shape or spacing.
    """
    seed = _check_seed(seed)
    pre, shape_zyx, spacing = resolve_grid(preset, shape, spacing_mm)
    nz, ny, nx = shape_zyx
    origin = tuple(-(n - 1) / 2.0 * s for n, s in zip((nx, ny, nz), spacing, strict=True))
    geometry = Geometry(spacing_mm=spacing, origin_mm=origin)

    rng = np.random.Generator(np.random.PCG64(seed))
    p = sample_anatomy(rng)
    shift = np.asarray(p["shift_mm"])
    # voxel centres in the anatomy frame (float32 keeps the temporaries small)
    xs = (origin[0] + spacing[0] * np.arange(nx) - shift[0]).astype(np.float32)
    ys = (origin[1] + spacing[1] * np.arange(ny) - shift[1]).astype(np.float32)
    zs = (origin[2] + spacing[2] * np.arange(nz) - shift[2]).astype(np.float32)
    lo = (float(xs[0]), float(ys[0]), float(zs[0]))
    hi = (float(xs[-1]), float(ys[-1]), float(zs[-1]))

    bowel_field = LatticeField(seed, _STREAM_BOWEL, BOWEL_LATTICE_MM, BOWEL_SIGMA_MM, lo, hi)
    anatomy = Anatomy(p, bowel_field)
    lesions = sample_lesions(rng, anatomy)
    uptake = sample_uptake(rng, lesions)
    h_tex = max(3.0, 0.5 * max(spacing))
    texture = LatticeField(seed, _STREAM_TEXTURE, h_tex, max(TEXTURE_SIGMA_MM, h_tex), lo, hi)
    h_up = max(3.0, 0.5 * max(spacing))
    het = LatticeField(seed, _STREAM_UPTAKE, h_up, max(UPTAKE_SIGMA_MM, h_up), lo, hi)

    label_of = dict(ORGAN_LABELS)
    for les in lesions:
        label_of[lesion_name(les["k"], les["host"])] = LESION_BASE + les["k"]
    items = [
        (shape_, label_of[name], tissue_code(tis))
        for shape_, name, tis in anatomy.paint_list(lesions)
    ]
    conc_lut, sigma_lut = lookup_tables(uptake, lesions)
    voxel_ml = geometry.voxel_volume_cm3
    cortical = TISSUE_CODE["cortical_bone"]
    necrosis = TISSUE_CODE["necrosis"]
    bone_conc = np.float32(uptake["cortical_bone_MBq_per_ml"])

    labels = np.zeros(shape_zyx, dtype=np.int16)
    density = np.empty(shape_zyx, dtype=np.float32)
    activity = np.empty(shape_zyx, dtype=np.float32)
    step = max(1, _SLAB_VOXELS // (ny * nx))
    tissue = np.zeros((min(step, nz), ny, nx), dtype=np.uint8)
    counts = np.zeros(conc_lut.size, dtype=np.int64)
    per_label = np.zeros(conc_lut.size, dtype=np.float64)
    for z0 in range(0, nz, step):
        z1 = min(nz, z0 + step)
        zsl = zs[z0:z1]
        lab = labels[z0:z1]
        tis = tissue[: z1 - z0]
        tis[...] = TISSUE_CODE["air"]
        for shape_, value, tcode in items:
            r = sub_ranges(shape_, xs, ys, zsl)
            if r is None:
                continue
            (a0, a1), (b0, b1), (c0, c1) = r
            m = shape_.inside_grid(xs[c0:c1], ys[b0:b1], zsl[a0:a1])
            lab[a0:a1, b0:b1, c0:c1][m] = value
            if tcode >= 0:
                tis[a0:a1, b0:b1, c0:c1][m] = tcode
        # density: tissue value × (1 + amplitude × texture)
        t = texture.on_grid(xs, ys, zsl)
        np.clip(t, -3.0, 3.0, out=t)
        dens = TISSUE_DENSITY[tis]
        dens *= 1.0 + TISSUE_TEXTURE[tis] * t
        np.clip(dens, DENSITY_MIN_G_CM3, DENSITY_MAX_G_CM3, out=dens)
        density[z0:z1] = dens
        # activity: label concentration × log-normal heterogeneity × voxel volume
        conc = conc_lut[lab]
        conc[(tis == cortical) & (lab < LESION_BASE)] = bone_conc
        conc[tis == necrosis] = 0.0
        sig = sigma_lut[lab]
        het_mask = sig > 0
        if het_mask.any():
            hv = np.clip(het.on_grid(xs, ys, zsl), -3.0, 3.0)[het_mask]
            s = sig[het_mask]
            conc[het_mask] *= np.exp(s * hv - 0.5 * s * s)
        conc *= np.float32(voxel_ml)
        activity[z0:z1] = conc
        flat = lab.ravel()
        counts += np.bincount(flat, minlength=conc_lut.size)
        per_label += np.bincount(flat, weights=conc.ravel(), minlength=conc_lut.size)

    names_all = {v: n for n, v in label_of.items()}
    label_names = {int(v): names_all[v] for v in np.nonzero(counts)[0]}
    label_names.setdefault(0, "background")
    for les in lesions:
        les["voxels"] = int(counts[LESION_BASE + les["k"]])

    params = {
        "model": MODEL,
        "model_version": MODEL_VERSION,
        "seed": seed,
        "preset": pre.name,
        "shape_zyx": list(shape_zyx),
        "spacing_mm": list(spacing),
        "origin_mm": list(origin),
        "anatomy": p,
        "lesions": lesions,
        "uptake": uptake,
        "fields": {
            "texture": {"lattice_mm": h_tex, "sigma_mm": max(TEXTURE_SIGMA_MM, h_tex)},
            "bowel": {"lattice_mm": BOWEL_LATTICE_MM, "sigma_mm": BOWEL_SIGMA_MM},
            "uptake": {"lattice_mm": h_up, "sigma_mm": max(UPTAKE_SIGMA_MM, h_up)},
        },
        "volumes_ml": {label_names[v]: float(counts[v] * voxel_ml) for v in label_names},
        "activity_MBq": {label_names[v]: float(per_label[v]) for v in label_names},
        "total_activity_MBq": float(per_label.sum()),
    }
    return Phantom(density, activity, labels, label_names, geometry, params)
