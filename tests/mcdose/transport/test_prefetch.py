"""The prefetch hint the CPU engine uses (mcdose.transport.prefetch)."""

import numba
import numpy as np
import pytest
from numba.core.errors import TypingError

from mcdose.transport.prefetch import prefetch_row


@numba.njit
def _sum_with_prefetch(a, idx):
    s = 0.0
    for k in range(idx.shape[0]):
        prefetch_row(a, idx[(k + 3) % idx.shape[0]])
        prefetch_row(a, -(10**12))  # a hint never faults, even far outside the array
        s += a[idx[k], 1]
    return s


def test_prefetch_is_a_hint_that_changes_nothing():
    a = np.arange(200, dtype=np.float32).reshape(100, 2)
    idx = np.array([3, 99, 0, 42, 42])
    assert _sum_with_prefetch(a, idx) == a[idx, 1].sum()
    ir = _sum_with_prefetch.inspect_llvm(_sum_with_prefetch.signatures[0])
    assert "@llvm.prefetch" in ir


def test_prefetch_rejects_what_is_not_an_array_and_an_index():
    @numba.njit
    def bad(a):
        prefetch_row(a, 1.5)

    with pytest.raises(TypingError):
        bad(np.zeros(3))
