"""Training data of the learned dose kernels: density patches and their Monte Carlo kernels.

For every sampled *source voxel* this stage stores the density patch ``N³`` around it and
the dose kernel ``N³`` (Gy per decay) that mcdose's Monte Carlo gives for a unit source
uniform in the centre voxel, with its relative standard error.  It is the training set of
:mod:`lvdk` (Melodia 2018; Akhavanallaf et al., EJNMMI 48, 670 (2021)).

Sources
-------
* **phantom**: voxels of the factory's virtual patients (:func:`mcdose.phantoms.generate_phantom`
  at the stage's voxel size), drawn from the body with weights favouring neighbourhoods that
  hold lung, bone or the body edge (air) — where a single kernel is wrong.
* **synthetic**: soft tissue (0.95–1.10 g/cm³, ±2 % texture) with a slab (a random plane) or a
  sphere of lung, bone, fat or air, or a homogeneous patch of one of them; the source voxel
  falls on either side.

Monte Carlo
-----------
The kernel is simulated in a larger region: the patch padded by ``pad`` voxels on each side
with its real surroundings (phantoms; air beyond the phantom grid) or the synthetic pattern
continued, so that electrons and photons scattered back from beyond the patch edge are
counted.  The electron emissions (β, conversion, Auger electrons) and the photon emissions
are run separately (``electron_histories`` and ``photon_histories`` decays, 10 batches each);
their doses add up to the kernel, cropped to ``N³``.  Uncertainty: the batch estimate of
each part, combined in quadrature.

File
----
One HDF5 file (default ``kernel_patches.h5``).  Root attribute ``params`` (JSON of the
stage parameters; a different set refuses to resume), ``schema="mcdose-kernel-patches"``,
``provenance``.  Chunk ``k`` is the group ``chunks/<k:05d>`` with datasets

==================  ===================  ==================================================
``density``         (n, N, N, N) g/cm³   density patch around the source (centre = source)
``density_region``  (n, S, S, S) g/cm³   the simulated region, S = N + 2·pad
``kernel``          (n, N, N, N) Gy      dose per decay (electrons + photons)
``kernel_electron``, ``kernel_photon``   the two parts, Gy per decay
``uncertainty``     (n, N, N, N) 1       relative standard error of ``kernel``
``energy_fraction`` (n,) 1               Σ kernel · mass / emitted energy per decay
``kind``            (n,) int8            0 phantom, 1 synthetic
``info``            attribute            JSON list: per patch its origin and MC seeds
==================  ===================  ==================================================

Every chunk is written atomically (a copy of the file with the chunk added, renamed over
it), and its content depends only on ``(seed, chunk index)``, so an interrupted run resumes
at the first missing chunk and gives the same file as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mcdose.errors import InputError

log = logging.getLogger(__name__)

__all__ = [
    "AIR_DENSITY_G_CM3",
    "PATCH_SCHEMA",
    "PatchConfig",
    "build_kernel_patches",
    "chunk_specs",
    "read_kernel_patches",
    "simulate_patch",
    "synthetic_region",
]

PATCH_SCHEMA = "mcdose-kernel-patches"
#: Density of air outside a phantom grid, g/cm³ (ICRU 46 dry air).
AIR_DENSITY_G_CM3 = 0.0012
KEV_TO_J = 1.602176634e-16

#: Synthetic inclusion materials: name → density range, g/cm³.
_INCLUSIONS: dict[str, tuple[float, float]] = {
    "lung": (0.15, 0.45),
    "bone": (1.2, 1.95),
    "air": (AIR_DENSITY_G_CM3, AIR_DENSITY_G_CM3),
    "fat": (0.90, 0.97),
}


@dataclass(frozen=True)
class PatchConfig:
    """Parameters of the patch stage (all recorded in the file; a resume must match).

    Attributes
    ----------
    size : int
        Patch and kernel size N (odd), voxels per axis (default 9, Melodia's).
    voxel_mm : float
        Cubic voxel size, mm (default 4, the ``small`` preset; 4.7952 is the SPECT's).
    pad : int
        Voxels of surroundings simulated on each side of the patch.
    electron_histories, photon_histories : int
        Decays of the electron and photon parts per patch.
    patches_per_chunk : int
        Patches per chunk (the unit of atomic writing and resume).
    chunks : int
        Number of chunks.
    synthetic_fraction : float
        Fraction of a chunk's patches that are synthetic (the rest from one phantom).
    interface_weight : float
        Sampling weight of a phantom voxel whose ``N³`` neighbourhood holds lung, bone or air,
        relative to one whose neighbourhood holds none (1).
    preset : str
        Phantom preset whose field of view the phantoms use (their grid is ``voxel_mm``).
    nuclide : str
    seed : int
        Base seed: chunk ``k`` draws everything from ``SeedSequence([seed, k])``.
    batches : int
        MC batches of the uncertainty estimate.
    """

    size: int = 9
    voxel_mm: float = 4.0
    pad: int = 6
    electron_histories: int = 50_000
    photon_histories: int = 200_000
    patches_per_chunk: int = 32
    chunks: int = 32
    synthetic_fraction: float = 0.5
    interface_weight: float = 8.0
    preset: str = "small"
    nuclide: str = "Lu-177"
    seed: int = 0
    batches: int = 10

    def __post_init__(self) -> None:
        if self.size < 1 or self.size % 2 == 0:
            raise InputError(f"patch size must be odd and >= 1, got {self.size}")
        if not (np.isfinite(self.voxel_mm) and self.voxel_mm > 0):
            raise InputError(f"voxel size must be > 0 mm, got {self.voxel_mm}")
        if self.pad < 0:
            raise InputError(f"pad must be >= 0 voxels, got {self.pad}")
        for name in ("electron_histories", "photon_histories"):
            if int(getattr(self, name)) < self.batches:
                raise InputError(f"{name} must be at least batches ({self.batches})")
        if self.patches_per_chunk < 1 or self.chunks < 0:
            raise InputError("patches_per_chunk must be >= 1 and chunks >= 0")
        if not 0.0 <= self.synthetic_fraction <= 1.0:
            raise InputError(f"synthetic_fraction must be in [0, 1], got "
                             f"{self.synthetic_fraction}")  # fmt: skip

    @property
    def region(self) -> int:
        """Side S of the simulated region, voxels."""
        return self.size + 2 * self.pad

    def identity(self) -> dict[str, Any]:
        """The parameters that define the content (``chunks`` may grow on resume)."""
        d = asdict(self)
        d.pop("chunks")
        return d


# --------------------------------------------------------------------------------------
# Source regions
# --------------------------------------------------------------------------------------


def _centres(s: int) -> np.ndarray:
    """Voxel-centre offsets (z, y, x) from the region centre, in voxels, shape (3, s, s, s)."""
    c = np.arange(s, dtype=np.float64) - (s - 1) / 2
    return np.stack(np.meshgrid(c, c, c, indexing="ij"))


def synthetic_region(rng: np.random.Generator, s: int) -> tuple[np.ndarray, dict[str, Any]]:
    """A synthetic heterogeneous region of side ``s`` voxels (source at the centre).

    Returns
    -------
    density : ndarray float32 (s, s, s)
        g/cm³.
    info : dict
        ``pattern`` (homogeneous, slab, sphere), ``material``, its density and geometry
        (in voxels).
    """
    bg = rng.uniform(0.95, 1.10)
    rho = bg * (1.0 + 0.02 * rng.standard_normal((s, s, s)))
    xyz = _centres(s)
    u = rng.random()
    mat = str(rng.choice(list(_INCLUSIONS), p=[0.4, 0.35, 0.15, 0.1]))
    lo, hi = _INCLUSIONS[mat]
    rho_inc = float(rng.uniform(lo, hi))
    info: dict[str, Any] = {"background_g_cm3": float(bg), "material": mat,
                            "density_g_cm3": rho_inc}  # fmt: skip
    if u < 0.15:
        info["pattern"] = "homogeneous"
        if rng.random() < 0.6 and mat != "air":
            rho = rho_inc * (1.0 + 0.02 * rng.standard_normal((s, s, s)))
        else:
            info["material"] = "soft_tissue"
            info["density_g_cm3"] = float(bg)
    elif u < 0.6:
        normal = rng.standard_normal(3)
        if rng.random() < 0.5:  # axis-aligned planes are common in CT-like grids
            normal = np.eye(3)[rng.integers(3)] * rng.choice([-1.0, 1.0])
        normal /= np.linalg.norm(normal)
        offset = float(rng.uniform(-2.5, 2.5))
        inside = np.tensordot(normal, xyz, axes=1) > offset
        rho[inside] = rho_inc * (1.0 + 0.02 * rng.standard_normal(int(inside.sum())))
        info.update(pattern="slab", normal_zyx=normal.tolist(), offset_voxels=offset)
    else:
        centre = rng.uniform(-4.0, 4.0, 3)
        radius = float(rng.uniform(1.0, 6.0))
        inside = np.sum((xyz - centre[:, None, None, None]) ** 2, axis=0) < radius**2
        rho[inside] = rho_inc * (1.0 + 0.02 * rng.standard_normal(int(inside.sum())))
        info.update(pattern="sphere", centre_zyx=centre.tolist(), radius_voxels=radius)
    if mat == "air":
        rho[rho < 0.01] = AIR_DENSITY_G_CM3
    return np.clip(rho, AIR_DENSITY_G_CM3, None).astype(np.float32), info


def _phantom_sources(
    rng: np.random.Generator, config: PatchConfig, phantom_seed: int, count: int
) -> list[tuple[np.ndarray, dict[str, Any]]]:
    """``count`` regions around source voxels of one phantom (weighted sampling)."""
    from scipy import ndimage

    from mcdose.phantoms import generate_phantom

    ph = generate_phantom(phantom_seed, config.preset, spacing_mm=config.voxel_mm)
    rho = ph.density.astype(np.float32)
    body = ph.labels > 0
    n = config.size
    lo = ndimage.minimum_filter(rho, size=n, mode="constant", cval=AIR_DENSITY_G_CM3)
    hi = ndimage.maximum_filter(rho, size=n, mode="constant", cval=AIR_DENSITY_G_CM3)
    lung = ndimage.maximum_filter(((rho > 0.05) & (rho < 0.6)).astype(np.uint8), size=n) > 0
    bone = hi > 1.3
    edge = lo < 0.05
    w = np.where(body, 1.0, 0.0)
    w = w * (1.0 + config.interface_weight * (lung | bone | edge))
    w = w * np.where(ph.activity_MBq > 0, 2.0, 1.0)
    flat = w.ravel()
    if flat.sum() <= 0:
        raise InputError(f"phantom {phantom_seed}: no body voxels to sample")
    picks = rng.choice(flat.size, size=min(count, int(np.count_nonzero(flat))), replace=False,
                       p=flat / flat.sum())  # fmt: skip
    half = config.region // 2
    padded = np.pad(rho, half, mode="constant", constant_values=AIR_DENSITY_G_CM3)
    out = []
    for p in picks:
        z, y, x = np.unravel_index(int(p), rho.shape)
        region = padded[z : z + 2 * half + 1, y : y + 2 * half + 1, x : x + 2 * half + 1]
        tags = [t for t, m in (("lung", lung), ("bone", bone), ("edge", edge)) if m[z, y, x]]
        out.append((np.ascontiguousarray(region), {
            "phantom_seed": int(phantom_seed), "voxel_zyx": [int(z), int(y), int(x)],
            "label": int(ph.labels[z, y, x]), "neighbourhood": tags}))  # fmt: skip
    return out


def chunk_specs(config: PatchConfig, chunk: int) -> list[tuple[np.ndarray, dict[str, Any]]]:
    """The source regions of chunk ``chunk`` (deterministic in ``(seed, chunk)``).

    Returns
    -------
    list of (density_region (S, S, S) float32 g/cm³, info dict)
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(config.seed), int(chunk)]))
    n_syn = int(round(config.synthetic_fraction * config.patches_per_chunk))
    n_ph = config.patches_per_chunk - n_syn
    specs: list[tuple[np.ndarray, dict[str, Any]]] = []
    if n_ph:
        phantom_seed = int(rng.integers(0, 2**31))
        for region, info in _phantom_sources(rng, config, phantom_seed, n_ph):
            specs.append((region, {"kind": "phantom", **info}))
    for _ in range(n_syn):
        region, info = synthetic_region(rng, config.region)
        specs.append((region, {"kind": "synthetic", **info}))
    for j, (_, info) in enumerate(specs):
        info["mc_seed"] = int(rng.integers(0, 2**62)) * 2  # electrons seed, photons seed + 1
        info["index_in_chunk"] = j
    return specs


# --------------------------------------------------------------------------------------
# Monte Carlo of one patch
# --------------------------------------------------------------------------------------


def simulate_patch(
    region: np.ndarray,
    config: PatchConfig,
    seed: int,
    *,
    device: str = "auto",
    threads: int | None = None,
) -> dict[str, np.ndarray | float]:
    """MC kernel of a unit source uniform in the centre voxel of ``region``, cropped to N³.

    Parameters
    ----------
    region : ndarray (S, S, S)
        Density of the simulated region, g/cm³ (S = ``config.region``).
    config : PatchConfig
    seed : int
        Seed of the electron part; the photon part uses ``seed + 1``.
    device, threads
        Monte Carlo device and CPU threads.

    Returns
    -------
    dict
        ``kernel``, ``kernel_electron``, ``kernel_photon`` (Gy per decay, float32 N³),
        ``uncertainty`` (relative), ``energy_fraction`` (Σ kernel·mass / emitted energy),
        ``seconds``.
    """
    from mcdose.nuclides import load_nuclide
    from mcdose.transport import simulate_dose

    s = config.region
    if region.shape != (s, s, s):
        raise InputError(f"region must have shape {(s, s, s)}, got {region.shape}")
    act = np.zeros_like(region, dtype=np.float32)
    act[s // 2, s // 2, s // 2] = 1.0
    vox = (float(config.voxel_mm),) * 3
    p, n = config.pad, config.size
    crop = (slice(p, p + n),) * 3
    parts = {}
    t0 = time.perf_counter()
    for part, hist, sd in (("electrons", config.electron_histories, seed),
                           ("photons", config.photon_histories, seed + 1)):  # fmt: skip
        r = simulate_dose(region, act, vox, nuclide=config.nuclide, histories=int(hist),
                          seed=int(sd), device=device, batches=config.batches, emissions=part,
                          threads=threads)  # fmt: skip
        parts[part] = (r.dose_per_decay_Gy[crop].astype(np.float64),
                       r.relative_uncertainty[crop].astype(np.float64))  # fmt: skip
    ke, ue = parts["electrons"]
    kp, up = parts["photons"]
    k = ke + kp
    var = (ke * ue) ** 2 + (kp * up) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(k > 0, np.sqrt(var) / np.where(k > 0, k, 1.0), 0.0)
    mass_kg = region[crop].astype(np.float64) * (config.voxel_mm / 10.0) ** 3 * 1e-3
    emitted = load_nuclide(config.nuclide).total_energy_per_decay_keV
    frac = float((k * mass_kg).sum() / KEV_TO_J / emitted)
    return {"kernel": k.astype(np.float32), "kernel_electron": ke.astype(np.float32),
            "kernel_photon": kp.astype(np.float32), "uncertainty": u.astype(np.float32),
            "energy_fraction": frac, "seconds": time.perf_counter() - t0}  # fmt: skip


# --------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------


def _done_chunks(path: Path, config: PatchConfig) -> set[int]:
    import h5py

    if not path.exists():
        return set()
    try:
        f = h5py.File(path, "r", locking=False)
    except OSError as exc:
        raise InputError(f"{path}: not a readable HDF5 patch file ({exc})") from None
    with f:
        if f.attrs.get("schema") != PATCH_SCHEMA:
            raise InputError(f"{path}: not a kernel-patch file (schema "
                             f"{f.attrs.get('schema')!r})")  # fmt: skip
        stored = json.loads(f.attrs.get("params", "{}"))
        if stored != config.identity():
            diff = sorted(k for k in set(stored) | set(config.identity())
                          if stored.get(k) != config.identity().get(k))  # fmt: skip
            raise InputError(f"{path}: made with other parameters ({', '.join(diff)}); use "
                             f"another output file")  # fmt: skip
        return {int(k) for k in f.get("chunks", {})}


def _write_chunk(path: Path, config: PatchConfig, chunk: int, rows: list[dict], infos: list,
                 device: str) -> None:  # fmt: skip
    import h5py

    from mcdose.io.atomic import atomic_path
    from mcdose.provenance import provenance

    with atomic_path(path, copy_existing=True) as tmp:
        with h5py.File(tmp, "a", locking=False) as f:
            if "schema" not in f.attrs:
                f.attrs["schema"] = PATCH_SCHEMA
                f.attrs["params"] = json.dumps(config.identity(), sort_keys=True)
                f.attrs["units"] = json.dumps({"density": "g/cm3", "kernel": "Gy per decay",
                                               "uncertainty": "1 (relative)"})  # fmt: skip
            g = f.require_group("chunks").create_group(f"{chunk:05d}")
            for name in ("density", "density_region", "kernel", "kernel_electron",
                         "kernel_photon", "uncertainty"):  # fmt: skip
                g.create_dataset(name, data=np.stack([r[name] for r in rows]).astype(np.float32),
                                 compression="gzip", compression_opts=4, shuffle=True)  # fmt: skip
            g.create_dataset("energy_fraction", data=np.array([r["energy_fraction"] for r in rows]))
            g.create_dataset("kind", data=np.array(
                [0 if i["kind"] == "phantom" else 1 for i in infos], np.int8))  # fmt: skip
            g.attrs["info"] = json.dumps(infos)
            g.attrs["provenance"] = json.dumps(provenance(
                method="kernel_patches", seed=int(config.seed), chunk=int(chunk),
                histories={"electrons": int(config.electron_histories),
                           "photons": int(config.photon_histories)}, device=device))  # fmt: skip
            g.attrs["seconds"] = float(sum(r["seconds"] for r in rows))


def build_kernel_patches(
    path: str | Path,
    config: PatchConfig | None = None,
    *,
    device: str = "auto",
    threads: int | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> dict[str, Any]:
    """Build (or resume) the kernel-patch file ``path``.

    Parameters
    ----------
    path : path-like
        The HDF5 file (created; chunks already in it are skipped).
    config : PatchConfig, optional
        Stage parameters (default :class:`PatchConfig`).
    device, threads
        Monte Carlo device and CPU threads.
    progress : callable, optional
        Called ``progress(chunk, chunks, seconds)`` after each chunk written.

    Returns
    -------
    dict
        ``written`` and ``skipped`` chunk indices, ``seconds``, ``patches`` in the file.

    Raises
    ------
    InputError
        The file exists with other parameters, or is not a patch file.
    """
    config = config or PatchConfig()
    path = Path(path)
    done = _done_chunks(path, config)
    written, skipped = [], []
    t0 = time.perf_counter()
    for chunk in range(config.chunks):
        if chunk in done:
            skipped.append(chunk)
            continue
        tc = time.perf_counter()
        specs = chunk_specs(config, chunk)
        rows, infos = [], []
        n, p = config.size, config.pad
        for region, info in specs:
            r = simulate_patch(region, config, info["mc_seed"], device=device, threads=threads)
            r["density_region"] = region
            r["density"] = region[p : p + n, p : p + n, p : p + n]
            rows.append(r)
            infos.append(info)
        _write_chunk(path, config, chunk, rows, infos, device)
        written.append(chunk)
        log.info("chunk %d of %d: %d patches in %.1f s", chunk + 1, config.chunks, len(rows),
                 time.perf_counter() - tc)  # fmt: skip
        if progress is not None:
            progress(chunk, config.chunks, time.perf_counter() - tc)
    total = len(done | set(written)) * config.patches_per_chunk
    return {"written": written, "skipped": skipped, "seconds": time.perf_counter() - t0,
            "patches": total}  # fmt: skip


def read_kernel_patches(path: str | Path, *, with_region: bool = False) -> dict[str, Any]:
    """All chunks of a patch file, concatenated in chunk order.

    Returns
    -------
    dict
        Arrays ``density``, ``kernel``, ``kernel_electron``, ``kernel_photon``,
        ``uncertainty``, ``energy_fraction``, ``kind``, ``chunk`` (per patch), optionally
        ``density_region``; ``info`` (list of dicts) and ``params`` (dict).
    """
    import h5py

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: kernel-patch file does not exist")
    names = ["density", "kernel", "kernel_electron", "kernel_photon", "uncertainty",
             "energy_fraction", "kind"]  # fmt: skip
    if with_region:
        names.append("density_region")
    out: dict[str, list] = {k: [] for k in names}
    info: list = []
    chunk_ids: list = []
    with h5py.File(path, "r", locking=False) as f:
        if f.attrs.get("schema") != PATCH_SCHEMA:
            raise InputError(f"{path}: not a kernel-patch file")
        params = json.loads(f.attrs["params"])
        for key in sorted(f.get("chunks", {})):
            g = f["chunks"][key]
            for k in names:
                out[k].append(g[k][()])
            items = json.loads(g.attrs["info"])
            info.extend(items)
            chunk_ids.extend([int(key)] * len(items))
    if not info:
        raise InputError(f"{path}: no chunks")
    res: dict[str, Any] = {k: np.concatenate(v) for k, v in out.items()}
    res["chunk"] = np.asarray(chunk_ids)
    res["info"] = info
    res["params"] = params
    return res
