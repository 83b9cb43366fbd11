"""Monte Carlo on case files: ``dose/mc`` (true activity) or ``dose/mc_spect`` (SPECT)."""

from __future__ import annotations

import json
from pathlib import Path

from mcdose.errors import InputError
from mcdose.provenance import provenance
from mcdose.transport.setup import TransportOptions
from mcdose.transport.simulate import DoseResult, simulate_dose

#: source dataset -> (dose dataset, uncertainty dataset)
OUTPUTS = {
    "activity": ("dose/mc", "dose/mc_uncertainty"),
    "spect": ("dose/mc_spect", "dose/mc_spect_uncertainty"),
}


def stage_parameters(
    source: str,
    histories: int,
    seed: int,
    batches: int,
    options: TransportOptions,
    source_fingerprint: dict | None = None,
) -> dict:
    """Parameters that identify an MC stage (a rerun with equal ones is skipped).

    ``source_fingerprint`` (:func:`mcdose.io.case.source_fingerprint` of the source
    dataset) makes a recomputed ``spect`` / ``activity`` a change of parameters.
    """
    params = {
        "source": source,
        "histories": int(histories),
        "seed": int(seed),
        "batches": int(batches),
        "options": options.__dict__,
    }
    if source_fingerprint is not None:
        params["source_fingerprint"] = source_fingerprint
    return params


def simulate_case(
    path: str | Path,
    *,
    source: str = "activity",
    histories: int = 10**6,
    seed: int = 0,
    device: str = "auto",
    batches: int = 10,
    options: TransportOptions | None = None,
    progress: bool = False,
    force: bool = False,
) -> DoseResult | None:
    """Run the MC engine on a case file and store the dose rate and its uncertainty.

    Parameters
    ----------
    path
        Case file (``*.h5``) with ``density`` and the source dataset.
    source : {"activity", "spect"}
        ``activity`` writes ``dose/mc`` and ``dose/mc_uncertainty``; ``spect`` writes
        ``dose/mc_spect`` and ``dose/mc_spect_uncertainty``.
    histories, seed, device, batches, options, progress
        See :func:`mcdose.transport.simulate_dose`.
    force
        Recompute even if the case already holds this stage with the same parameters.

    Notes
    -----
    Long runs save their batch sums in a hidden checkpoint next to the case (see
    :func:`checkpoint_path`); after an interruption the same command resumes from the last
    saved batch and gives the same result as an uninterrupted run.

    Returns
    -------
    DoseResult or None
        None when the stage was already done (skipped).
    """
    from mcdose.io.case import (
        read_case_info,
        read_dataset,
        source_fingerprint,
        stage_done,
        write_datasets,
    )

    if source not in OUTPUTS:
        raise InputError(f"source must be 'activity' or 'spect', got {source!r}")
    options = options or TransportOptions()
    dose_name, unc_name = OUTPUTS[source]
    params = stage_parameters(source, histories, seed, batches, options,
                              source_fingerprint(path, source))
    if not force and stage_done(path, dose_name, params):
        return None
    info = read_case_info(path)
    if source not in info.datasets:
        raise InputError(f"{path}: case has no '{source}' dataset to simulate from")
    density = read_dataset(path, "density")
    activity = read_dataset(path, source)
    checkpoint = checkpoint_path(path, dose_name)
    result = simulate_dose(
        density,
        activity,
        info.geometry.spacing_mm,
        nuclide=info.nuclide,
        histories=histories,
        seed=seed,
        device=device,
        batches=batches,
        options=options,
        progress=progress,
        checkpoint=checkpoint,
    )
    attrs = dict(result.attrs)
    attrs["source"] = source
    attrs["units"] = "Gy/s"
    attrs["params"] = json.dumps(params, sort_keys=True)
    attrs["provenance"] = json.dumps(
        provenance(method="mc", histories=histories, seed=int(seed), source=source)
    )
    unc_attrs = {
        "units": "1",
        "meaning": f"relative standard error of {dose_name} (batch method)",
        "batches": batches,
    }
    write_datasets(
        path,
        {dose_name: result.dose_rate_Gy_s, unc_name: result.relative_uncertainty},
        attrs={dose_name: attrs, unc_name: unc_attrs},
    )
    checkpoint.unlink(missing_ok=True)
    return result


def checkpoint_path(case: str | Path, dose_name: str) -> Path:
    """Hidden file next to the case where an MC stage keeps its batch checkpoint."""
    case = Path(case)
    return case.with_name(f".{case.name}.{dose_name.replace('/', '_')}.ckpt.npz")
