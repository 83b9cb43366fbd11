"""Compiled drivers that run single transport kernels for the validation tests.

They call the engine's own functions (``photon_flight``, ``transport_electron``,
samplers) — nothing is re-implemented here — with the packed arrays of a real
:func:`mcdose.transport.setup.prepare_simulation`.
"""

from __future__ import annotations

import numba
import numpy as np

from mcdose.physics import layout as L
from mcdose.physics.electron import sample_ms_cos_theta
from mcdose.physics.fp import F0, F1, F
from mcdose.physics.photon import sample_compton_epsilon, sample_rayleigh_cos
from mcdose.physics.rng import STATE_SIZE, rng_init, rng_uniform
from mcdose.transport.history import ESCAPE, photon_flight, transport_electron
from mcdose.transport.setup import TransportOptions, prepare_simulation


def slab_inputs(
    thickness_cm: float,
    *,
    material: str = "water",
    density_g_cm3: float = 1.0,
    slices: int = 20,
    options: TransportOptions | None = None,
    nuclide: str = "Lu-177",
):
    """A laterally infinite slab (one 1 m × 1 m voxel column) of ``slices`` voxels along z."""
    density = np.full((slices, 1, 1), density_g_cm3, np.float32)
    activity = np.ones_like(density)
    spacing = (1000.0, 1000.0, 10.0 * thickness_cm / slices)
    return prepare_simulation(
        density,
        activity,
        spacing,
        nuclide=nuclide,
        materials=np.zeros(density.shape, np.uint8),
        material_names=(material,),
        options=options,
    )


def f32(array):
    """``array`` as the kernels receive it (float32, contiguous; see SimulationInputs)."""
    return np.ascontiguousarray(array, dtype=np.float32)


@numba.njit
def narrow_beam_transmission(energy, n, seed, voxels, mat_tab, majorant, params):
    """Fraction of photons normally incident at z = 0 that cross the grid uncollided."""
    rng = np.empty(STATE_SIZE, np.uint64)
    x0 = 0.5 * params[L.P_DX]
    y0 = 0.5 * params[L.P_DY]
    length = params[L.P_NZ] * params[L.P_DZ]
    passed = 0
    for i in range(n):
        rng_init(rng, seed, i, 7)
        outcome, x, y, z, vox, m, ie, f, _ = photon_flight(
            F(energy), x0, y0, F(1e-9), F0, F0, F1, voxels, mat_tab, majorant, params, rng
        )
        if outcome == ESCAPE and z >= length:
            passed += 1
    return passed / n


@numba.njit
def electron_transmission(
    energy, n, seed, voxels, mat_tab, inv_range, range_grid, ms_table, params
):
    """Fraction of electrons normally incident at z = 0 that leave through the far face."""
    rng = np.empty(STATE_SIZE, np.uint64)
    bank_f = np.empty((L.STACK_COLUMNS, L.STACK_SIZE), np.float32)
    bank_i = np.empty((L.BANK_INT_COLUMNS, L.STACK_SIZE), np.int64)
    bank_n = np.zeros(1, np.int64)
    tally = np.zeros(voxels.shape[0], np.uint64)
    counters = np.zeros(L.N_COUNTERS, np.uint64)
    x0 = 0.5 * params[L.P_DX]
    y0 = 0.5 * params[L.P_DY]
    length = params[L.P_NZ] * params[L.P_DZ]
    passed = 0
    for i in range(n):
        rng_init(rng, seed, i, 9)
        bank_n[0] = 0
        escaped, x, y, z, _ = transport_electron(
            F(energy), x0, y0, F(1e-9), F0, F0, F1, -F1, -1,
            voxels, mat_tab, inv_range, range_grid, ms_table, params,
            tally, counters, bank_f, bank_i, bank_n, bank_f, bank_i, bank_n, rng,
            L.NO_WORK_LIMIT,
        )  # fmt: skip
        if escaped > 0.0 and z >= length:
            passed += 1
    return passed / n


@numba.njit
def compton_samples(kn_table, params, energy, n, seed):
    """ε = E'/E samples of Compton scattering at ``energy`` keV."""
    rng = np.empty(STATE_SIZE, np.uint64)
    rng_init(rng, seed, 0, 3)
    out = np.empty(n)
    for i in range(n):
        out[i] = sample_compton_epsilon(kn_table, params, F(energy), rng_uniform(rng))
    return out


@numba.njit
def rayleigh_samples(ray_table, params, m, energy, n, seed):
    """cos θ samples of Rayleigh scattering in material ``m`` at ``energy`` keV."""
    rng = np.empty(STATE_SIZE, np.uint64)
    rng_init(rng, seed, 0, 4)
    out = np.empty(n)
    for i in range(n):
        out[i] = sample_rayleigh_cos(ray_table, params, m, F(energy), rng_uniform(rng))
    return out


@numba.njit
def ms_samples(ms_table, params, t_over_lambda1, n, seed):
    """cos θ samples of multiple scattering over ``t_over_lambda1`` transport mean free paths."""
    rng = np.empty(STATE_SIZE, np.uint64)
    rng_init(rng, seed, 0, 5)
    out = np.empty(n)
    for i in range(n):
        out[i] = sample_ms_cos_theta(ms_table, params, F(t_over_lambda1), rng_uniform(rng))
    return out
