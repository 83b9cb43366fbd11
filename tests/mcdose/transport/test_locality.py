"""The voxel-order sort of a chunk of decays (mcdose.transport.locality) and the prefetch hint."""

import numba
import numpy as np
import pytest

from mcdose.transport.locality import (
    CHUNK_BITS,
    RADIX_BITS,
    key_position,
    key_voxel,
    pack_key,
    sort_keys_by_voxel,
)
from mcdose.transport.prefetch import prefetch_row


@numba.njit(_nrt=False)
def _sort(keys, scratch, counts, m, bits):
    sort_keys_by_voxel(keys, scratch, counts, m, bits)


@numba.njit
def _pack_all(voxels):
    keys = np.empty(voxels.shape[0], np.int64)
    for i in range(voxels.shape[0]):
        keys[i] = pack_key(voxels[i], i)
    return keys


@numba.njit
def _unpack(keys):
    v = np.empty(keys.shape[0], np.int64)
    p = np.empty(keys.shape[0], np.int64)
    for i in range(keys.shape[0]):
        v[i] = key_voxel(keys[i])
        p[i] = key_position(keys[i])
    return v, p


@pytest.mark.parametrize("n_voxels", [1, 7, 2048, 34_078_720, 2**40])
@pytest.mark.parametrize("m", [1, 5, 3000])
def test_sort_matches_a_stable_argsort(n_voxels, m):
    rng = np.random.default_rng(m + n_voxels % 1000)
    voxels = rng.integers(0, n_voxels, m)
    voxels[: m // 3] = voxels[0]  # ties: their positions must stay ascending (stable)
    keys = np.concatenate([_pack_all(voxels), np.full(5, -7)])  # tail must be untouched
    bits = max(1, int(n_voxels - 1).bit_length())
    _sort(keys, np.empty(m, np.int64), np.empty(1 << RADIX_BITS, np.int64), m, bits)
    v, p = _unpack(keys[:m])
    expected = np.argsort(voxels, kind="stable")
    np.testing.assert_array_equal(p, expected)
    np.testing.assert_array_equal(v, voxels[expected])
    np.testing.assert_array_equal(keys[m:], -7)


def test_chunk_positions_fit_their_bits():
    from mcdose.transport.cpu import CHUNK

    assert CHUNK <= 1 << CHUNK_BITS


@numba.njit
def _sum_with_prefetch(a, idx):
    s = 0.0
    for k in range(idx.shape[0]):
        prefetch_row(a, idx[(k + 3) % idx.shape[0]])
        prefetch_row(a, -10**12)  # a hint never faults, even far outside the array
        s += a[idx[k], 1]
    return s


def test_prefetch_is_a_hint_that_changes_nothing():
    a = np.arange(200, dtype=np.float32).reshape(100, 2)
    idx = np.array([3, 99, 0, 42, 42])
    assert _sum_with_prefetch(a, idx) == a[idx, 1].sum()
    ir = _sum_with_prefetch.inspect_llvm(_sum_with_prefetch.signatures[0])
    assert "@llvm.prefetch" in ir
