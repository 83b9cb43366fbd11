"""Tests for the Philox4x32-10 counter-based generator."""

import numba
import numpy as np
from scipy import stats

from mcdose.physics.rng import STATE_SIZE, philox4x32_10, rng_init, rng_uniform


@numba.njit
def _kat(c0, c1, c2, c3, k0, k1):
    return philox4x32_10(c0, c1, c2, c3, k0, k1)


@numba.njit
def _draw(seed, history, n):
    state = np.empty(STATE_SIZE, np.uint64)
    rng_init(state, seed, history, 0)
    out = np.empty(n)
    for i in range(n):
        out[i] = rng_uniform(state)
    return out


def _u(*words):
    return tuple(np.uint64(w) for w in words)


def test_known_answer_vector_zero():
    # Random123 kat_vectors: philox4x32 10 rounds, counter and key all zero
    # (Salmon et al. SC11; also shared/PHYSICS.md).
    out = _kat(*_u(0, 0, 0, 0, 0, 0))
    assert [int(x) for x in out] == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]


def test_known_answer_vector_all_ones():
    # Random123 kat_vectors: philox4x32 10 rounds, counter and key all 0xffffffff.
    f = 0xFFFFFFFF
    out = _kat(*_u(f, f, f, f, f, f))
    assert [int(x) for x in out] == [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]


def test_known_answer_vector_pi():
    # Random123 kat_vectors: philox4x32 10 rounds, counter/key digits of pi.
    out = _kat(*_u(0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344, 0xA4093822, 0x299F31D0))
    assert [int(x) for x in out] == [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]


def test_python_and_compiled_paths_agree():
    compiled = _draw(12345, 7, 9)
    pure = _draw.py_func(12345, 7, 9)
    np.testing.assert_array_equal(compiled, pure)


def test_streams_depend_only_on_seed_and_history():
    a = _draw(1, 5, 100)
    np.testing.assert_array_equal(a, _draw(1, 5, 100))
    assert not np.array_equal(a, _draw(1, 6, 100))
    assert not np.array_equal(a, _draw(2, 5, 100))
    # large history indices use the high counter word
    assert not np.array_equal(_draw(1, 2**32 + 5, 100), a)


def test_uniformity_and_range():
    x = _draw(2024, 0, 200_000)
    assert x.min() > 0.0 and x.max() < 1.0
    # Kolmogorov-Smirnov against U(0,1); p > 1e-3 for a fixed seed
    assert stats.kstest(x, "uniform").pvalue > 1e-3
    # lag-1 serial correlation within 5 sigma of zero (sigma = 1/sqrt(n))
    r = np.corrcoef(x[:-1], x[1:])[0, 1]
    assert abs(r) < 5 / np.sqrt(x.size)


def test_buffered_stream_equals_block_by_block_philox():
    # The generator refills four counter blocks at a time; its words must be exactly
    # Philox4x32-10 of counters (0, h_lo, h_hi, stream), (1, ...), ... in order, key = seed.
    from mcdose.physics.rng import rng_next_u32

    @numba.njit
    def words(seed, history, n):
        state = np.empty(STATE_SIZE, np.uint64)
        rng_init(state, seed, history, 0)
        out = np.empty(n, np.uint64)
        for i in range(n):
            out[i] = rng_next_u32(state)
        return out

    seed, history = 0x1234_5678_9ABC, 2**33 + 7
    got = words(seed, history, 40)
    expected = []
    for block in range(10):
        expected.extend(_kat(*_u(block, history & 0xFFFFFFFF, history >> 32, 0,
                                 seed & 0xFFFFFFFF, seed >> 32)))  # fmt: skip
    assert [int(x) for x in got] == [int(x) for x in expected]


def test_sequential_refill_gives_the_interleaved_stream():
    # The CUDA build refills the buffer one Philox chain at a time (fewer live registers);
    # the words must be exactly those of the CPU's four interleaved chains.
    from mcdose.physics.rng import _refill, _refill_sequential

    @numba.njit
    def both(seed, history, stream):
        a = np.empty(STATE_SIZE, np.uint64)
        b = np.empty(STATE_SIZE, np.uint64)
        rng_init(a, seed, history, stream)
        rng_init(b, seed, history, stream)
        for _ in range(3):
            _refill(a)
            _refill_sequential(b)
        return a, b

    a, b = both(np.uint64(99), np.int64(12345), np.uint64(0xDEADBEEF))
    assert np.array_equal(a, b)


def test_uniforms_are_float32_strictly_inside_the_unit_interval():
    # 23-bit uniforms: (k + 1/2)·2⁻²³, exact in float32, so log(ξ) and log(1 − ξ) are
    # finite for every draw -- including the extreme words 0 and 2³² − 1.
    from mcdose.physics.rng import _F_HALF, _F_INV_2_23, _SHIFT9

    for word in (0, 2**32 - 1):
        xi = (np.float32(np.uint64(word) >> _SHIFT9) + _F_HALF) * _F_INV_2_23
        assert 0.0 < xi < 1.0 and xi.dtype == np.float32
    x = _draw(3, 5, 100_000)
    assert x.min() > 0.0 and x.max() < 1.0
    assert np.array_equal(x, x.astype(np.float32).astype(np.float64))
    k = x * 2**23 - 0.5
    assert np.array_equal(k, np.round(k))


def test_child_streams_are_distinct_and_depend_on_parent_and_order():
    # A particle's stream is a hash of its parent's stream and its birth order; over the
    # first 64 children of 2000 parents no two streams of one parent coincide, and the same
    # (parent, k) always gives the same stream.
    from mcdose.physics.rng import child_stream

    @numba.njit
    def table(n_parents, n_children):
        out = np.empty((n_parents, n_children), np.uint64)
        for p in range(n_parents):
            for k in range(n_children):
                out[p, k] = child_stream(p, k)
        return out

    t = table(2000, 64)
    assert all(len(set(row.tolist())) == 64 for row in t)
    assert t.max() < 2**32
    assert np.array_equal(t, table(2000, 64))
    assert child_stream(0, 0) == t[0, 0]  # the Python (simulator) body agrees


def test_seek_resumes_a_stream_exactly_where_it_stopped():
    # A particle suspended after n words and resumed by rng_seek(n) draws the same words as
    # one that ran on -- for n inside a buffer, at its edge and far on.
    from mcdose.physics.rng import rng_next_u32, rng_seek, rng_words_drawn

    @numba.njit
    def tail(seed, history, stream, n, m):
        a = np.empty(STATE_SIZE, np.uint64)
        rng_init(a, seed, history, stream)
        for _ in range(n):
            rng_next_u32(a)
        drawn = rng_words_drawn(a)
        b = np.empty(STATE_SIZE, np.uint64)
        rng_init(b, seed, history, stream)
        rng_seek(b, drawn)
        out_a = np.empty(m, np.uint64)
        out_b = np.empty(m, np.uint64)
        for i in range(m):
            out_a[i] = rng_next_u32(a)
            out_b[i] = rng_next_u32(b)
        return drawn, out_a, out_b

    for n in (0, 1, 15, 16, 17, 100, 1000):
        drawn, a, b = tail(np.uint64(5), np.int64(77), np.uint64(123), n, 40)
        assert drawn == n
        assert np.array_equal(a, b), n


def test_state_carries_history_stream_and_spawn_key():
    # The transport reads a particle's history, stream and spawn key back from its random
    # state when it banks a particle (so a GPU thread need not hold them in registers):
    # they must be what rng_init was given, after any number of draws, and rng_spawn must
    # name the same children as next_child from the stream.
    from mcdose.physics.rng import (
        next_child,
        rng_history,
        rng_next_u32,
        rng_set_spawn_key,
        rng_spawn,
        rng_spawn_key,
        rng_stream,
    )

    @numba.njit
    def read_back(seed, history, stream, draws):
        s = np.empty(STATE_SIZE, np.uint64)
        rng_init(s, seed, history, stream)
        for _ in range(draws):
            rng_next_u32(s)
        children = np.empty(3, np.uint64)
        for k in range(3):
            children[k] = rng_spawn(s)
        key = rng_spawn_key(s)
        rng_set_spawn_key(s, stream)  # a resumed particle's key restored
        again = rng_spawn(s)
        return rng_history(s), rng_stream(s), children, key, again

    for history in (0, 1, 2**32 - 1, 2**32 + 5, 2**62 + 3):
        for draws in (0, 17, 1000):
            h, st, children, key, again = read_back(
                np.uint64(9), np.int64(history), np.uint64(0xFFFF_FFFE), draws
            )
            assert h == history and st == 0xFFFF_FFFE
            k = 0xFFFF_FFFE
            for child in children:
                expect, k = next_child(k)
                assert child == expect
            assert key == k and again == children[0]
