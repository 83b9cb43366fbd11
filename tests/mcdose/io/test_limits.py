"""mcdose.io.limits: plausible ranges and the --force-large gate (more cases in the table)."""

import pytest

from mcdose.errors import InputError
from mcdose.io import limits
from tests.helpers import assert_one_line


def test_histories_gate_and_ceiling():
    assert limits.check_histories(1e7) == 10**7
    assert limits.check_histories(limits.LARGE_HISTORIES) == limits.LARGE_HISTORIES
    with pytest.raises(InputError) as err:
        limits.check_histories(limits.LARGE_HISTORIES + 1, threads=2)
    assert_one_line(err, "--histories", "2 CPU core(s)", limits.FORCE_FLAG)
    assert limits.check_histories(10**18, force=True) == 10**18
    with pytest.raises(InputError) as err:
        limits.check_histories(2**63, force=True)
    assert_one_line(err, "exceeds")


def test_threads_lowered_to_cores(caplog):
    assert limits.check_threads(None) is None
    assert limits.check_threads(1) == 1
    assert limits.check_threads(10**6) == limits.cpu_count()
    assert "core(s) available" in caplog.text
    with pytest.raises(InputError):
        limits.check_threads(0)


def test_memory_gate():
    avail = limits.available_memory_bytes()
    limits.check_memory(0.1 * avail, what="x")
    with pytest.raises(InputError) as err:
        limits.check_memory(0.8 * avail, what="a grid", flag="--size")
    assert_one_line(err, "a grid (--size)", limits.FORCE_FLAG)
    limits.check_memory(0.8 * avail, what="a grid", force=True)
    with pytest.raises(InputError):
        limits.check_memory(2.0 * avail, what="a grid", force=True)


@pytest.mark.parametrize("voxel", [(0.98, 0.98, 3.0), (0.001, 1, 1000)])
def test_voxel_sizes_accepted(voxel):
    assert limits.check_voxel_mm(voxel) == tuple(float(v) for v in voxel)


@pytest.mark.parametrize("voxel", [(1e-9, 1, 1), (1, 1, 1e4), (0, 1, 1), (float("nan"), 1, 1)])
def test_voxel_sizes_refused(voxel):
    with pytest.raises(InputError):
        limits.check_voxel_mm(voxel)
