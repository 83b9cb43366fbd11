"""On-disk cache of generated voxel dose kernels.

Kernels are stored as kernel files (:func:`mcdose.vdk.kernels.write_kernel`) in
``<user cache>/kernels/`` — ``platformdirs.user_cache_dir("mcdose")`` (e.g.
``~/.cache/mcdose/kernels`` on Linux), or ``$MCDOSE_CACHE_DIR/kernels`` when that variable is
set.  The file name is a readable prefix plus a hash of every parameter that changes the
kernel: nuclide, voxel size, material, density, size, emission part, histories, seed,
transport options and the mcdose version (a new version regenerates, since the physics may
have changed).  Writes are atomic, so concurrent processes at worst generate a kernel twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mcdose.errors import InputError, McdoseError
from mcdose.vdk.kernels import (
    EMISSIONS,
    Kernel,
    kernel_density,
    make_kernel,
    normalize_size,
    normalize_voxel_mm,
    read_kernel,
    resolve_photon_histories,
    write_kernel,
)

log = logging.getLogger(__name__)

__all__ = ["CACHE_ENV", "cache_dir", "cached_kernel_path", "get_kernel", "kernel_key"]

#: Environment variable that overrides the cache root.
CACHE_ENV = "MCDOSE_CACHE_DIR"


def cache_dir() -> Path:
    """Folder of cached kernels (created on first use by :func:`get_kernel`)."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        import platformdirs

        root = platformdirs.user_cache_dir("mcdose")
    return Path(root) / "kernels"


def kernel_key(
    nuclide: str,
    voxel_mm: float | Sequence[float],
    size: int | Sequence[int],
    material: str = "soft_tissue",
    *,
    density_g_cm3: float | None = None,
    emissions: str = "all",
    histories: int = 10**6,
    photon_histories: int | None = None,
    seed: int = 0,
    symmetric: bool = True,
    options: Any = None,
) -> str:
    """Cache key (file stem) of a kernel: readable prefix + 12 hex digits of a SHA-256.

    Example: ``Lu-177_soft_tissue_1.04_0.98x0.98x3mm_9x9x9_electrons_h1e+06_5c1f...``.
    """
    from mcdose import __version__
    from mcdose.materials import get_material
    from mcdose.nuclides import normalize_nuclide_name

    name = normalize_nuclide_name(nuclide)
    voxel = normalize_voxel_mm(voxel_mm)
    size3 = normalize_size(size)
    mat = get_material(material).name
    rho = kernel_density(mat, density_g_cm3)
    if emissions not in EMISSIONS:
        raise InputError(f"emissions must be one of {', '.join(EMISSIONS)}, got {emissions!r}")
    histories = int(histories)
    photon_histories = resolve_photon_histories(histories, photon_histories, emissions)
    params = {
        "nuclide": name,
        "voxel_mm": [round(v, 6) for v in voxel],
        "size_xyz": list(size3),
        "material": mat,
        "density_g_cm3": round(rho, 6),
        "emissions": emissions,
        "histories": histories,
        "photon_histories": photon_histories if emissions != "electrons" else None,
        "seed": int(seed),
        "symmetric": bool(symmetric),
        "options": options.__dict__ if options is not None else None,
        "version": __version__,
    }
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    vox = "x".join(f"{v:g}" for v in voxel)
    siz = "x".join(str(n) for n in size3)
    return f"{name}_{mat}_{rho:g}_{vox}mm_{siz}_{emissions}_h{histories:.0e}_{digest}"


def cached_kernel_path(key: str) -> Path:
    """Path of the cached kernel file of ``key``."""
    return cache_dir() / f"{key}.h5"


def get_kernel(
    nuclide: str,
    voxel_mm: float | Sequence[float],
    size: int | Sequence[int],
    material: str = "soft_tissue",
    *,
    density_g_cm3: float | None = None,
    emissions: str = "all",
    histories: int = 10**6,
    photon_histories: int | None = None,
    seed: int = 0,
    symmetric: bool = True,
    options: Any = None,
    device: str = "auto",
    progress: bool = False,
    cache: bool = True,
    regenerate: bool = False,
) -> Kernel:
    """Return the cached kernel with these parameters, generating and storing it if needed.

    Parameters
    ----------
    nuclide, voxel_mm, size, material, density_g_cm3, emissions, histories,
    photon_histories, seed, symmetric, options, device, progress
        See :func:`mcdose.vdk.make_kernel` (``device`` and ``progress`` do not enter the key).
    cache : bool
        Use the cache (default); ``False`` always generates and stores nothing.
    regenerate : bool
        Generate even when cached, and replace the cached file.

    Returns
    -------
    Kernel
        With ``attrs["cache_key"]`` and, when cached, ``attrs["path"]``.
    """
    key = kernel_key(
        nuclide, voxel_mm, size, material, density_g_cm3=density_g_cm3, emissions=emissions,
        histories=histories, photon_histories=photon_histories, seed=seed, symmetric=symmetric,
        options=options,
    )  # fmt: skip
    path = cached_kernel_path(key)
    if cache and not regenerate and path.exists():
        try:
            kernel = read_kernel(path)
        except InputError as exc:
            log.warning("ignoring unreadable cached kernel (%s); regenerating", exc)
        else:
            kernel.attrs["cache_key"] = key
            kernel.attrs["cached"] = True
            return kernel
    kernel = make_kernel(
        nuclide, voxel_mm, size, material, density_g_cm3=density_g_cm3, histories=histories,
        photon_histories=photon_histories, seed=seed, device=device, emissions=emissions,
        symmetric=symmetric, options=options, progress=progress,
    )  # fmt: skip
    kernel.attrs["cache_key"] = key
    if cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_kernel(path, kernel)
        except (OSError, McdoseError) as exc:  # read-only cache, a file in its place, full
            log.warning("kernel cache %s cannot be written (%s); the kernel is used but not "
                        "cached (set $%s to a writable folder, or --no-cache)", path.parent,
                        getattr(exc, "strerror", None) or exc, CACHE_ENV)
        else:
            kernel.attrs["path"] = str(path)
    kernel.attrs["cached"] = False
    return kernel
