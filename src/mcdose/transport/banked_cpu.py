"""The GPU's banked transport order, run on the CPU: a reference and a divergence probe.

:class:`BankedCpuBackend` runs a range of histories the way :mod:`mcdose.transport.cuda`
does — all decays first into a photon and an electron bank, then photon and electron passes
over the banks until both are empty — with the same physics functions, compiled by numba for
the CPU, one thread.  Two uses:

* a reference: each particle draws from its own random stream, so the banked order must give
  *bit for bit* the tally of the depth-first CPU engine (:mod:`mcdose.transport.cpu`); a test
  holds the two to that, which proves the bank logic without a GPU;
* a probe of SIMT efficiency: it records every particle's work (photon flights, electron
  steps plus voxel segments) in launch order, which :func:`warp_efficiency` groups 32 by 32
  as a GPU groups threads into warps (``benchmarks/divergence.py``).
"""

from __future__ import annotations

import numba
import numpy as np

from mcdose._jit_cache import physics_keyed_cache
from mcdose.physics import layout as L
from mcdose.physics.rng import STATE_SIZE
from mcdose.transport.history import (
    filter_banked_electron,
    run_history,
    sample_decay,
    transport_banked_electron,
    transport_banked_photon,
)

#: Threads per warp on NVIDIA GPUs.
WARP_SIZE = 32

_cache = physics_keyed_cache()
_cache.__enter__()


@numba.njit(cache=True)
def _decay_pass(first, last, seed, voxels, src_index, src_prob, src_alias, beta_icdf, elines,
                plines, params, tally, counters, ph_f, ph_i, ph_n, el_f, el_i,
                el_n):  # fmt: skip
    rng = np.empty(STATE_SIZE, np.uint64)
    for h in range(first, last):
        sample_decay(
            h, seed, -1, voxels, src_index, src_prob, src_alias, beta_icdf, elines, plines,
            params, tally, counters, ph_f, ph_i, ph_n, el_f, el_i, el_n, rng,
        )  # fmt: skip


@numba.njit(cache=True)
def _filter_pass(n, bank_f, bank_i, voxels, mat_tab, params, tally, out_f, out_i, out_n):
    for slot in range(n):
        filter_banked_electron(slot, bank_f, bank_i, voxels, mat_tab, params, tally,
                               out_f, out_i, out_n)  # fmt: skip


@numba.njit(cache=True)
def _photon_pass(n, seed, bank_f, bank_i, voxels, mat_tab, kn_table, ray_table, majorant, params,
                 tally, counters, out_f, out_i, out_n, rest_f, rest_i, rest_n, limit,
                 work):  # fmt: skip
    rng = np.empty(STATE_SIZE, np.uint64)
    for slot in range(n):
        work[slot] = transport_banked_photon(
            slot, seed, bank_f, bank_i, voxels, mat_tab, kn_table, ray_table, majorant, params,
            tally, counters, out_f, out_i, out_n, rest_f, rest_i, rest_n, rng, limit,
        )  # fmt: skip


@numba.njit(cache=True)
def _electron_pass(n, seed, bank_f, bank_i, voxels, mat_tab, inv_range, range_grid, ms_table,
                   params, tally, counters, out_f, out_i, out_n, rest_f, rest_i, rest_n, limit,
                   work):  # fmt: skip
    rng = np.empty(STATE_SIZE, np.uint64)
    for slot in range(n):
        work[slot] = transport_banked_electron(
            slot, seed, bank_f, bank_i, voxels, mat_tab, inv_range, range_grid, ms_table, params,
            tally, counters, out_f, out_i, out_n, rest_f, rest_i, rest_n, rng, limit,
        )  # fmt: skip


@numba.njit(cache=True)
def history_work(first, last, seed, voxels, src_index, src_prob, src_alias, beta_icdf, elines,
                 plines, mat_tab, inv_range, range_grid, kn_table, ray_table, ms_table, majorant,
                 params, tally, counters):  # fmt: skip
    """Work of each history run whole by one thread (the old one-thread-per-decay order)."""
    rng = np.empty(STATE_SIZE, np.uint64)
    stack_f = np.zeros((L.STACK_COLUMNS, L.STACK_SIZE), np.float32)
    stack_i = np.zeros((L.BANK_INT_COLUMNS, L.STACK_SIZE), np.int64)
    stack_n = np.zeros(1, np.int64)
    work = np.zeros(last - first, np.int64)
    for h in range(first, last):
        work[h - first] = run_history(
            h, seed, -1, voxels, src_index, src_prob, src_alias, beta_icdf, elines, plines,
            mat_tab, inv_range, range_grid, kn_table, ray_table, ms_table, majorant, params,
            tally, counters, rng, stack_f, stack_i, stack_n,
        )  # fmt: skip
    return work


_cache.__exit__(None, None, None)


class _Bank:
    def __init__(self, capacity: int) -> None:
        self.f = np.zeros((L.STACK_COLUMNS, capacity), np.float32)
        self.i = np.zeros((L.BANK_INT_COLUMNS, capacity), np.int64)
        self.n = np.zeros(1, np.int64)

    def filled(self) -> int:
        return int(self.n[0])

    def sort_by_energy(self) -> None:
        """Reorder the filled slots by decreasing energy (as the CUDA driver does)."""
        n = self.filled()
        order = np.argsort(-self.f[L.S_E, :n], kind="stable")
        self.f[:, :n] = self.f[:, :n][:, order]
        self.i[:, :n] = self.i[:, :n][:, order]


class BankedCpuBackend:
    """The CUDA driver's round structure on one CPU thread (see the module docstring).

    Parameters
    ----------
    inputs : SimulationInputs
        Kernel arrays from :func:`mcdose.transport.setup.prepare_simulation`.
    sort_electrons : bool
        Sort the electron bank by energy before each electron pass, as the CUDA driver does.
    slots_per_history : int
        Bank capacity per history of a call.
    pass_work_limit : int
        Flights or steps per particle and pass before it is suspended to the next pass
        (as the CUDA driver; ``layout.NO_WORK_LIMIT``: never).
    """

    name = "cpu-banked"

    def __init__(self, inputs, *, sort_electrons: bool = True, slots_per_history: int = 3,
                 pass_work_limit: int = L.PASS_WORK_LIMIT) -> None:
        self._arrays = inputs.kernel_arrays()
        self._scale = float(inputs.params[L.P_TALLY_SCALE])
        self.sort_electrons = sort_electrons
        self.slots_per_history = int(slots_per_history)
        self.pass_work_limit = int(pass_work_limit)
        self.tally = np.zeros(inputs.voxels.shape[0], np.uint64)
        self._counters = np.zeros(L.N_COUNTERS, np.uint64)
        #: (kind, work per particle in launch order) of every pass run
        self.passes: list[tuple[str, np.ndarray]] = []

    def run(self, first: int, last: int, seed: int) -> None:
        """Transport histories ``first`` … ``last − 1`` in banked rounds."""
        (voxels, src_index, src_prob, src_alias, beta_icdf, elines, plines, mat_tab, inv_range,
         range_grid, kn_table, ray_table, ms_table, majorant, params) = self._arrays  # fmt: skip
        capacity = self.slots_per_history * (last - first) + 1024
        photons, electrons = _Bank(capacity), _Bank(capacity)
        photons_next, electrons_next = _Bank(capacity), _Bank(capacity)
        seed = np.uint64(seed)
        limit = np.int64(self.pass_work_limit)
        _decay_pass(np.int64(first), np.int64(last), seed, voxels, src_index, src_prob, src_alias,
                    beta_icdf, elines, plines, params, self.tally, self._counters,
                    photons.f, photons.i, photons.n, electrons.f, electrons.i, electrons.n)
        while True:
            n_ph = photons.filled()
            if n_ph:
                work = np.zeros(n_ph, np.int64)
                _photon_pass(np.int64(n_ph), seed, photons.f, photons.i, voxels, mat_tab,
                             kn_table, ray_table, majorant, params, self.tally, self._counters,
                             electrons.f, electrons.i, electrons.n,
                             photons_next.f, photons_next.i, photons_next.n, limit, work)
                self.passes.append(("photon", work))
                photons.n[0] = 0
                photons, photons_next = photons_next, photons
            n_el = electrons.filled()
            if n_el:  # the filter pass: one test per thread, no divergence (not counted)
                _filter_pass(np.int64(n_el), electrons.f, electrons.i, voxels, mat_tab, params,
                             self.tally, electrons_next.f, electrons_next.i, electrons_next.n)
                electrons.n[0] = 0
                electrons, electrons_next = electrons_next, electrons
                n_el = electrons.filled()
            if n_el:
                if self.sort_electrons:
                    electrons.sort_by_energy()
                work = np.zeros(n_el, np.int64)
                _electron_pass(np.int64(n_el), seed, electrons.f, electrons.i, voxels, mat_tab,
                               inv_range, range_grid, ms_table, params, self.tally,
                               self._counters, photons.f, photons.i, photons.n,
                               electrons_next.f, electrons_next.i, electrons_next.n, limit, work)
                self.passes.append(("electron", work))
                electrons.n[0] = 0
                electrons, electrons_next = electrons_next, electrons
            if not n_ph and not n_el:
                break

    def counters(self) -> np.ndarray:
        """Summed uint64 counters (emitted, escaped, overflow, bremsstrahlung)."""
        return self._counters.copy()


def warp_efficiency(work: np.ndarray, warp: int = WARP_SIZE) -> dict:
    """SIMT efficiency of running ``work`` (per thread, launch order) in warps of ``warp``.

    A warp takes as long as its busiest thread, so its efficiency is mean/max of its
    threads' work; the figure for a launch is Σ work / Σ_warps (lanes · max), the share of
    issued lanes that do useful work.

    Returns
    -------
    dict
        ``efficiency`` (0–1), ``warps``, ``mean_work`` and ``mean_warp_max``.
    """
    work = np.asarray(work, dtype=np.float64)
    if work.size == 0:
        return {"efficiency": float("nan"), "warps": 0, "mean_work": 0.0, "mean_warp_max": 0.0}
    n_warps = -(-work.size // warp)
    padded = np.zeros(n_warps * warp)
    padded[: work.size] = work
    maxima = padded.reshape(n_warps, warp).max(axis=1)
    lanes = np.full(n_warps, warp)
    lanes[-1] = work.size - (n_warps - 1) * warp
    issued = float((lanes * maxima).sum())
    return {
        "efficiency": float(work.sum() / issued) if issued else float("nan"),
        "warps": int(n_warps),
        "mean_work": float(work.mean()),
        "mean_warp_max": float(maxima.mean()),
    }
