"""The GPU's banked transport order on the CPU: bitwise equal to the depth-first engine."""

import numpy as np
import pytest

from mcdose.physics import layout as L
from mcdose.transport.banked_cpu import BankedCpuBackend, warp_efficiency
from mcdose.transport.cpu import CpuBackend
from mcdose.transport.setup import prepare_simulation


def _inputs(nuclide):
    density = np.full((5, 6, 7), 1.04, np.float32)
    density[:, :, :2] = 0.26
    density[:, :, -1] = 1.85
    activity = np.zeros_like(density)
    activity[1:4, 2:5, 2:5] = 1.0
    return prepare_simulation(density, activity, (6.0, 6.0, 6.0), nuclide=nuclide)


@pytest.mark.parametrize("nuclide", ["Lu-177", "F-18"])
def test_banked_order_gives_the_depth_first_tally_bit_for_bit(nuclide):
    # Each particle draws from its own stream (seed, history, ancestry), and the tally is
    # integer: transporting all decays' photons, then all electrons, then the bremsstrahlung
    # (the GPU's order) must deposit exactly what the per-history stack deposits.  F-18 adds
    # positrons (annihilation photons from the decay).  With and without the energy sort.
    inputs = _inputs(nuclide)
    n, seed = 3000, 11
    ref = CpuBackend(inputs, threads=1)
    ref.run(0, n, seed)
    # Particles suspended after a few flights or steps and resumed in later passes (their
    # random stream picked up where it stopped) must also give the same tally.
    for sort, limit in ((True, 8), (False, 8), (True, 1), (True, L.NO_WORK_LIMIT)):
        banked = BankedCpuBackend(inputs, sort_electrons=sort, pass_work_limit=limit)
        banked.run(0, n, seed)
        assert np.array_equal(banked.tally, ref._tallies.sum(axis=0)), (sort, limit)
        assert np.array_equal(banked.counters(), ref.counters()), (sort, limit)
        if limit == 1:  # suspension happened: many more passes than generations
            assert len(banked.passes) > 50
    kinds = [kind for kind, _ in banked.passes]
    assert kinds[:2] == ["photon", "electron"]


def test_banked_runs_split_anywhere_add_up_to_one_run():
    # Rounds of any size give the same tally: the bank capacity and round boundaries do not
    # enter the physics.
    inputs = _inputs("Lu-177")
    whole = BankedCpuBackend(inputs)
    whole.run(0, 900, 3)
    parts = BankedCpuBackend(inputs)
    for first, last in ((0, 1), (1, 400), (400, 900)):
        parts.run(first, last, 3)
    assert np.array_equal(whole.tally, parts.tally)


def test_warp_efficiency_is_mean_over_max_per_warp():
    assert warp_efficiency(np.ones(64))["efficiency"] == 1.0
    one_busy = np.zeros(32)
    one_busy[5] = 32.0
    assert warp_efficiency(one_busy)["efficiency"] == pytest.approx(1 / 32)
    # a partial last warp counts only its own lanes: 32 lanes of 2 and 8 lanes of 1 and 2
    work = np.r_[np.full(32, 2.0), np.full(4, 1.0), np.full(4, 2.0)]
    expected = work.sum() / (32 * 2 + 8 * 2)
    assert warp_efficiency(work)["efficiency"] == pytest.approx(expected)
