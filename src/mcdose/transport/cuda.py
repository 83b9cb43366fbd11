"""CUDA driver (numba-cuda): decays, photons and electrons in separate kernels over particle banks.

The physics is the same source as the CPU driver (:mod:`mcdose.transport.history`).  A run of
histories goes in rounds, as in gDPM and MC-GPU (PHYSICS.md, "On the GPU"):

1. :func:`decay_kernel` — one thread per decay: position and emissions, banked into a photon
   bank and an electron bank (structure of arrays, slots claimed with an atomic counter);
2. :func:`photon_kernel` — one thread per banked photon: Woodcock tracking; Compton and
   photo-electrons go into the electron bank;
3. :func:`electron_kernel` — one thread per banked electron (sorted by energy when CuPy is
   at hand); bremsstrahlung photons go into the photon bank.

A particle does at most ``PASS_WORK_LIMIT`` flights or steps per pass; one that is not done
by then is suspended — stored with its whole state, its random stream's position included —
into the next pass's bank, and rounds 2–3 repeat until both banks are empty.  So no lane
holds its warp for the length of the longest track, and the banks stay dense.

Threads of a warp thus do alike work instead of waiting on the one history with the longest
mixed photon/electron tree.  Every particle draws from its own random stream (keyed by seed,
history and ancestry), so the dose does not depend on the bank order, the grid size or the
atomics' timing: the tally is fixed-point uint64 with integer atomic adds, order-independent.

This module imports ``numba.cuda`` at import time and is itself imported only when a CUDA run
is requested (``import mcdose`` never touches CUDA).  It also runs under the CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``) for tests on machines without a GPU.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
from numba import cuda
from numba.extending import overload

from mcdose._jit_cache import physics_keyed_cache
from mcdose.physics import layout as L
from mcdose.physics.rng import STATE_SIZE
from mcdose.transport.history import (
    bank_slot,
    counter_add,
    filter_banked_electron,
    sample_decay,
    tally_add,
    transport_banked_electron,
    transport_banked_photon,
)

THREADS_PER_BLOCK = 128
#: Bank slots per history in a call: Lu-177 emits ≈ 1.2 electrons and 0.2 photons per decay
#: (ICRP 107) and its photons ≈ 0.3 Compton electrons; 3 leaves room for any nuclide's
#: cascade.  A full bank deposits the extra particle locally and counts it (never silent).
BANK_SLOTS_PER_HISTORY = 3


if not numba.config.ENABLE_CUDASIM:

    @overload(tally_add, target="cuda")
    def _tally_add_cuda(tally, index, value):
        def impl(tally, index, value):
            cuda.atomic.add(tally, index, value)

        return impl

    @overload(counter_add, target="cuda")
    def _counter_add_cuda(counters, index, value):
        def impl(counters, index, value):
            cuda.atomic.add(counters, (cuda.blockIdx.x, index), value)

        return impl

    @overload(bank_slot, target="cuda")
    def _bank_slot_cuda(count, capacity):
        def impl(count, capacity):
            slot = cuda.atomic.add(count, 0, 1)
            return slot if slot < capacity else -1

        return impl


# cache=True: a new process loads the compiled kernels (PTX and the cubin for its GPU) from
# disk instead of compiling (numba-cuda >= 0.30), under a folder keyed by the physics sources
_cache = physics_keyed_cache()
_cache.__enter__()


@cuda.jit(fastmath=True, cache=True)
def decay_kernel(
    first, last, seed,
    voxels, src_index, src_prob, src_alias, beta_icdf, elines, plines, params,
    tally, counters, ph_f, ph_i, ph_n, el_f, el_i, el_n,
):  # fmt: skip
    """Grid-stride loop over decays ``first`` … ``last − 1``: sample and bank their emissions."""
    rng = cuda.local.array(STATE_SIZE, numba.uint64)
    stride = cuda.gridsize(1)
    h = first + cuda.grid(1)
    while h < last:
        sample_decay(
            h, seed, -1,
            voxels, src_index, src_prob, src_alias, beta_icdf, elines, plines, params,
            tally, counters, ph_f, ph_i, ph_n, el_f, el_i, el_n, rng,
        )  # fmt: skip
        h += stride


@cuda.jit(fastmath=True, cache=True)
def photon_kernel(
    n, seed, bank_f, bank_i,
    voxels, mat_tab, kn_table, ray_table, majorant, params,
    tally, counters, out_f, out_i, out_n, rest_f, rest_i, rest_n, limit,
):  # fmt: skip
    """Grid-stride loop over the first ``n`` banked photons; their electrons into ``out_*``,
    photons still flying after ``limit`` flights into ``rest_*``."""
    rng = cuda.local.array(STATE_SIZE, numba.uint64)
    stride = cuda.gridsize(1)
    slot = cuda.grid(1)
    while slot < n:
        transport_banked_photon(
            slot, seed, bank_f, bank_i,
            voxels, mat_tab, kn_table, ray_table, majorant, params,
            tally, counters, out_f, out_i, out_n, rest_f, rest_i, rest_n, rng, limit,
        )  # fmt: skip
        slot += stride


@cuda.jit(fastmath=True, cache=True)
def electron_filter_kernel(n, bank_f, bank_i, voxels, mat_tab, params, tally, out_f, out_i, out_n):
    """Grid-stride loop over ``n`` banked electrons: deposit those that end at their next step,
    compact the others into ``out_*`` (one step's test per thread: no divergence)."""
    stride = cuda.gridsize(1)
    slot = cuda.grid(1)
    while slot < n:
        filter_banked_electron(slot, bank_f, bank_i, voxels, mat_tab, params, tally,
                               out_f, out_i, out_n)  # fmt: skip
        slot += stride


@cuda.jit(fastmath=True, cache=True)
def electron_kernel(
    n, seed, bank_f, bank_i,
    voxels, mat_tab, inv_range, range_grid, ms_table, params,
    tally, counters, out_f, out_i, out_n, rest_f, rest_i, rest_n, limit,
):  # fmt: skip
    """Grid-stride loop over the first ``n`` banked electrons; bremsstrahlung into ``out_*``,
    electrons still moving after ``limit`` steps into ``rest_*``."""
    rng = cuda.local.array(STATE_SIZE, numba.uint64)
    stride = cuda.gridsize(1)
    slot = cuda.grid(1)
    while slot < n:
        transport_banked_electron(
            slot, seed, bank_f, bank_i,
            voxels, mat_tab, inv_range, range_grid, ms_table, params,
            tally, counters, out_f, out_i, out_n, rest_f, rest_i, rest_n, rng, limit,
        )  # fmt: skip
        slot += stride


@cuda.jit(cache=True)
def accumulate_kernel(tally, factor, energy_sum, energy_sum_sq):
    """e = tally·factor; add e and e² to the batch sums; reset the tally."""
    i = cuda.grid(1)
    if i < tally.shape[0]:
        e = np.float64(tally[i]) * factor
        energy_sum[i] += e
        energy_sum_sq[i] += e * e
        tally[i] = np.uint64(0)


_cache.__exit__(None, None, None)


def kernel_specs():
    """This module's CUDA kernels as the driver launches them (see :mod:`mcdose.transport.ptx`)."""
    from mcdose.transport.ptx import spec_for

    f32 = numba.float32
    f64 = numba.float64
    i64 = numba.int64
    u64 = numba.uint64
    bank = (f32[:, ::1], i64[:, ::1], i64[::1])
    voxels = f32[:, ::1]
    tally_counters = (u64[::1], u64[:, ::1])
    decay_sig = (
        i64, i64, u64, voxels, i64[::1], f32[::1], i64[::1], f32[::1], f32[:, ::1],
        f32[:, ::1], f32[::1], *tally_counters, *bank, *bank,
    )  # fmt: skip
    photon_sig = (
        i64, u64, f32[:, ::1], i64[:, ::1], voxels, f32[:, :, ::1], f32[:, ::1],
        f32[:, :, ::1], f32[::1], f32[::1], *tally_counters, *bank, *bank, i64,
    )  # fmt: skip
    electron_sig = (
        i64, u64, f32[:, ::1], i64[:, ::1], voxels, f32[:, :, ::1], f32[:, :, ::1],
        f32[:, ::1], f32[::1], f32[::1], *tally_counters, *bank, *bank, i64,
    )  # fmt: skip
    filter_sig = (
        i64, f32[:, ::1], i64[:, ::1], voxels, f32[:, :, ::1], f32[::1], u64[::1], *bank,
    )  # fmt: skip
    return [
        spec_for(decay_kernel, decay_sig, THREADS_PER_BLOCK),
        spec_for(electron_filter_kernel, filter_sig, THREADS_PER_BLOCK),
        spec_for(photon_kernel, photon_sig, THREADS_PER_BLOCK),
        spec_for(electron_kernel, electron_sig, THREADS_PER_BLOCK),
        # end_batch launches 256 threads per block
        spec_for(accumulate_kernel, (u64[::1], f64, f64[::1], f64[::1]), 256),
    ]


@functools.cache
def _device_grid() -> tuple[int, int]:
    """(blocks, threads per block) for the transport kernels on the current device."""
    if numba.config.ENABLE_CUDASIM:
        return 2, 4
    device = cuda.get_current_device()
    sms = int(device.MULTIPROCESSOR_COUNT)
    return sms * 16, THREADS_PER_BLOCK


def _sort_by_energy(bank_f, bank_i, n, spare_f, spare_i):
    """Reorder the first ``n`` slots by decreasing energy (CuPy); False if CuPy is absent."""
    if numba.config.ENABLE_CUDASIM or n < 2:
        return False
    try:
        import cupy
    except ImportError:
        return False
    f = cupy.asarray(bank_f)
    i = cupy.asarray(bank_i)
    order = cupy.argsort(-f[L.S_E, :n])
    sf = cupy.asarray(spare_f)
    si = cupy.asarray(spare_i)
    sf[:, :n] = f[:, :n][:, order]
    si[:, :n] = i[:, :n][:, order]
    f[:, :n] = sf[:, :n]
    i[:, :n] = si[:, :n]
    return True


class _Bank:
    """A particle bank on the device: float32 and int64 columns and a fill counter."""

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self.f = cuda.device_array((L.STACK_COLUMNS, self.capacity), np.float32)
        self.i = cuda.device_array((L.BANK_INT_COLUMNS, self.capacity), np.int64)
        self.n = cuda.to_device(np.zeros(1, np.int64))

    def arrays(self) -> tuple:
        return self.f, self.i, self.n

    def filled(self) -> int:
        """Slots holding particles (the counter may run past the capacity when full)."""
        return min(int(self.n.copy_to_host()[0]), self.capacity)

    def clear(self) -> None:
        self.n.copy_to_device(np.zeros(1, np.int64))


class CudaBackend:
    """Runs ranges of histories on the GPU and accumulates batch statistics on the device.

    Parameters
    ----------
    inputs : SimulationInputs
        Kernel arrays from :func:`mcdose.transport.setup.prepare_simulation`.
    blocks, threads : int, optional
        Launch configuration (default: 16 blocks of 128 threads per SM).
    histories_per_round : int, optional
        Decays sampled per round; the banks hold ``BANK_SLOTS_PER_HISTORY`` particles each.
    sort_electrons : bool
        Sort the electron bank by energy before each electron pass (needs CuPy).
    pass_work_limit : int
        Photon flights or electron steps a particle does per pass before it is suspended into
        the next pass (:data:`mcdose.physics.layout.PASS_WORK_LIMIT`).
    """

    name = "cuda"

    def __init__(self, inputs, blocks: int | None = None, threads: int | None = None,
                 histories_per_round: int = 2_000_000, sort_electrons: bool = True,
                 pass_work_limit: int = L.PASS_WORK_LIMIT) -> None:
        default_blocks, default_threads = _device_grid()
        self.blocks = int(blocks or default_blocks)
        self.threads = int(threads or default_threads)
        self.histories_per_round = int(histories_per_round)
        self.sort_electrons = bool(sort_electrons)
        self.pass_work_limit = int(pass_work_limit)
        n_vox = inputs.voxels.shape[0]
        self._scale = float(inputs.params[L.P_TALLY_SCALE])
        arrays = tuple(cuda.to_device(np.ascontiguousarray(a)) for a in inputs.kernel_arrays())
        (self._voxels, self._src_index, self._src_prob, self._src_alias, self._beta_icdf,
         self._elines, self._plines, self._mat_tab, self._inv_range, self._range_grid,
         self._kn_table, self._ray_table, self._ms_table, self._majorant,
         self._params) = arrays  # fmt: skip
        self._tally = cuda.to_device(np.zeros(n_vox, np.uint64))
        self._counters = cuda.to_device(
            np.zeros((self.blocks, L.N_COUNTERS), np.uint64)  # one row per block
        )
        self._sum = cuda.to_device(np.zeros(n_vox))
        self._sum_sq = cuda.to_device(np.zeros(n_vox))
        self._banks: tuple[_Bank, ...] | None = None
        #: particles transported per pass, for diagnostics: (kind, count) in launch order
        self.passes: list[tuple[str, int]] = []

    def _bank_set(self, histories: int) -> tuple[_Bank, ...]:
        capacity = BANK_SLOTS_PER_HISTORY * max(histories, 1) + 1024
        if self._banks is None or self._banks[0].capacity < capacity:
            # photons, electrons, their next-pass banks, and the sort's spare
            self._banks = tuple(_Bank(capacity) for _ in range(5))
        return self._banks

    def _launch(self, n: int) -> int:
        return min(self.blocks, max(1, math.ceil(n / self.threads)))

    def run(self, first: int, last: int, seed: int) -> None:
        """Transport histories ``first`` … ``last − 1`` into the current batch."""
        for start in range(first, last, self.histories_per_round):
            self._run_round(start, min(last, start + self.histories_per_round), seed)

    def _run_round(self, first: int, last: int, seed: int) -> None:
        photons, electrons, photons_next, electrons_next, spare = self._bank_set(last - first)
        for bank in (photons, electrons, photons_next, electrons_next):
            bank.clear()
        seed = np.uint64(seed)
        t = self.threads
        limit = np.int64(self.pass_work_limit)
        decay_kernel[self._launch(last - first), t](
            np.int64(first), np.int64(last), seed,
            self._voxels, self._src_index, self._src_prob, self._src_alias, self._beta_icdf,
            self._elines, self._plines, self._params,
            self._tally, self._counters, *photons.arrays(), *electrons.arrays(),
        )  # fmt: skip
        while True:
            n_ph = photons.filled()
            if n_ph:
                photon_kernel[self._launch(n_ph), t](
                    np.int64(n_ph), seed, photons.f, photons.i,
                    self._voxels, self._mat_tab, self._kn_table, self._ray_table,
                    self._majorant, self._params, self._tally, self._counters,
                    *electrons.arrays(), *photons_next.arrays(), limit,
                )  # fmt: skip
                self.passes.append(("photon", n_ph))
                photons.clear()
                photons, photons_next = photons_next, photons
            n_el = electrons.filled()
            if n_el:
                electron_filter_kernel[self._launch(n_el), t](
                    np.int64(n_el), electrons.f, electrons.i, self._voxels, self._mat_tab,
                    self._params, self._tally, *electrons_next.arrays(),
                )  # fmt: skip
                self.passes.append(("electron filter", n_el))
                electrons.clear()
                electrons, electrons_next = electrons_next, electrons
                n_el = electrons.filled()
            if n_el:
                if self.sort_electrons:
                    _sort_by_energy(electrons.f, electrons.i, n_el, spare.f, spare.i)
                electron_kernel[self._launch(n_el), t](
                    np.int64(n_el), seed, electrons.f, electrons.i,
                    self._voxels, self._mat_tab, self._inv_range, self._range_grid,
                    self._ms_table, self._params, self._tally, self._counters,
                    *photons.arrays(), *electrons_next.arrays(), limit,
                )  # fmt: skip
                self.passes.append(("electron", n_el))
                electrons.clear()
                electrons, electrons_next = electrons_next, electrons
            if not n_ph and not n_el:
                break
        cuda.synchronize()

    def end_batch(self, histories: int) -> None:
        """Close the batch of ``histories`` decays: add its energy per decay to the sums."""
        n = self._tally.shape[0]
        blocks = math.ceil(n / 256)
        accumulate_kernel[blocks, 256](
            self._tally, 1.0 / (self._scale * histories), self._sum, self._sum_sq
        )
        cuda.synchronize()

    def discard(self) -> None:
        """Forget the histories run since the last batch (used after the warm-up)."""
        self._tally.copy_to_device(np.zeros(self._tally.shape[0], np.uint64))
        self._counters.copy_to_device(np.zeros(self._counters.shape, np.uint64))

    def restore(self, energy_sum, energy_sum_sq, counters) -> None:
        """Continue from saved batch sums (see :mod:`mcdose.transport.checkpoint`)."""
        self._sum.copy_to_device(np.ascontiguousarray(energy_sum, dtype=np.float64))
        self._sum_sq.copy_to_device(np.ascontiguousarray(energy_sum_sq, dtype=np.float64))
        rows = np.zeros(self._counters.shape, np.uint64)
        rows[0] = counters
        self._counters.copy_to_device(rows)

    def counters(self) -> np.ndarray:
        """Summed uint64 counters (emitted, escaped, overflow, bremsstrahlung)."""
        return self._counters.copy_to_host().sum(axis=0, dtype=np.uint64)

    def energy_sums(self) -> tuple[np.ndarray, np.ndarray]:
        """Σ_b e_b and Σ_b e_b² per voxel (keV per decay), copied to the host."""
        return self._sum.copy_to_host(), self._sum_sq.copy_to_host()
