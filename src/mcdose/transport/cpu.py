"""CPU driver: ``numba.njit(parallel=True)`` over chunks of histories, private per-thread tallies.

Each thread adds into its own row of a ``(threads, voxels)`` uint64 tally; rows are summed
at the end of each batch.  The paper phantom's maps (density, tally: hundreds of MB) are
far larger than the caches, so the engine is bound by memory latency, and it is arranged to
overlap its cache misses: a thread takes a chunk of :data:`CHUNK` decays, draws all their
source voxels first (the alias-table look-ups then run as a tight loop of independent
loads), and while it runs one decay it prefetches the density and tally lines of the decay
:data:`PREFETCH_AHEAD` places on (:mod:`mcdose.transport.prefetch`).  The transport kernel
is compiled without numba's reference-counting runtime (``_nrt=False``): it allocates
nothing (random states, particle stacks and source scratch are passed in), and without the
runtime the many small physics functions that take arrays are called without atomic
reference-count updates.

Integer addition is exact and associative, so the result does not depend on the number of
threads or on which thread ran which history — together with the counter-based random
numbers (one stream per particle) a seed gives bit-identical dose for any thread count.
"""

from __future__ import annotations

import numba
import numpy as np

from mcdose._jit_cache import physics_keyed_cache
from mcdose.physics import layout as L
from mcdose.physics.rng import STATE_SIZE, rng_init
from mcdose.transport.history import run_history, source_draws, source_voxel
from mcdose.transport.prefetch import prefetch_row

#: Decays per chunk of work: a thread draws the chunk's source voxels, then runs its decays.
CHUNK = 16384

#: How many decays ahead the chunk loop prefetches a decay's density and tally lines.
PREFETCH_AHEAD = 2

_cache = physics_keyed_cache()
_cache.__enter__()  # the decorators below cache under a folder keyed by the physics sources


@numba.njit(parallel=True, cache=True, _nrt=False)
def _run_histories(
    first, last, seed, chunk,
    voxels, src_index, src_prob, src_alias,
    beta_icdf, elines, plines,
    mat_tab, inv_range, range_grid, kn_table, ray_table, ms_table, majorant, params,
    tallies, counters, rng_states, stacks_f, stacks_i, stacks_n,
    source_slots, source_xis, source_voxels,
):  # fmt: skip
    n = last - first
    n_chunks = (n + chunk - 1) // chunk
    n_src = src_index.shape[0]
    for c in numba.prange(n_chunks):
        slot = numba.get_thread_id()
        rng = rng_states[slot]
        slots = source_slots[slot]
        xis = source_xis[slot]
        vox = source_voxels[slot]
        tally = tallies[slot]
        start = first + c * chunk
        m = min(last, start + chunk) - start
        # the chunk's source voxels first: the draws, then the table look-ups in a tight
        # loop of independent loads, so that their cache misses overlap ...
        for i in range(m):
            rng_init(rng, seed, start + i, 0)
            slots[i], xis[i] = source_draws(rng, n_src)
        for i in range(m):
            vox[i] = source_voxel(slots[i], xis[i], src_index, src_prob, src_alias)
        # ... then the histories, each asking for the density and tally lines of the decay
        # PREFETCH_AHEAD places on, so that they arrive while this one runs
        for i in range(m):
            if i + PREFETCH_AHEAD < m:
                prefetch_row(voxels, vox[i + PREFETCH_AHEAD])
                prefetch_row(tally, vox[i + PREFETCH_AHEAD])
            run_history(
                start + i, seed, vox[i],
                voxels, src_index, src_prob, src_alias,
                beta_icdf, elines, plines,
                mat_tab, inv_range, range_grid, kn_table, ray_table, ms_table, majorant, params,
                tally, counters[slot], rng, stacks_f[slot], stacks_i[slot],
                stacks_n[slot],
            )  # fmt: skip


@numba.njit(parallel=True, cache=True)
def _accumulate_batch(tallies, factor, energy_sum, energy_sum_sq):
    """Sum thread rows (exact, integer), scale to keV per decay, add to the batch sums, reset."""
    n_rows, n_vox = tallies.shape
    for v in numba.prange(n_vox):
        acc = np.uint64(0)
        for t in range(n_rows):
            acc += tallies[t, v]
            tallies[t, v] = 0
        e = np.float64(acc) * factor
        energy_sum[v] += e
        energy_sum_sq[v] += e * e


_cache.__exit__(None, None, None)


class CpuBackend:
    """Runs ranges of histories on the CPU and accumulates batch statistics.

    Parameters
    ----------
    inputs : SimulationInputs
        Kernel arrays from :func:`mcdose.transport.setup.prepare_simulation`.
    threads : int, optional
        Number of threads (default: numba's, i.e. all cores).
    """

    name = "cpu"

    def __init__(self, inputs, threads: int | None = None) -> None:
        self.threads = int(threads or numba.get_num_threads())
        n_vox = inputs.voxels.shape[0]
        self._arrays = inputs.kernel_arrays()
        self._scale = float(inputs.params[L.P_TALLY_SCALE])
        self._tallies = np.zeros((self.threads, n_vox), np.uint64)
        self._counters = np.zeros((self.threads, L.N_COUNTERS), np.uint64)
        self._rng_states = np.zeros((self.threads, STATE_SIZE), np.uint64)
        self._stacks_f = np.zeros((self.threads, L.STACK_COLUMNS, L.STACK_SIZE), np.float32)
        self._stacks_i = np.zeros((self.threads, L.BANK_INT_COLUMNS, L.STACK_SIZE), np.int64)
        self._stacks_n = np.zeros((self.threads, 1), np.int64)
        self._source_slots = np.zeros((self.threads, CHUNK), np.int64)
        self._source_xis = np.zeros((self.threads, CHUNK), np.float32)
        self._source_voxels = np.zeros((self.threads, CHUNK), np.int64)
        self.energy_sum = np.zeros(n_vox)
        self.energy_sum_sq = np.zeros(n_vox)

    def run(self, first: int, last: int, seed: int) -> None:
        """Transport histories ``first`` … ``last − 1`` into the current batch."""
        previous = numba.get_num_threads()
        numba.set_num_threads(self.threads)
        try:
            # at least 4 chunks per thread, for balance
            chunk = max(1, min(CHUNK, (last - first) // (4 * self.threads)))
            _run_histories(
                np.int64(first), np.int64(last), np.uint64(seed), np.int64(chunk),
                *self._arrays, self._tallies, self._counters, self._rng_states,
                self._stacks_f, self._stacks_i, self._stacks_n,
                self._source_slots, self._source_xis, self._source_voxels,
            )  # fmt: skip
        finally:
            numba.set_num_threads(previous)

    def end_batch(self, histories: int) -> None:
        """Close the batch of ``histories`` decays: add its energy per decay to the sums."""
        _accumulate_batch(self._tallies, 1.0 / (self._scale * histories),
                          self.energy_sum, self.energy_sum_sq)  # fmt: skip

    def discard(self) -> None:
        """Forget the histories run since the last batch (used after the warm-up)."""
        self._tallies[:] = 0
        self._counters[:] = 0

    def restore(self, energy_sum, energy_sum_sq, counters) -> None:
        """Continue from saved batch sums (see :mod:`mcdose.transport.checkpoint`)."""
        self.energy_sum[:] = energy_sum
        self.energy_sum_sq[:] = energy_sum_sq
        self._counters[:] = 0
        self._counters[0] = counters

    def counters(self) -> np.ndarray:
        """Summed uint64 counters (emitted, escaped, overflow, bremsstrahlung)."""
        return self._counters.sum(axis=0, dtype=np.uint64)

    def energy_sums(self) -> tuple[np.ndarray, np.ndarray]:
        """Σ_b e_b and Σ_b e_b² per voxel (keV per decay)."""
        return self.energy_sum, self.energy_sum_sq
