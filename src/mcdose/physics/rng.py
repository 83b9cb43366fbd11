"""Counter-based random numbers: Philox4x32-10 keyed by (seed, history), for CPU and CUDA.

Every particle owns an independent stream: the key is the 64-bit seed, the counter is
``(block, history_lo, history_hi, stream)``.  Stream 0 samples the decay itself; each particle
it emits, and each secondary of those, gets its own 32-bit stream number from
:func:`child_stream` (a hash of its parent's stream and its birth order).  The numbers a
particle draws therefore depend only on ``(seed, history index, its ancestry)`` — not on the
thread that runs it, the number of threads, the order in which particles are transported
(depth-first on a per-history stack on the CPU, breadth-first from particle banks on the GPU),
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

import numba
import numpy as np
from numba.extending import overload, register_jitable

#: Counter blocks generated together: four independent Philox chains overlap in the CPU's
#: pipeline (a single block is a ~50-cycle dependent chain), 16 words per refill.  The
#: stream is the same as generating the blocks one at a time.
BLOCKS_PER_REFILL = 4
_WORDS = 4 * BLOCKS_PER_REFILL
#: Number of ``uint64`` words in a generator state.
STATE_SIZE = 6 + _WORDS + 2

_MASK32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)
_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = np.uint64(0x9E3779B9)
_W1 = np.uint64(0xBB67AE85)
_ONE = np.uint64(1)
_ZERO = np.uint64(0)
# state layout: key0, key1, ctr0 (next block), ctr1 (history lo), ctr2 (history hi),
# ctr3 (stream), 16 buffered words, position in the buffer (0..16), spawn key of the
# stream's owner (see rng_spawn)
_K0, _K1, _C0, _C1, _C2, _C3, _OUT, _POS, _SPAWN = 0, 1, 2, 3, 4, 5, 6, 6 + _WORDS, 7 + _WORDS
_INV_2_32 = 2.3283064365386963e-10  # 2**-32
_F_INV_2_23 = np.float32(2.0**-23)
_F_HALF = np.float32(0.5)
_SHIFT9 = np.uint64(9)
_H1 = np.uint64(0x9E3779B1)
_H2 = np.uint64(0x85EBCA6B)
_H3 = np.uint64(0xC2B2AE35)
_S13 = np.uint64(13)
_S16 = np.uint64(16)


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
        Sub-stream, 0 ≤ stream < 2³² (0 for transport).  The spawn key (:func:`rng_spawn`)
        starts at ``stream``.
    """
    s = np.uint64(seed)
    h = np.uint64(history)
    state[_K0] = s & _MASK32
    state[_K1] = s >> _SHIFT32
    state[_C0] = _ZERO
    state[_C1] = h & _MASK32
    state[_C2] = h >> _SHIFT32
    state[_C3] = np.uint64(stream) & _MASK32
    state[_POS] = np.uint64(_WORDS)
    state[_SPAWN] = np.uint64(stream) & _MASK32


@register_jitable
def _philox_round(c0, c1, c2, c3, k0, k1):
    p0 = _M0 * c0
    p1 = _M1 * c2
    return (p1 >> _SHIFT32) ^ c1 ^ k0, p1 & _MASK32, (p0 >> _SHIFT32) ^ c3 ^ k1, p0 & _MASK32


@register_jitable
def _refill(state):
    """Philox4x32-10 of the next four counter blocks into the buffer (interleaved chains)."""
    c0 = state[_C0]
    c1 = state[_C1]
    c2 = state[_C2]
    c3 = state[_C3]
    k0 = state[_K0]
    k1 = state[_K1]
    a0, a1, a2, a3 = c0, c1, c2, c3
    b0, b1, b2, b3 = c0 + _ONE, c1, c2, c3
    d0, d1, d2, d3 = c0 + np.uint64(2), c1, c2, c3
    e0, e1, e2, e3 = c0 + np.uint64(3), c1, c2, c3
    for r in range(10):
        if r > 0:
            k0 = (k0 + _W0) & _MASK32
            k1 = (k1 + _W1) & _MASK32
        a0, a1, a2, a3 = _philox_round(a0, a1, a2, a3, k0, k1)
        b0, b1, b2, b3 = _philox_round(b0, b1, b2, b3, k0, k1)
        d0, d1, d2, d3 = _philox_round(d0, d1, d2, d3, k0, k1)
        e0, e1, e2, e3 = _philox_round(e0, e1, e2, e3, k0, k1)
    state[_OUT] = a0
    state[_OUT + 1] = a1
    state[_OUT + 2] = a2
    state[_OUT + 3] = a3
    state[_OUT + 4] = b0
    state[_OUT + 5] = b1
    state[_OUT + 6] = b2
    state[_OUT + 7] = b3
    state[_OUT + 8] = d0
    state[_OUT + 9] = d1
    state[_OUT + 10] = d2
    state[_OUT + 11] = d3
    state[_OUT + 12] = e0
    state[_OUT + 13] = e1
    state[_OUT + 14] = e2
    state[_OUT + 15] = e3
    # blocks advance four at a time; c0 stays a multiple of 4, so c0 + 3 never wraps
    c0 = (c0 + np.uint64(BLOCKS_PER_REFILL)) & _MASK32
    state[_C0] = c0
    if c0 == _ZERO:  # 2³² blocks per history: continue in the stream word
        state[_C3] = (c3 + np.uint64(0x10000)) & _MASK32
    state[_POS] = _ZERO


@register_jitable
def _refill_sequential(state):
    """The same four blocks as :func:`_refill`, one chain at a time (few live registers: GPU)."""
    c0 = state[_C0]
    c1 = state[_C1]
    c2 = state[_C2]
    c3 = state[_C3]
    for b in range(BLOCKS_PER_REFILL):
        a0, a1, a2, a3 = philox4x32_10(
            c0 + np.uint64(b), c1, c2, c3, state[_K0], state[_K1]
        )
        state[_OUT + 4 * b] = a0
        state[_OUT + 4 * b + 1] = a1
        state[_OUT + 4 * b + 2] = a2
        state[_OUT + 4 * b + 3] = a3
    c0 = (c0 + np.uint64(BLOCKS_PER_REFILL)) & _MASK32
    state[_C0] = c0
    if c0 == _ZERO:
        state[_C3] = (c3 + np.uint64(0x10000)) & _MASK32
    state[_POS] = _ZERO


def rng_refill(state):
    """Refill the buffer: interleaved chains on the CPU, sequential on CUDA (overloads)."""
    _refill(state)


@overload(rng_refill, target="cpu")
def _rng_refill_cpu(state):
    def impl(state):
        _refill(state)

    return impl


if not numba.config.ENABLE_CUDASIM:

    @overload(rng_refill, target="cuda")
    def _rng_refill_cuda(state):
        def impl(state):
            _refill_sequential(state)

        return impl


@register_jitable
def rng_next_u32(state):
    """Next 32-bit word of the stream (as uint64)."""
    if state[_POS] >= np.uint64(_WORDS):
        rng_refill(state)
    pos = state[_POS]
    state[_POS] = pos + _ONE
    return state[_OUT + np.int64(pos)]


@register_jitable
def rng_words_drawn(state):
    """Number of 32-bit words drawn from the stream since :func:`rng_init`."""
    return np.int64(state[_C0]) * 4 - _WORDS + np.int64(state[_POS])


@register_jitable
def rng_history(state):
    """History index of the stream ``state`` is positioned in (as given to :func:`rng_init`).

    Read from the counter words, so a transport loop need not keep the history in registers
    (on a GPU each 64-bit value held through the loop costs two).
    """
    return np.int64(state[_C1] | (state[_C2] << _SHIFT32))


@register_jitable
def rng_stream(state):
    """Sub-stream number of ``state`` (as given to :func:`rng_init`).

    Exact while fewer than 2³⁴ words are drawn from one stream (after 2³² counter blocks
    :func:`rng_refill` moves on in the stream word; :func:`rng_words_drawn` has the same
    bound).
    """
    return np.int64(state[_C3])


@register_jitable
def rng_seek(state, words):
    """Continue a freshly initialised stream after its first ``words`` words.

    A particle suspended in one GPU pass resumes in a later one with exactly the numbers it
    would have drawn had it run on (see :mod:`mcdose.transport.history`).
    """
    if words <= 0:
        return
    state[_C0] = np.uint64((words // _WORDS) * BLOCKS_PER_REFILL)
    rng_refill(state)
    state[_POS] = np.uint64(words % _WORDS)


@register_jitable
def rng_uniform(state):
    """Uniform float32 in the open interval (0, 1), 23 bits of resolution.

    The top 23 bits k of a word: (k + ½)·2⁻²³ needs 24 significant bits, so every value is
    exact in float32 and lies in [2⁻²⁴, 1 − 2⁻²⁴]; ``log(ξ)`` and ``log(1 − ξ)`` are always
    finite.  (With 24 bits, k + ½ would round to 2²⁴ for the top k: ξ = 1.)
    """
    return (np.float32(rng_next_u32(state) >> _SHIFT9) + _F_HALF) * _F_INV_2_23


@register_jitable
def rng_uniform64(state):
    """Uniform float64 in the open interval (0, 1), 32 bits of resolution."""
    return (np.float64(rng_next_u32(state)) + 0.5) * _INV_2_32


@register_jitable
def child_stream(parent, k):
    """Stream number of the ``k``-th particle (k = 0, 1, ...) born from stream ``parent``.

    MurmurHash3's 32-bit finaliser of ``parent·φ + k + 1``: deterministic, so a particle's
    random numbers follow from its ancestry alone.  Two particles of one history share a
    stream with probability ≈ n²/2³³ (≈ 10⁻⁷ for n = 30 particles); such a pair would only
    reuse numbers, not bias the physics.

    Parameters
    ----------
    parent : int
        Stream of the parent (0: the decay), 0 ≤ parent < 2³².
    k : int
        Birth order of the child among the parent's children.

    Returns
    -------
    uint64
        The child's stream number, < 2³².
    """
    x = (np.uint64(parent) * _H1 + np.uint64(k) + _ONE) & _MASK32
    x ^= x >> _S16
    x = (x * _H2) & _MASK32
    x ^= x >> _S13
    x = (x * _H3) & _MASK32
    x ^= x >> _S16
    return x


@register_jitable
def next_child(spawn):
    """Stream of a particle's next child, and the particle's updated spawn key.

    A particle starts with ``spawn`` = its own stream; each child takes
    ``child_stream(spawn, 0)`` and the key moves on to ``child_stream(spawn, 1)``.  One
    number carries the whole birth order (no child counter to keep live on a GPU).

    Returns
    -------
    tuple of uint64
        (the child's stream, the new spawn key)
    """
    return child_stream(spawn, 0), child_stream(spawn, 1)


@register_jitable
def rng_spawn(state):
    """Stream of the next child of the particle drawing from ``state``; the key moves on.

    The particle's spawn key (:func:`next_child`) is kept in the state, beside the stream it
    belongs to: :func:`rng_init` sets it to the stream, :func:`rng_set_spawn_key` restores a
    resumed particle's.  (On a GPU a key held through the transport loop costs two
    registers.)

    Returns
    -------
    uint64
        The child's stream number, < 2³².
    """
    child, key = next_child(state[_SPAWN])
    state[_SPAWN] = key
    return child


@register_jitable
def rng_spawn_key(state):
    """The spawn key of the particle drawing from ``state`` (to bank it with the particle)."""
    return np.int64(state[_SPAWN])


@register_jitable
def rng_set_spawn_key(state, key):
    """Set the spawn key (a banked particle's, after :func:`rng_init`)."""
    state[_SPAWN] = np.uint64(key)
