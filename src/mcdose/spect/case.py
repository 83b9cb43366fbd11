"""The ``spect`` stage: simulate SPECT for a case file and store the reconstruction."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from mcdose import __version__
from mcdose.provenance import provenance
from mcdose.spect.protocol import SpectProtocol, choose_count_level
from mcdose.spect.simulate import resolve_backend, simulate_spect

log = logging.getLogger(__name__)

DATASET = "spect"


def spect_params(
    seed: int, counts: float, protocol: SpectProtocol, backend: str
) -> dict[str, Any]:
    """The stage parameters recorded with ``spect`` and compared by ``stage_done``.

    ``backend`` is the *resolved* backend (``"pytomography"`` or ``"gaussian"``), so a case
    simulated with the fallback is redone once PyTomography is installed.
    """
    return {
        "stage": DATASET,
        "seed": int(seed),
        "counts": float(counts),
        "backend": backend,
        "protocol": protocol.to_dict(),
    }


def spect_case(
    path: str | os.PathLike[str],
    *,
    seed: int,
    counts: float | None = None,
    protocol: SpectProtocol | None = None,
    backend: str = "auto",
    progress: bool = False,
    overwrite: bool = False,
    threads: int | None = None,
) -> dict[str, Any]:
    """Simulate SPECT of a case file's ``activity`` and write the dataset ``spect``.

    Parameters
    ----------
    path
        Case file (``*.h5``) with ``density`` and ``activity``.
    seed
        Seed of the Poisson noise (and of the count level when ``counts`` is None).
    counts
        Expected total counts; ``None`` picks one of :data:`PAPER_COUNT_LEVELS` from ``seed``
        (:func:`choose_count_level`).
    protocol
        Acquisition/reconstruction parameters; default :class:`SpectProtocol()`.
    backend
        ``"auto"``, ``"pytomography"`` or ``"gaussian"`` (see :func:`simulate_spect`).
    progress
        Show a progress bar over the OSEM updates.
    overwrite
        Recompute even if ``spect`` is present with the same parameters.
    threads
        Torch intra-op threads (see :func:`simulate_spect`); not part of the parameters.

    Returns
    -------
    dict
        ``skipped`` (True when the stage was already done with these parameters),
        ``params`` and, when computed, the ``info`` of :func:`simulate_spect`.

    Notes
    -----
    The dataset's attributes: ``units`` ("MBq per voxel"), ``method``, ``counts``, ``seed``,
    ``backend``, ``protocol`` (JSON), ``software_version``, ``params`` (JSON, used by
    ``stage_done``), ``info`` (JSON: calibration factor, grid, orbit...) and ``provenance``
    (JSON).
    """
    from mcdose.io import case as case_io

    protocol = SpectProtocol() if protocol is None else protocol
    counts = choose_count_level(seed) if counts is None else counts
    info_case = case_io.validate_case(path, require=("density", "activity"), check_values=False)
    resolved, _ = resolve_backend(backend)
    params = spect_params(seed, counts, protocol, resolved)
    if not overwrite and case_io.stage_done(path, DATASET, params):
        log.info("%s: 'spect' already done with these parameters; skipped", path)
        return {"skipped": True, "params": params}

    density = case_io.read_dataset(path, "density")
    activity = case_io.read_dataset(path, "activity")
    spect, info = simulate_spect(
        activity,
        density,
        info_case.geometry,
        counts=counts,
        seed=seed,
        protocol=protocol,
        backend=resolved,
        progress=progress,
        threads=threads,
    )
    method = "pytomography-osem" if resolved == "pytomography" else "gaussian-fallback"
    attrs = {
        "units": "MBq per voxel",
        "method": method,
        "counts": float(counts),
        "seed": int(seed),
        "backend": resolved,
        "protocol": protocol.to_json(),
        "software_version": __version__,
        "params": params,
        "info": json.dumps(info, sort_keys=True),
        "provenance": provenance(
            method=method,
            seed=int(seed),
            counts=float(counts),
            pytomography=info.get("pytomography"),
            torch=info.get("torch"),
        ),
    }
    case_io.write_datasets(path, {DATASET: spect}, attrs={DATASET: attrs})
    return {"skipped": False, "params": params, "info": info}
