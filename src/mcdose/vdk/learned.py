"""``mcdose vdk --kernels learned``: a case file's dose by learned density-specific kernels.

The computation is :func:`lvdk.superpose.lvdk_dose` (torch, imported here only when called):
every active voxel's kernel predicted from the density around it, superposed, plus the
long-range photon dose by FFT with the soft-tissue photon kernel of this package.  This
module only adds the case-file stage around it (skip when done with the same parameters,
atomic write, provenance), like :func:`mcdose.vdk.vdk_case` does for the other modes.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from mcdose.errors import InputError

__all__ = ["learned_case", "model_digest"]


def model_digest(path: str | Path) -> str:
    """First 16 hex digits of the SHA-256 of a model file (stage parameter)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def learned_case(
    path: str | Path,
    *,
    source: str = "spect",
    output: str = "dose/vdk",
    model: str | Path | None = None,
    histories: int | None = None,
    seed: int = 0,
    device: str = "auto",
    photon_correction: str = "tissue",
    force: bool = False,
    progress: bool = False,
) -> Any:
    """Learned-kernel dose rate (Gy/s) of a case file's ``source`` activity → ``output``.

    Parameters
    ----------
    path : path-like
        Case file with ``density`` and ``source``; its grid must be cubic at the model's voxel
        size.
    source : {"spect", "activity"}
    output : str
        Dataset under ``dose/`` (default ``dose/vdk``).
    model : path, optional
        lvdk model file (default: the shipped one).
    histories, seed
        Decays (β convention; photons 10×) and seed of a photon kernel that has to be
        generated.
    device : {"auto", "cpu", "cuda"}
    photon_correction : {"tissue", "none", "paper"}
        See :mod:`lvdk.superpose`.
    force, progress
        Recompute when up to date; progress bars.

    Returns
    -------
    mcdose.vdk.VdkResult or None
        None when skipped.
    """
    from lvdk.modelfile import load_kernel_model
    from lvdk.superpose import lvdk_dose
    from mcdose.io.case import (
        dose_attrs,
        read_case_info,
        read_dataset,
        source_fingerprint,
        stage_done,
        write_datasets,
    )
    from mcdose.vdk.dose import DEFAULT_KERNEL_HISTORIES, VdkResult, case_kernels

    t0 = time.perf_counter()
    path = Path(path)
    if source not in ("spect", "activity"):
        raise InputError(f"source must be 'spect' or 'activity', got {source!r}")
    if not output.startswith("dose/"):
        raise InputError(f"output must be a dataset under dose/, got {output!r}")
    info = read_case_info(path)
    if source not in info.datasets:
        raise InputError(f"{path}: case has no '{source}' dataset to convolve "
                         f"(present: {', '.join(info.datasets) or 'none'})")  # fmt: skip
    if "density" not in info.datasets or info.shape is None:
        raise InputError(f"{path}: case has no 'density' dataset")
    loaded = load_kernel_model(model)
    spacing = info.geometry.spacing_mm
    loaded.check_grid(spacing, info.nuclide)
    hist = DEFAULT_KERNEL_HISTORIES if histories is None else int(histories)
    mode = "tissue" if photon_correction == "tissue" else "single"
    keys = case_kernels(info.nuclide, spacing, info.shape, mode=mode, histories=hist,
                        seed=seed, generate=False)  # fmt: skip
    params = {
        "source": source,
        "kernels": "learned",
        "model_sha256": model_digest(loaded.path),
        "photon_kernel_keys": {c: k[1] for c, k in keys.items()},
        "photon_correction": photon_correction,
        "source_fingerprint": source_fingerprint(path, source),
    }
    if not force and stage_done(path, output, params):
        return None
    activity = read_dataset(path, source)
    density = read_dataset(path, "density")
    sets = case_kernels(info.nuclide, spacing, info.shape, mode=mode, histories=hist,
                        seed=seed, device=device, progress=progress)  # fmt: skip
    photons = {c: ks[1] for c, ks in sets.items()}
    photon = photons["soft_tissue"]
    dose, linfo = lvdk_dose(activity, density, spacing, model=loaded, nuclide=info.nuclide,
                            photon_kernel=photons if mode == "tissue" else photon,
                            photon_correction=photon_correction,
                            device=device, progress=progress)  # fmt: skip
    attrs = dose_attrs(
        "vdk", info.nuclide, params, histories=int(photon.histories), seed=seed, units="Gy/s",
        source=source, kernels="learned", lvdk=json.dumps(linfo, default=str),
    )  # fmt: skip
    write_datasets(path, {output: dose}, attrs={output: attrs})
    return VdkResult(path=path, dataset=output, dose_rate_Gy_s=dose, params=params,
                     kernels={"learned": [str(loaded.path)],
                              "photon_tail": [k.describe() for k in photons.values()]},
                     backend=f"torch/{linfo['device']}",
                     timings={"kernels_s": linfo["kernel_seconds"],
                              "convolution_s": linfo["photon_tail_seconds"],
                              "total_s": time.perf_counter() - t0})  # fmt: skip
