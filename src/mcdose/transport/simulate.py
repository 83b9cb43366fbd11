"""Public Monte Carlo API: absorbed-dose rate of an activity map in a density map.

``simulate_dose`` runs the histories in ``batches`` independent batches (fixed history
ranges, so the batch split does not depend on threads or device), converts the integer
energy tallies to dose, and estimates the per-voxel relative standard error by the batch
method:

    ē_v = (1/B) Σ_b e_{b,v},   s_v² = Σ_b (e_{b,v} − ē_v)² / (B − 1),   u_v = s_v / (√B · ē_v)

with e_{b,v} the energy per decay deposited in voxel v by batch b (Walters, Kawrakow &
Rogers, Med. Phys. 29 (2002) 2745, discuss the batch and history-by-history estimators).

Dose per decay: ``D_v = ē_v[keV] · 1.602176634e-16 J/keV / (ρ_v V · 1e-3 kg/g)``; the dose
rate multiplies it by the total activity in Bq (decays per second).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mcdose.errors import DeviceError, InputError
from mcdose.physics import layout as L
from mcdose.physics.constants import KEV_TO_J
from mcdose.progress import progress_bar
from mcdose.transport.checkpoint import load_checkpoint, run_key, save_checkpoint
from mcdose.transport.setup import SimulationInputs, TransportOptions, prepare_simulation

log = logging.getLogger(__name__)

@dataclass
class DoseResult:
    """Result of a Monte Carlo run.

    Attributes
    ----------
    dose_rate_Gy_s : ndarray float32 (z, y, x)
        Absorbed-dose rate for the given activity, Gy/s.
    relative_uncertainty : ndarray float32 (z, y, x)
        Relative standard error of the dose per voxel (0 where no energy was deposited).
    dose_per_decay_Gy : ndarray float32 (z, y, x)
        Absorbed dose per decay, Gy.
    energy_balance : dict
        Energies per decay (keV): ``emitted``, ``deposited``, ``escaped``,
        ``stack_overflow`` (deposited locally, included in deposited), ``bremsstrahlung``;
        ``relative_imbalance`` = |emitted − deposited − escaped| / emitted; ``expected_emitted``
        (the nuclide's tabulated energy per decay).
    histories, seed, batches : int
    device : str
    elapsed_s : float
        Transport time (excluding setup and compilation), s.
    run_histories : int
        Histories transported by this call (fewer than ``histories`` after a resume).
    setup_s : float
        Table building and, on first use, JIT compilation, s.
    attrs : dict
        Attributes stored with the dose in case files.
    """

    dose_rate_Gy_s: np.ndarray
    relative_uncertainty: np.ndarray
    dose_per_decay_Gy: np.ndarray
    energy_balance: dict
    histories: int
    seed: int
    batches: int
    device: str
    elapsed_s: float
    setup_s: float
    attrs: dict = field(default_factory=dict)
    run_histories: int = 0

    @property
    def decays_per_second(self) -> float:
        """Transport speed, decays per second of wall time (histories run by this call)."""
        n = self.run_histories or self.histories
        return n / self.elapsed_s if self.elapsed_s > 0 else float("nan")


def resolve_device(device: str) -> str:
    """Map ``auto|cpu|cuda`` to the backend that will run; raise if CUDA is unavailable."""
    if device not in ("auto", "cpu", "cuda"):
        raise InputError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "cpu":
        return "cpu"
    from mcdose.transport.devices import cuda_available

    if cuda_available():
        return "cuda"
    if device == "cuda":
        raise DeviceError("--device cuda requested but no CUDA GPU is available (numba-cuda)")
    return "cpu"


def _make_backend(device: str, inputs: SimulationInputs, threads: int | None):
    if device == "cuda":
        from mcdose.transport.cuda import CudaBackend

        return CudaBackend(inputs)
    from mcdose.transport.cpu import CpuBackend

    return CpuBackend(inputs, threads=threads)


def batch_mean_and_error(
    energy_sum: np.ndarray, energy_sum_sq: np.ndarray, batches: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mean energy per decay and its relative standard error from batch sums (see module doc).

    Parameters
    ----------
    energy_sum, energy_sum_sq : ndarray
        Σ_b e_b and Σ_b e_b² per voxel, e_b in keV per decay.
    batches : int
        Number of batches B (≥ 2).
    """
    mean = energy_sum / batches
    var = np.maximum(energy_sum_sq / batches - mean * mean, 0.0) * (batches / (batches - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(mean > 0, np.sqrt(var / batches) / np.where(mean > 0, mean, 1.0), 0.0)
    return mean, rel


def _batch_bounds(histories: int, batches: int) -> list[tuple[int, int]]:
    edges = np.linspace(0, histories, batches + 1).round().astype(np.int64)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def simulate_dose(
    density: np.ndarray,
    activity_MBq: np.ndarray,
    spacing_mm: tuple[float, float, float],
    *,
    nuclide: str = "Lu-177",
    histories: int = 10**6,
    seed: int = 0,
    device: str = "auto",
    batches: int = 10,
    materials: np.ndarray | None = None,
    material_names: tuple[str, ...] | None = None,
    options: TransportOptions | None = None,
    threads: int | None = None,
    progress: bool = False,
    histories_per_call: int | None = None,
    emissions: str = "all",
    checkpoint: str | Path | None = None,
    checkpoint_interval_s: float = 30.0,
) -> DoseResult:
    """Monte Carlo absorbed-dose rate of ``activity_MBq`` (MBq per voxel) in ``density``.

    Parameters
    ----------
    density : ndarray (z, y, x)
        Mass density, g/cm³.
    activity_MBq : ndarray (z, y, x)
        Activity per voxel, MBq.
    spacing_mm : (x, y, z)
        Voxel size, mm.
    nuclide : str
        ICRP-107 nuclide (default Lu-177).
    histories : int
        Number of decays to simulate (≥ batches).
    seed : int
        Random seed (0 ≤ seed < 2⁶⁴); with the history index it keys every random number.
    device : {"auto", "cpu", "cuda"}
        Backend; "auto" takes CUDA when a GPU is available.
    batches : int
        Independent batches for the uncertainty estimate (≥ 2; 10–20 recommended).
    materials, material_names
        Optional explicit material map; default assigned from density.
    options : TransportOptions
        Cutoffs and step control.
    threads : int, optional
        CPU threads (default all cores).
    progress : bool
        Show a progress bar with decays/s and ETA.
    histories_per_call : int, optional
        Histories per kernel call (progress granularity); default chosen per device.
    emissions : {"all", "electrons", "photons"}
        Simulate all radiations (default) or only the electron or photon part.
    checkpoint : path, optional
        Save the batch sums here (at most every ``checkpoint_interval_s`` seconds) and resume
        from it if it holds the same run.  The caller deletes it once the result is stored
        (:func:`mcdose.transport.simulate_case` does).
    checkpoint_interval_s : float
        Minimum wall time between checkpoint writes, s.

    Returns
    -------
    DoseResult
    """
    from mcdose import __version__

    histories = int(histories)
    batches = int(batches)
    if batches < 2:
        raise InputError(f"batches must be at least 2 for an uncertainty estimate, got {batches}")
    if histories < batches:
        raise InputError(f"histories ({histories}) must be at least the number of batches")
    if not 0 <= int(seed) < 2**64:
        raise InputError(f"seed must be in [0, 2**64), got {seed}")
    backend_name = resolve_device(device)

    t0 = time.perf_counter()
    inputs = prepare_simulation(
        density,
        activity_MBq,
        spacing_mm,
        nuclide=nuclide,
        materials=materials,
        material_names=material_names,
        options=options,
        emissions=emissions,
    )
    backend = _make_backend(backend_name, inputs, threads)
    if histories_per_call is None:
        histories_per_call = 2_000_000 if backend_name == "cuda" else 50_000
    scale = float(inputs.params[L.P_TALLY_SCALE])
    # warm-up: compile on a few histories outside the timed loop; they use history indices
    # beyond the run (their own random streams) and are discarded
    backend.run(histories, histories + 4, int(seed))
    backend.discard()
    setup_s = time.perf_counter() - t0

    bounds = _batch_bounds(histories, batches)
    done = 0
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        key = run_key(inputs, histories=histories, seed=int(seed), batches=batches)
        done = load_checkpoint(checkpoint, key, backend)
        if done:
            log.info("resuming from %s after %d of %d batches", checkpoint, done, batches)
    resumed_histories = bounds[done - 1][1] if done else 0

    t1 = time.perf_counter()
    last_save = t1
    with progress_bar(histories, f"MC {inputs.nuclide} ({backend_name})", unit="decays",
                      enabled=progress) as advance:  # fmt: skip
        advance(resumed_histories)
        for b, (first, last) in enumerate(bounds):
            if b < done:
                continue
            for start in range(first, last, histories_per_call):
                stop = min(last, start + histories_per_call)
                backend.run(start, stop, int(seed))
                advance(stop - start)
            backend.end_batch(last - first)
            now = time.perf_counter()
            due = now - last_save >= checkpoint_interval_s
            if checkpoint is not None and b + 1 < batches and due:
                save_checkpoint(checkpoint, key, b + 1, backend)
                last_save = time.perf_counter()
    elapsed = time.perf_counter() - t1
    run_histories = histories - resumed_histories

    energy_sum, energy_sum_sq = backend.energy_sums()
    mean_keV, rel = batch_mean_and_error(energy_sum, energy_sum_sq, batches)
    counters = backend.counters()
    nz, ny, nx = inputs.shape
    voxel_cm3 = float(np.prod([s / 10.0 for s in spacing_mm]))
    mass_kg = inputs.voxels[:, L.V_DENSITY].astype(np.float64) * voxel_cm3 * 1e-3
    dose_per_decay = mean_keV * KEV_TO_J / mass_kg
    rate = dose_per_decay * inputs.total_activity_MBq * 1e6

    c = counters.astype(np.float64) / (scale * histories)
    deposited = float(mean_keV.sum())
    emitted = float(c[L.C_EMITTED])
    escaped = float(c[L.C_ESCAPED])
    balance = {
        "emitted": emitted,
        "deposited": deposited,
        "escaped": escaped,
        "stack_overflow": float(c[L.C_STACK_OVERFLOW]),
        "bremsstrahlung": float(c[L.C_BREMS]),
        "relative_imbalance": abs(emitted - deposited - escaped) / emitted if emitted else 0.0,
        "expected_emitted": (
            inputs.emitted_energy_per_decay_keV if emissions == "all" else float("nan")
        ),
    }
    opts = inputs.extra["options"]
    attrs = {
        "method": "mc",
        "nuclide": inputs.nuclide,
        "histories": histories,
        "seed": int(seed),
        "batches": batches,
        "device": backend_name,
        "software_version": __version__,
        "uncertainty_method": "batch",
        "energy_balance_keV_per_decay": json.dumps(balance),
        "transport_options": json.dumps(opts.__dict__),
        "materials": json.dumps(list(inputs.material_names)),
        "emissions": emissions,
        "total_activity_MBq": inputs.total_activity_MBq,
        "resumed_batches": done,
    }
    shape = (nz, ny, nx)
    return DoseResult(
        dose_rate_Gy_s=rate.reshape(shape).astype(np.float32),
        relative_uncertainty=rel.reshape(shape).astype(np.float32),
        dose_per_decay_Gy=dose_per_decay.reshape(shape).astype(np.float32),
        energy_balance=balance,
        histories=histories,
        seed=int(seed),
        batches=batches,
        device=backend_name,
        elapsed_s=elapsed,
        run_histories=run_histories,
        setup_s=setup_s,
        attrs=attrs,
    )
