"""Counter-based random numbers: Philox4x32-10 keyed by (seed, history), for CPU and CUDA.

Every history owns an independent stream: the key is the 64-bit seed, the counter is
``(block, history_lo, history_hi, stream)``.  The numbers a history draws therefore depend
only on ``(seed, history index)`` — not on the thread that runs it, the number of threads,
or whether it runs on a CPU or a GPU.

The generator state is a small ``uint64`` array (see :data:`STATE_SIZE`) that the driver
allocates per thread (``np.empty`` on the CPU, ``cuda.local.array`` on the GPU) and passes
to the pure functions below.

References
----------
J. K. Salmon, M. A. Moraes, R. O. Dror, D. E. Shaw, "Parallel random numbers: as easy as
1, 2, 3", Proc. SC11 (2011), doi:10.1145/2063384.2063405.  Known-answer test vector for
Philox4x32-10 with counter and key all zero: ``6627e8d5 e169c58d bc57ac4c 9b00dbd8``
(Random123 ``kat_vectors``).
"""

from __future__ import annotations

import numpy as np
from numba.extending import register_jitable

#: Number of ``uint64`` words in a generator state.
STATE_SIZE = 11

_MASK32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)
_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = np.uint64(0x9E3779B9)
_W1 = np.uint64(0xBB67AE85)
_ONE = np.uint64(1)
_ZERO = np.uint64(0)
# state layout: key0, key1, ctr0 (block), ctr1 (history lo), ctr2 (history hi), ctr3 (stream),
# out0..out3 (buffered words), position in the buffer (0..4)
_K0, _K1, _C0, _C1, _C2, _C3, _OUT, _POS = 0, 1, 2, 3, 4, 5, 6, 10
_INV_2_32 = 2.3283064365386963e-10  # 2**-32


@register_jitable
def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Philox4x32 with 10 rounds on one counter block.

    Parameters
    ----------
    c0, c1, c2, c3 : uint64
        The 128-bit counter as four 32-bit words (held in uint64).
    k0, k1 : uint64
        The 64-bit key as two 32-bit words.

    Returns
    -------
    tuple of 4 uint64
        Four pseudo-random 32-bit words.
    """
    for r in range(10):
        if r > 0:
            k0 = (k0 + _W0) & _MASK32
            k1 = (k1 + _W1) & _MASK32
        p0 = _M0 * c0
        p1 = _M1 * c2
        hi0 = p0 >> _SHIFT32
        lo0 = p0 & _MASK32
        hi1 = p1 >> _SHIFT32
        lo1 = p1 & _MASK32
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


@register_jitable
def rng_init(state, seed, history, stream):
    """Point ``state`` at the stream of ``(seed, history, stream)``, first block.

    Parameters
    ----------
    state : uint64[STATE_SIZE]
        Scratch array owned by the calling thread.
    seed : int
        User seed, 0 ≤ seed < 2⁶⁴.
    history : int
        History (decay) index, 0 ≤ history < 2⁶⁴.
    stream : int
        Sub-stream, 0 ≤ stream < 2³² (0 for transport).
    """
    s = np.uint64(seed)
    h = np.uint64(history)
    state[_K0] = s & _MASK32
    state[_K1] = s >> _SHIFT32
    state[_C0] = _ZERO
    state[_C1] = h & _MASK32
    state[_C2] = h >> _SHIFT32
    state[_C3] = np.uint64(stream) & _MASK32
    state[_POS] = np.uint64(4)


@register_jitable
def rng_next_u32(state):
    """Next 32-bit word of the stream (as uint64)."""
    if state[_POS] >= np.uint64(4):
        o0, o1, o2, o3 = philox4x32_10(
            state[_C0], state[_C1], state[_C2], state[_C3], state[_K0], state[_K1]
        )
        state[_OUT] = o0
        state[_OUT + 1] = o1
        state[_OUT + 2] = o2
        state[_OUT + 3] = o3
        state[_C0] = (state[_C0] + _ONE) & _MASK32
        if state[_C0] == _ZERO:  # 2³² blocks per history: wrap into the stream word
            state[_C3] = (state[_C3] + np.uint64(0x10000)) & _MASK32
        state[_POS] = _ZERO
    pos = state[_POS]
    state[_POS] = pos + _ONE
    return state[_OUT + np.int64(pos)]


@register_jitable
def rng_uniform(state):
    """Uniform float64 in the open interval (0, 1), 32 bits of resolution."""
    return (np.float64(rng_next_u32(state)) + 0.5) * _INV_2_32
