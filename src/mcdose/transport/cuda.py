"""CUDA driver (numba-cuda): one thread per history, integer atomic tallies on the device.

The physics is the same source as the CPU driver (:mod:`mcdose.transport.history`); here
:func:`~mcdose.transport.history.tally_add` is overloaded with ``cuda.atomic.add`` on uint64,
so the tally is exact and independent of the order in which threads add to it.  Batch sums
for the uncertainty are accumulated on the device; only the final sums are copied back.

This module imports ``numba.cuda`` at import time and is itself imported only when a CUDA
run is requested (``import mcdose`` never touches CUDA).  It also runs under the CUDA
simulator (``NUMBA_ENABLE_CUDASIM=1``) for tests on machines without a GPU.
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
from mcdose.transport.history import run_history, tally_add

THREADS_PER_BLOCK = 128
#: Per-thread particle stack shape (a global tuple: a compile-time constant for numba-cuda).
_STACK_SHAPE = (L.STACK_SIZE, L.STACK_COLUMNS)


if not numba.config.ENABLE_CUDASIM:

    @overload(tally_add, target="cuda")
    def _tally_add_cuda(tally, index, value):
        def impl(tally, index, value):
            cuda.atomic.add(tally, index, value)

        return impl


# cache=True: a new process loads the compiled kernel (PTX and the cubin for its GPU) from
# disk instead of compiling (numba-cuda >= 0.30), under a folder keyed by the physics sources
_cache = physics_keyed_cache()
_cache.__enter__()


@cuda.jit(cache=True)
def transport_kernel(
    first, last, seed,
    voxels, src_index, src_prob, src_alias,
    beta_icdf, elines, plines,
    mat_tab, inv_range, range_grid, kn_table, ray_table, ms_table, majorant, params,
    tally, counters,
):  # fmt: skip
    """Grid-stride loop over histories ``first`` … ``last − 1``; thread t owns counters[t]."""
    rng = cuda.local.array(STATE_SIZE, numba.uint64)
    stack = cuda.local.array(_STACK_SHAPE, numba.float64)
    tid = cuda.grid(1)
    stride = cuda.gridsize(1)
    h = first + tid
    while h < last:
        run_history(
            h, seed,
            voxels, src_index, src_prob, src_alias,
            beta_icdf, elines, plines,
            mat_tab, inv_range, range_grid, kn_table, ray_table, ms_table, majorant, params,
            tally, counters[tid], rng, stack,
        )  # fmt: skip
        h += stride


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


@functools.cache
def _device_grid() -> tuple[int, int]:
    """(blocks, threads per block) for the transport kernel on the current device."""
    if numba.config.ENABLE_CUDASIM:
        return 2, 4
    device = cuda.get_current_device()
    sms = int(device.MULTIPROCESSOR_COUNT)
    return sms * 16, THREADS_PER_BLOCK


class CudaBackend:
    """Runs ranges of histories on the GPU and accumulates batch statistics on the device."""

    name = "cuda"

    def __init__(self, inputs, blocks: int | None = None, threads: int | None = None) -> None:
        default_blocks, default_threads = _device_grid()
        self.blocks = int(blocks or default_blocks)
        self.threads = int(threads or default_threads)
        n_vox = inputs.voxels.shape[0]
        self._scale = float(inputs.params[L.P_TALLY_SCALE])
        self._arrays = tuple(
            cuda.to_device(np.ascontiguousarray(a)) for a in inputs.kernel_arrays()
        )
        self._tally = cuda.to_device(np.zeros(n_vox, np.uint64))
        self._counters = cuda.to_device(
            np.zeros((self.blocks * self.threads, L.N_COUNTERS), np.uint64)
        )
        self._sum = cuda.to_device(np.zeros(n_vox))
        self._sum_sq = cuda.to_device(np.zeros(n_vox))

    def run(self, first: int, last: int, seed: int) -> None:
        """Transport histories ``first`` … ``last − 1`` into the current batch."""
        n = last - first
        blocks = min(self.blocks, max(1, math.ceil(n / self.threads)))
        transport_kernel[blocks, self.threads](
            np.int64(first), np.int64(last), np.uint64(seed), *self._arrays,
            self._tally, self._counters,
        )  # fmt: skip
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


def kernel_specs():
    """This module's CUDA kernels as the driver launches them (see :mod:`mcdose.transport.ptx`)."""
    from mcdose.transport.ptx import spec_for

    f64 = numba.float64
    transport_sig = (
        numba.int64, numba.int64, numba.uint64,
        numba.float32[:, ::1], numba.int64[::1], f64[::1], numba.int64[::1],
        f64[::1], f64[:, ::1], f64[:, ::1],
        f64[:, :, ::1], f64[:, :, ::1], f64[:, ::1], f64[:, ::1], f64[:, :, ::1], f64[::1],
        f64[::1], f64[::1],
        numba.uint64[::1], numba.uint64[:, ::1],
    )  # fmt: skip
    return [
        spec_for(transport_kernel, transport_sig, THREADS_PER_BLOCK),
        # end_batch launches 256 threads per block
        spec_for(accumulate_kernel, (numba.uint64[::1], f64, f64[::1], f64[::1]), 256),
    ]
