"""Transport of one decay and all its descendants: the shared body of the CPU and CUDA drivers.

Everything here is a pure scalar function (``register_jitable``) of its arguments: the CPU
driver (:mod:`mcdose.transport.cpu`) compiles it with ``numba.njit(parallel=True)`` into
private per-thread tallies, the CUDA driver (:mod:`mcdose.transport.cuda`) with
``numba.cuda.jit`` into one tally updated with integer atomics.  The only backend-specific
operation is :func:`tally_add`, overloaded per target.

Model summary (details and sources in docs/physics.md):

* source: voxel chosen from the activity map by an alias table, position uniform in the
  voxel; the decay's emissions from the nuclide's ICRP-107 tables (see
  :func:`mcdose.nuclides.emission_sampler`), isotropic;
* photons: Woodcock (delta) tracking against an energy-dependent majorant; photoelectric
  absorption (photoelectron gets the photon energy), Compton (Klein–Nishina, electron along
  the kinematic direction), Rayleigh (form factors); below ``P_P_CUT`` deposited locally;
  photons leaving the grid are counted as escaped;
* electrons: condensed history in mass thickness, CSDA energy loss deposited exactly in every
  voxel the step crosses, random hinge with modified-Wentzel deflection, steps stop at
  material changes, bremsstrahlung photons above ``P_BREMS_K_CUT`` produced explicitly;
  below ``P_E_CUT`` (or when range rejection applies) the energy is deposited locally;
* tallies: fixed-point unsigned 64-bit energies (``P_TALLY_SCALE`` units per keV), so sums
  are exact and independent of the order of the additions.

Particles waiting for transport live in *banks*: structure-of-arrays ``bank_f[column, slot]``
(float32: type, energy, position, direction) and ``bank_i[column, slot]`` (int64: history,
random-number stream) with a fill counter ``count[0]``.  The CPU engine
(:func:`run_history`) gives each thread a small bank used as a last-in first-out stack and
follows a decay depth-first; the GPU engine fills one photon and one electron bank with all
the particles of many decays and transports each bank in its own kernel, so the threads of
a warp do alike work (:mod:`mcdose.transport.cuda`).  Every particle draws from its own
random stream (:func:`mcdose.physics.rng.next_child`), so both orders give the same
physics — on the CPU, bit for bit the same tally.

Precision: float32 throughout (:mod:`mcdose.physics.fp`); energies become float64 only on
their way into the fixed-point tally (:func:`to_fixed`).
"""

from __future__ import annotations

import math
import threading

import numpy as np
from numba.extending import overload, register_jitable

from mcdose.physics import layout as L
from mcdose.physics.electron import (
    energy_at_range,
    energy_cell,
    sample_ms_cos_theta,
    state_at_range,
    step_limits,
)
from mcdose.physics.fp import F0, F1, F_FAR, F_TWO_PI
from mcdose.physics.interp import lerp_mat
from mcdose.physics.photon import (
    compton_cos_theta,
    compton_electron_direction,
    isotropic_direction,
    rotate_direction,
    sample_compton_epsilon,
    sample_rayleigh_cos,
)
from mcdose.physics.rng import (
    next_child,
    rng_history,
    rng_init,
    rng_next_u32,
    rng_seek,
    rng_set_spawn_key,
    rng_spawn,
    rng_spawn_key,
    rng_stream,
    rng_uniform,
    rng_uniform64,
    rng_words_drawn,
)

_SIM_LOCK = threading.Lock()

# electron mover status codes
_MOVED = 0  # the whole leg was travelled
_NEW_MATERIAL = 1  # stopped on entering a voxel of another material
_ESCAPED = 2  # left the grid
_STOPPED = 3  # the residual range ran out


def tally_add(tally, index, value):
    """``tally[index] += value`` — plain on the CPU, atomic on CUDA.

    This Python body runs only under the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``), where
    threads are Python threads; the lock makes it atomic there.  Compiled targets use the
    overloads below.
    """
    with _SIM_LOCK:
        tally[index] += value


@overload(tally_add, target="cpu")
def _tally_add_cpu(tally, index, value):
    def impl(tally, index, value):
        tally[index] += value

    return impl


def counter_add(counters, index, value):
    """``counters[index] += value`` for the run's energy counters (emitted, escaped, ...).

    On the CPU ``counters`` is the thread's own row (plain add).  On CUDA it is the whole
    (blocks, ``N_COUNTERS``) array and the add goes, atomically, to the row of the thread's
    block (overload in :mod:`mcdose.transport.cuda`): no per-thread row pointer is held
    through the transport loops (it cost the electron kernel 5 of its registers).  This
    Python body runs only under the CUDA simulator: row 0, under the lock.
    """
    with _SIM_LOCK:
        counters[0, index] += value


@overload(counter_add, target="cpu")
def _counter_add_cpu(counters, index, value):
    def impl(counters, index, value):
        counters[index] += value

    return impl


def bank_slot(count, capacity):
    """Claim the next free slot of a bank: its index, or −1 when the bank is full.

    On the CPU a bank belongs to one thread (plain increment, never past ``capacity``); on
    CUDA the counter is shared (atomic add; it may run past ``capacity``, readers clamp).
    This Python body runs under the CUDA simulator only.
    """
    with _SIM_LOCK:
        slot = count[0]
        count[0] = slot + 1
    return slot if slot < capacity else -1


@overload(bank_slot, target="cpu")
def _bank_slot_cpu(count, capacity):
    def impl(count, capacity):
        slot = count[0]
        if slot >= capacity:
            return -1
        count[0] = slot + 1
        return slot

    return impl


@register_jitable
def to_fixed(energy, scale):
    """Energy (keV) in fixed-point tally units (rounded to nearest; float64 arithmetic)."""
    return np.uint64(np.float64(energy) * np.float64(scale) + 0.5)


@register_jitable
def voxel_index(ix, iy, iz, nx, ny):
    """Flat C-order index of voxel (ix, iy, iz) in a (z, y, x) array."""
    return (iz * ny + iy) * nx + ix


@register_jitable
def bank_store(
    bank_f, bank_i, count, kind, energy, x, y, z, u, v, w, brems_paths,
    history, stream, spawn, rng_words, voxel,
):  # fmt: skip
    """Put a particle with its whole transport state into a bank; False if the bank is full."""
    slot = bank_slot(count, bank_f.shape[1])
    if slot < 0:
        return False
    bank_f[L.S_TYPE, slot] = kind
    bank_f[L.S_E, slot] = energy
    bank_f[L.S_X, slot] = x
    bank_f[L.S_Y, slot] = y
    bank_f[L.S_Z, slot] = z
    bank_f[L.S_U, slot] = u
    bank_f[L.S_V, slot] = v
    bank_f[L.S_W, slot] = w
    bank_f[L.S_BREMS, slot] = brems_paths
    bank_i[L.B_HISTORY, slot] = history
    bank_i[L.B_STREAM, slot] = stream
    bank_i[L.B_SPAWN, slot] = spawn
    bank_i[L.B_RNG_WORDS, slot] = rng_words
    bank_i[L.B_VOXEL, slot] = voxel
    return True


@register_jitable
def push_particle(bank_f, bank_i, count, kind, energy, x, y, z, u, v, w, history, stream):
    """Put a newborn particle (own stream, nothing drawn yet) into a bank; False if full."""
    return bank_store(
        bank_f, bank_i, count, kind, energy, x, y, z, u, v, w, -F1, history, stream, stream,
        0, -1,
    )  # fmt: skip


@register_jitable
def push_or_deposit(
    bank_f, bank_i, count, kind, energy, x, y, z, u, v, w, history, stream, tally, vox, scale,
):  # fmt: skip
    """Bank a particle; if the bank is full, deposit its energy in voxel ``vox`` instead.

    Returns
    -------
    float
        Energy deposited for lack of bank space, keV (0 when banked).
    """
    if push_particle(bank_f, bank_i, count, kind, energy, x, y, z, u, v, w, history, stream):
        return F0 * energy
    tally_add(tally, vox, to_fixed(energy, scale))
    return energy


@register_jitable
def distance_to_nearest_face(x, y, z, ix, iy, iz, params):
    """Distance (cm) from (x, y, z) to the nearest face of its voxel (ix, iy, iz)."""
    dx = params[L.P_DX]
    dy = params[L.P_DY]
    dz = params[L.P_DZ]
    x_lo = x - np.float32(ix) * dx
    y_lo = y - np.float32(iy) * dy
    z_lo = z - np.float32(iz) * dz
    return min(x_lo, dx - x_lo, y_lo, dy - y_lo, z_lo, dz - z_lo)


@register_jitable
def absorbed_on_the_spot(energy, x, y, z, ix, iy, iz, voxels, mat_tab, params):
    """True if an electron at (x, y, z) in voxel (ix, iy, iz) ends there at its first step.

    The same decisions, on the same numbers, as the first step of
    :func:`transport_electron`: below the cutoff, or (with range rejection) a CSDA range
    shorter than the distance to the voxel's nearest face.  Deciding this when the electron
    is banked (:func:`filter_banked_electron`) keeps such electrons — most β electrons in
    1 mm voxels — out of the electron pass, so they do not idle in the warps of electrons
    that travel.
    """
    if energy <= params[L.P_E_CUT]:
        return True
    if params[L.P_RANGE_REJECTION] <= F0:
        return False
    vox = voxel_index(ix, iy, iz, int(params[L.P_NX]), int(params[L.P_NY]))
    m = np.int32(voxels[vox, L.V_MATERIAL])
    rho = voxels[vox, L.V_DENSITY]
    i, f = energy_cell(params, energy)
    r = lerp_mat(mat_tab, m, L.E_RANGE, i, f)
    return r < rho * distance_to_nearest_face(x, y, z, ix, iy, iz, params)


@register_jitable
def filter_banked_electron(
    slot, bank_f, bank_i, voxels, mat_tab, params, tally, out_f, out_i, out_n,
):  # fmt: skip
    """Deposit the electron in ``bank_*[:, slot]`` if it ends at its next step, else keep it.

    A kept electron is copied, whole state and all, to ``out_*`` (a compacted bank for the
    electron pass).  The decision is exactly :func:`transport_electron`'s at the top of its
    next step, so the tally is the same as if the electron had been transported; the
    electrons that range rejection stops at once — most β electrons in 1 mm voxels — then
    never idle in the warps of electrons that travel.

    Returns
    -------
    bool
        True if the electron was deposited here.
    """
    energy = bank_f[L.S_E, slot]
    x = bank_f[L.S_X, slot]
    y = bank_f[L.S_Y, slot]
    z = bank_f[L.S_Z, slot]
    voxel = bank_i[L.B_VOXEL, slot]
    nx = int(params[L.P_NX])
    ny = int(params[L.P_NY])
    if voxel >= 0:
        ix = np.int32(voxel % nx)
        iy = np.int32((voxel // nx) % ny)
        iz = np.int32(voxel // (nx * ny))
        inside = True
    else:
        inside, ix, iy, iz = locate(x, y, z, params)
    if inside and absorbed_on_the_spot(energy, x, y, z, ix, iy, iz, voxels, mat_tab, params):
        q = to_fixed(energy, params[L.P_TALLY_SCALE])
        tally_add(tally, voxel_index(ix, iy, iz, nx, ny), q)
        return True
    # (out_* is as large as bank_* and receives at most its particles: never full)
    bank_store(
        out_f, out_i, out_n, L.ELECTRON, energy, x, y, z, bank_f[L.S_U, slot],
        bank_f[L.S_V, slot], bank_f[L.S_W, slot], bank_f[L.S_BREMS, slot],
        bank_i[L.B_HISTORY, slot], bank_i[L.B_STREAM, slot], bank_i[L.B_SPAWN, slot],
        bank_i[L.B_RNG_WORDS, slot], voxel,
    )  # fmt: skip
    return False


@register_jitable
def locate(x, y, z, params):
    """Voxel indices of position (x, y, z) cm; ``inside`` is False outside the grid."""
    fx = x * params[L.P_INV_DX]
    fy = y * params[L.P_INV_DY]
    fz = z * params[L.P_INV_DZ]
    inside = (
        fx >= F0
        and fy >= F0
        and fz >= F0
        and fx < params[L.P_NX]
        and fy < params[L.P_NY]
        and fz < params[L.P_NZ]
    )
    if not inside:
        return False, np.int32(0), np.int32(0), np.int32(0)
    return True, np.int32(fx), np.int32(fy), np.int32(fz)


@register_jitable
def distance_to_boundary(pos, idx, cell, direction):
    """Distance (cm) along ``direction`` to the face of voxel ``idx`` (size ``cell``)."""
    if direction > F0:
        d = (np.float32(idx + 1) * cell - pos) / direction
    elif direction < F0:
        d = (np.float32(idx) * cell - pos) / direction
    else:
        return F_FAR + F0 * pos
    return d if d > F0 else F0 * d


@register_jitable
def move_electron(
    t_leg, energy, r_left, m, x, y, z, u, v, w, ix, iy, iz,
    voxels, inv_range, range_grid, params, tally,
):  # fmt: skip
    """Move an electron along (u, v, w) by mass thickness ``t_leg`` (g/cm²).

    The electron carries its residual CSDA range ``r_left`` (g/cm², material ``m``); a
    segment of mass thickness dt ends at energy E(r_left − dt), and the energy lost is
    deposited in the voxel the segment lies in (each voxel's own density converts path length
    to mass thickness).  The leg stops early on entering a voxel of another material, on
    leaving the grid, or when the range runs out.

    Returns
    -------
    tuple
        (status, energy, residual range, x, y, z, ix, iy, iz, segments); ``segments`` counts
        the voxels the leg deposited in (the work measure of :mod:`benchmarks.divergence`).
    """
    # Grid sizes and the tally scale are read from ``params`` where they are used, not held:
    # on a GPU every value held through the loop costs a register (goal: 64 per thread).
    t_left = t_leg
    segments = 0
    while True:
        segments += 1
        vox = voxel_index(ix, iy, iz, int(params[L.P_NX]), int(params[L.P_NY]))
        rho = voxels[vox, L.V_DENSITY]
        sx = distance_to_boundary(x, ix, params[L.P_DX], u)
        sy = distance_to_boundary(y, iy, params[L.P_DY], v)
        sz = distance_to_boundary(z, iz, params[L.P_DZ], w)
        axis = 0
        s_b = sx
        if sy < s_b:
            s_b = sy
            axis = 1
        if sz < s_b:
            s_b = sz
            axis = 2
        t_b = rho * s_b
        inside = t_left <= t_b
        dt = t_left if inside else t_b
        r_left -= dt
        e_new = energy_at_range(inv_range, range_grid, params, m, r_left)
        if e_new > energy:  # interpolation round-off; never gain energy
            e_new = energy
        tally_add(tally, vox, to_fixed(energy - e_new, params[L.P_TALLY_SCALE]))
        energy = e_new
        if inside:
            s = t_left / rho
            x += s * u
            y += s * v
            z += s * w
            if energy <= F0:
                return _STOPPED, F0 * energy, F0 * r_left, x, y, z, ix, iy, iz, segments
            return _MOVED, energy, r_left, x, y, z, ix, iy, iz, segments
        # cross into the next voxel
        t_left -= t_b
        x += s_b * u
        y += s_b * v
        z += s_b * w
        # (indices stay int32: numba widens int32 arithmetic to int64, 2 registers each)
        if axis == 0:
            if u > F0:
                ix = np.int32(ix + 1)
                x = np.float32(ix) * params[L.P_DX]
            else:
                x = np.float32(ix) * params[L.P_DX]
                ix = np.int32(ix - 1)
        elif axis == 1:
            if v > F0:
                iy = np.int32(iy + 1)
                y = np.float32(iy) * params[L.P_DY]
            else:
                y = np.float32(iy) * params[L.P_DY]
                iy = np.int32(iy - 1)
        else:
            if w > F0:
                iz = np.int32(iz + 1)
                z = np.float32(iz) * params[L.P_DZ]
            else:
                z = np.float32(iz) * params[L.P_DZ]
                iz = np.int32(iz - 1)
        if energy <= F0:
            return _STOPPED, F0 * energy, F0 * r_left, x, y, z, ix, iy, iz, segments
        nx = int(params[L.P_NX])
        ny = int(params[L.P_NY])
        if ix < 0 or iy < 0 or iz < 0 or ix >= nx or iy >= ny or iz >= int(params[L.P_NZ]):
            return _ESCAPED, energy, r_left, x, y, z, ix, iy, iz, segments
        if int(voxels[voxel_index(ix, iy, iz, nx, ny), L.V_MATERIAL]) != m:
            return _NEW_MATERIAL, energy, r_left, x, y, z, ix, iy, iz, segments


@register_jitable
def transport_electron(
    energy, x, y, z, u, v, w, brems_start, voxel_start,
    voxels, mat_tab, inv_range, range_grid, ms_table, params,
    tally, counters, out_f, out_i, out_n, rest_f, rest_i, rest_n, rng, max_steps,
):  # fmt: skip
    """Follow one electron to its end; bremsstrahlung photons go into the bank ``out_*``.

    ``rng`` must be positioned in the electron's own stream, with its spawn key (which names
    its next bremsstrahlung photon: :func:`mcdose.physics.rng.rng_spawn`).  The history,
    stream and spawn key that banked particles carry are read from ``rng`` when they are
    banked (:func:`mcdose.physics.rng.rng_history`), not held through the steps.  ``brems_start``
    (< 0: sample afresh) and ``voxel_start`` (< 0: locate) carry a resumed electron's state.
    After ``max_steps`` steps the electron is suspended: stored with its whole state
    (position, voxel, random-stream position, ...) in the bank ``rest_*``, to be resumed by
    a later pass exactly where it stopped.  The energy given to bremsstrahlung, and any
    deposited because a bank was full, are added to ``counters`` here (so no accumulator
    stays live through the steps).

    Returns
    -------
    tuple
        (escaped energy keV, final x, y, z cm, work): ``work`` counts steps plus voxel
        segments.
    """
    work = 0
    steps_left = max_steps
    if voxel_start >= 0:
        nx = int(params[L.P_NX])
        ny = int(params[L.P_NY])
        ix = np.int32(voxel_start % nx)
        iy = np.int32((voxel_start // nx) % ny)
        iz = np.int32(voxel_start // (nx * ny))
    else:
        inside, ix, iy, iz = locate(x, y, z, params)
        if not inside:
            return energy, x, y, z, work
    # bremsstrahlung: mean free paths left to the next emission, spent step by step
    if brems_start >= F0:
        brems_paths = brems_start
    else:
        brems_paths = -math.log(rng_uniform(rng))
    while True:
        vox = voxel_index(ix, iy, iz, int(params[L.P_NX]), int(params[L.P_NY]))
        if steps_left <= 0:  # suspend: the next pass resumes it here
            if not bank_store(
                rest_f, rest_i, rest_n, L.ELECTRON, energy, x, y, z, u, v, w, brems_paths,
                rng_history(rng), rng_stream(rng), rng_spawn_key(rng), rng_words_drawn(rng),
                vox,
            ):  # fmt: skip
                q = to_fixed(energy, params[L.P_TALLY_SCALE])
                tally_add(tally, vox, q)
                counter_add(counters, L.C_STACK_OVERFLOW, q)
            return F0 * energy, x, y, z, work
        steps_left -= 1
        work += 1
        if energy <= params[L.P_E_CUT]:
            tally_add(tally, vox, to_fixed(energy, params[L.P_TALLY_SCALE]))
            return F0, x, y, z, work
        m = np.int32(voxels[vox, L.V_MATERIAL])
        rho = voxels[vox, L.V_DENSITY]
        i, f = energy_cell(params, energy)
        t, r, sigma_b, q_start = step_limits(mat_tab, params, m, i, f)
        # mass thickness the electron surely stays in this voxel for
        t_inside = rho * distance_to_nearest_face(x, y, z, ix, iy, iz, params)
        if params[L.P_RANGE_REJECTION] > F0 and r < t_inside:
            tally_add(tally, vox, to_fixed(energy, params[L.P_TALLY_SCALE]))
            return F0, x, y, z, work
        if params[L.P_BOUNDARY_STEPS] > F0 and t_inside > t:
            t = t_inside
        if t > r:
            t = r
        emit = False
        if sigma_b > F0 and brems_paths < sigma_b * t:
            t = brems_paths / sigma_b
            emit = True
        # brems_paths after the step = paths_at_zero_range + Σ_b · (residual range)
        paths_at_zero_range = brems_paths - sigma_b * r
        # scattering strength of the step: transport mean free paths between E and E'
        e_end, q_end = state_at_range(inv_range, range_grid, params, m, r - t)
        kappa = q_start - q_end
        if kappa < F0:
            kappa = F0 * kappa
        tau = rng_uniform(rng)
        second_leg = (F1 - tau) * t
        status, energy, r, x, y, z, ix, iy, iz, seg = move_electron(
            tau * t, energy, r, m, x, y, z, u, v, w, ix, iy, iz,
            voxels, inv_range, range_grid, params, tally,
        )  # fmt: skip
        work += seg
        if status == _ESCAPED:
            return energy, x, y, z, work
        if status == _STOPPED:
            return F0, x, y, z, work
        if status == _NEW_MATERIAL:
            brems_paths = paths_at_zero_range + sigma_b * r
            continue
        # hinge: deflect by the multiple-scattering angle of the whole step
        cos_t = sample_ms_cos_theta(ms_table, params, kappa, rng_uniform(rng))
        u, v, w = rotate_direction(u, v, w, cos_t, F_TWO_PI * rng_uniform(rng))
        status, energy, r, x, y, z, ix, iy, iz, seg = move_electron(
            second_leg, energy, r, m, x, y, z, u, v, w, ix, iy, iz,
            voxels, inv_range, range_grid, params, tally,
        )  # fmt: skip
        work += seg
        if status == _ESCAPED:
            return energy, x, y, z, work
        if status == _STOPPED:
            return F0, x, y, z, work
        brems_paths = paths_at_zero_range + sigma_b * r
        if emit and status == _MOVED:
            brems_paths = -math.log(rng_uniform(rng))
            k_cut = params[L.P_BREMS_K_CUT]
            if energy > k_cut:
                k = k_cut * math.exp(rng_uniform(rng) * math.log(energy / k_cut))
                if k > energy:
                    k = energy
                energy -= k
                scale = params[L.P_TALLY_SCALE]
                counter_add(counters, L.C_BREMS, to_fixed(k, scale))
                child = rng_spawn(rng)
                vox = voxel_index(ix, iy, iz, int(params[L.P_NX]), int(params[L.P_NY]))
                lost = push_or_deposit(
                    out_f, out_i, out_n, L.PHOTON, k, x, y, z, u, v, w, rng_history(rng),
                    child, tally, vox, scale,
                )  # fmt: skip
                if lost > F0:
                    counter_add(counters, L.C_STACK_OVERFLOW, to_fixed(lost, scale))


# photon_flight outcomes
ESCAPE = 0
PHOTOELECTRIC = 1
COMPTON = 2
RAYLEIGH = 3
SUSPEND = 4
#: Default flight limit of :func:`photon_flight`: none.
NO_FLIGHT_LIMIT = L.NO_WORK_LIMIT


#: How far past the body box's face a photon is put when its flight reaches the box, cm
#: (1 µm of air: the interactions skipped there are < 10⁻⁷ of the photon's).
BOX_STEP_IN_CM = np.float32(1e-4)


@register_jitable
def in_body_box(x, y, z, params):
    """Whether (x, y, z) cm lies in the body box (``P_BOX_*``, faces included)."""
    return (
        x >= params[L.P_BOX_X0]
        and x <= params[L.P_BOX_X1]
        and y >= params[L.P_BOX_Y0]
        and y <= params[L.P_BOX_Y1]
        and z >= params[L.P_BOX_Z0]
        and z <= params[L.P_BOX_Z1]
    )


@register_jitable
def _slab(t_near, t_far, p, d, lo, hi):
    """Clip the ray parameter interval [t_near, t_far] by the slab lo ≤ p + t·d ≤ hi."""
    if d == F0:
        if p < lo or p > hi:
            return F_FAR, F0  # parallel and outside: empty
        return t_near, t_far
    inv = F1 / d
    t1 = (lo - p) * inv
    t2 = (hi - p) * inv
    if t1 > t2:
        t1, t2 = t2, t1
    return max(t_near, t1), min(t_far, t2)


@register_jitable
def distance_to_body_box(x, y, z, u, v, w, params):
    """Path length (cm) along (u, v, w) to the body box, or ``F_FAR`` if the ray misses it."""
    t0, t1 = _slab(F0, F_FAR, x, u, params[L.P_BOX_X0], params[L.P_BOX_X1])
    t0, t1 = _slab(t0, t1, y, v, params[L.P_BOX_Y0], params[L.P_BOX_Y1])
    t0, t1 = _slab(t0, t1, z, w, params[L.P_BOX_Z0], params[L.P_BOX_Z1])
    return t0 if t0 <= t1 else F_FAR


@register_jitable
def photon_flight(energy, x, y, z, u, v, w, voxels, mat_tab, majorant, params, rng,
                  max_flights=NO_FLIGHT_LIMIT):  # fmt: skip
    """Woodcock-track a photon to its next real interaction (or out of the grid).

    Flights are sampled against the majorant μ̂(E); at each tentative site a real
    interaction is accepted with probability μ(r, E)/μ̂(E) and its type chosen from the
    partial attenuation coefficients with the same uniform number.

    Outside the *body box* (the box holding every voxel denser than air, ``P_BOX_*``) the
    majorant is ``P_OUTSIDE_SCALE``·μ̂(E), which bounds μ there (set by
    :mod:`mcdose.transport.setup`): a photon in the air around the patient flies metres per
    flight instead of centimetres.  A flight from outside that reaches the box stops at its
    face (no interaction: tracking with a majorant is memoryless, so restarting the flight
    there with the box's majorant is exact) and goes on from just inside.  A flight from
    inside uses μ̂(E) all the way, which bounds μ everywhere.

    After ``max_flights`` flights without a real interaction the flight stops with outcome
    SUSPEND at the last (virtual) site.

    Returns
    -------
    tuple
        (outcome, x, y, z, voxel, material, energy cell i, fraction f, flights); outcome is
        ESCAPE, PHOTOELECTRIC, COMPTON, RAYLEIGH or SUSPEND.
    """
    nx = int(params[L.P_NX])
    ny = int(params[L.P_NY])
    i, f = energy_cell(params, energy)
    inv_mu_major = F1 / majorant[i]
    use_box = params[L.P_OUTSIDE_SCALE] < F1
    flights = 0
    while True:
        if flights >= max_flights:
            return SUSPEND, x, y, z, -1, -1, i, f, flights
        flights += 1
        outside = use_box and not in_body_box(x, y, z, params)
        if outside:
            s = -math.log(rng_uniform(rng)) * (inv_mu_major * params[L.P_INV_OUTSIDE_SCALE])
            t = distance_to_body_box(x, y, z, u, v, w, params)
            if s > t:  # reaches the box first: on from just inside its face
                t += BOX_STEP_IN_CM
                x += t * u
                y += t * v
                z += t * w
                continue
        else:
            s = -math.log(rng_uniform(rng)) * inv_mu_major
        x += s * u
        y += s * v
        z += s * w
        inside, ix, iy, iz = locate(x, y, z, params)
        if not inside:
            return ESCAPE, x, y, z, -1, -1, i, f, flights
        vox = voxel_index(ix, iy, iz, nx, ny)
        rho = voxels[vox, L.V_DENSITY]
        m = int(voxels[vox, L.V_MATERIAL])
        r = rng_uniform(rng) * majorant[i] / rho  # compare in cm²/g: one multiply fewer
        if outside:
            r *= params[L.P_OUTSIDE_SCALE]
        mu = lerp_mat(mat_tab, m, L.MU_PHOTO, i, f)
        if r < mu:
            return PHOTOELECTRIC, x, y, z, vox, m, i, f, flights
        mu += lerp_mat(mat_tab, m, L.MU_INCOH, i, f)
        if r < mu:
            return COMPTON, x, y, z, vox, m, i, f, flights
        if r < mu + lerp_mat(mat_tab, m, L.MU_COH, i, f):
            return RAYLEIGH, x, y, z, vox, m, i, f, flights
        # virtual interaction: fly on


@register_jitable
def transport_photon(
    energy, x, y, z, u, v, w,
    voxels, mat_tab, kn_table, ray_table, majorant, params,
    tally, counters, out_f, out_i, out_n, rest_f, rest_i, rest_n, rng, max_flights,
):  # fmt: skip
    """Follow one photon until absorption or escape; its electrons go into the bank ``out_*``.

    ``rng`` must be positioned in the photon's own stream, with its spawn key (which names
    its next electron: :func:`mcdose.physics.rng.rng_spawn`); history, stream and key are
    read from ``rng`` where a particle is banked, as in :func:`transport_electron`.  After
    ``max_flights`` flights the photon is suspended into the bank ``rest_*`` with its state,
    to be resumed by a later pass exactly where it stopped.

    The escaped energy, and any deposited because a bank was full, are added to ``counters``
    where they occur (no accumulator held through the flights).

    Returns
    -------
    int
        The photon's work: flights, real and virtual.
    """
    work = 0
    while True:
        outcome, x, y, z, vox, m, i, f, flights = photon_flight(
            energy, x, y, z, u, v, w, voxels, mat_tab, majorant, params, rng, max_flights - work
        )
        work += flights
        if outcome == ESCAPE:
            counter_add(counters, L.C_ESCAPED, to_fixed(energy, params[L.P_TALLY_SCALE]))
            return work
        if outcome == SUSPEND:
            if not bank_store(
                rest_f, rest_i, rest_n, L.PHOTON, energy, x, y, z, u, v, w, -F1,
                rng_history(rng), rng_stream(rng), rng_spawn_key(rng), rng_words_drawn(rng), -1,
            ):  # fmt: skip
                # (a suspended photon is inside the grid: photon_flight located it)
                _, jx, jy, jz = locate(x, y, z, params)
                jv = voxel_index(jx, jy, jz, int(params[L.P_NX]), int(params[L.P_NY]))
                q = to_fixed(energy, params[L.P_TALLY_SCALE])
                tally_add(tally, jv, q)
                counter_add(counters, L.C_STACK_OVERFLOW, q)
            return work
        if outcome == PHOTOELECTRIC:
            ue, ve, we = isotropic_direction(rng_uniform(rng), rng_uniform(rng))
            child = rng_spawn(rng)
            lost = push_or_deposit(
                out_f, out_i, out_n, L.ELECTRON, energy, x, y, z, ue, ve, we,
                rng_history(rng), child, tally, vox, params[L.P_TALLY_SCALE],
            )  # fmt: skip
            if lost > F0:
                counter_add(counters, L.C_STACK_OVERFLOW, to_fixed(lost, params[L.P_TALLY_SCALE]))
            return work
        if outcome == COMPTON:
            eps = sample_compton_epsilon(kn_table, params, energy, rng_uniform(rng))
            cos_t = compton_cos_theta(energy, eps)
            un, vn, wn = rotate_direction(u, v, w, cos_t, F_TWO_PI * rng_uniform(rng))
            t_e = energy * (F1 - eps)
            if t_e > F0:
                ue, ve, we = compton_electron_direction(energy, eps, u, v, w, un, vn, wn)
                child = rng_spawn(rng)
                lost = push_or_deposit(
                    out_f, out_i, out_n, L.ELECTRON, t_e, x, y, z, ue, ve, we,
                    rng_history(rng), child, tally, vox, params[L.P_TALLY_SCALE],
                )  # fmt: skip
                if lost > F0:
                    scale = params[L.P_TALLY_SCALE]
                    counter_add(counters, L.C_STACK_OVERFLOW, to_fixed(lost, scale))
            energy = energy * eps
            u, v, w = un, vn, wn
        else:
            cos_t = sample_rayleigh_cos(ray_table, params, m, energy, rng_uniform(rng))
            u, v, w = rotate_direction(u, v, w, cos_t, F_TWO_PI * rng_uniform(rng))
        if energy <= params[L.P_P_CUT]:
            tally_add(tally, vox, to_fixed(energy, params[L.P_TALLY_SCALE]))
            return work


@register_jitable
def sample_line(lines, n_lines, xi1, xi2):
    """Energy (keV) of a line chosen by its alias table (rows L_ENERGY, L_PROB, L_ALIAS)."""
    j = int(xi1 * np.float32(n_lines))
    if j >= n_lines:
        j = n_lines - 1
    if xi2 >= lines[L.L_PROB, j]:
        j = int(lines[L.L_ALIAS, j])
    return lines[L.L_ENERGY, j]


@register_jitable
def count_emissions(yield_per_decay, xi):
    """floor(Y) + Bernoulli(frac(Y)): a count whose mean is ``yield_per_decay``."""
    n = int(yield_per_decay)
    if xi < yield_per_decay - np.float32(n):
        n += 1
    return n


#: Random words :func:`sample_source_voxel` draws (the first of a history's stream 0).
SOURCE_VOXEL_WORDS = 2


@register_jitable
def source_draws(rng, n_src):
    """The two draws that choose a decay's voxel: (alias-table slot j, uniform ξ).

    Parameters
    ----------
    rng : uint64[STATE_SIZE]
        Random state, freshly initialised at the history's stream 0; advanced by
        :data:`SOURCE_VOXEL_WORDS` words.
    n_src : int
        Number of active voxels (entries of the alias table).
    """
    j = int(rng_uniform64(rng) * n_src)  # 32-bit uniform: n_src may exceed 2²⁴
    if j >= n_src:
        j = n_src - 1
    return j, rng_uniform(rng)


@register_jitable
def source_voxel(j, xi, src_index, src_prob, src_alias):
    """Flat voxel index for alias-table slot ``j`` and uniform ``xi`` (see :func:`source_draws`)."""
    if xi >= src_prob[j]:
        j = src_alias[j]
    return src_index[j]


@register_jitable
def sample_source_voxel(rng, src_index, src_prob, src_alias):
    """Decay voxel (flat index) by the alias table; draws :data:`SOURCE_VOXEL_WORDS` words.

    Parameters
    ----------
    rng : uint64[STATE_SIZE]
        Random state, freshly initialised at the history's stream 0.
    src_index, src_prob, src_alias : ndarray
        Alias table over the active voxels (flat indices, acceptance probabilities, aliases).
    """
    j, xi = source_draws(rng, src_index.shape[0])
    return source_voxel(j, xi, src_index, src_prob, src_alias)


@register_jitable
def sample_decay(
    history, seed, vox,
    voxels, src_index, src_prob, src_alias, beta_icdf, elines, plines, params,
    tally, counters, ph_f, ph_i, ph_n, el_f, el_i, el_n, rng,
):  # fmt: skip
    """Sample decay number ``history``: its position and emissions, banked for transport.

    Draws from stream 0 of the history; the particles it emits are named by
    :func:`mcdose.physics.rng.next_child` from spawn key 0.  Photons go to bank ``ph_*``,
    electrons to ``el_*`` (the CPU engine passes its one stack as both).  Energy deposited
    at the decay site and the emitted energy are added to ``tally`` and ``counters``.

    ``vox`` is the decay's voxel when the caller has already drawn it with
    :func:`sample_source_voxel` from the same stream (the CPU engine does, a chunk of decays
    at a time, to overlap the look-ups' cache misses); −1 samples it here.  Either way the
    same words are used, so the decay is the same.
    """
    rng_init(rng, seed, history, 0)
    nx = int(params[L.P_NX])
    ny = int(params[L.P_NY])
    scale = params[L.P_TALLY_SCALE]
    # --- decay position: voxel by alias table, uniform inside the voxel
    if vox < 0:
        vox = sample_source_voxel(rng, src_index, src_prob, src_alias)
    else:
        for _ in range(SOURCE_VOXEL_WORDS):
            rng_next_u32(rng)
    ix = vox % nx
    iy = (vox // nx) % ny
    iz = vox // (nx * ny)
    x = (np.float32(ix) + rng_uniform(rng)) * params[L.P_DX]
    y = (np.float32(iy) + rng_uniform(rng)) * params[L.P_DY]
    z = (np.float32(iz) + rng_uniform(rng)) * params[L.P_DZ]
    emitted = np.uint64(0)
    overflow = F0
    local = params[L.P_LOCAL_ENERGY]
    if local > F0:
        q = to_fixed(local, scale)
        tally_add(tally, vox, q)
        emitted += q
    spawn = np.uint64(0)  # names the emitted particles' streams (next_child)
    n_beta = count_emissions(params[L.P_BETA_YIELD], rng_uniform(rng))
    n_table = int(params[L.P_N_BETA_TABLE])
    emit_betas = params[L.P_EMIT_BETA_PARTICLES] > F0
    positron_fraction = params[L.P_POSITRON_FRACTION]
    for _ in range(n_beta):
        pos = rng_uniform(rng) * np.float32(n_table - 1)
        b = int(pos)
        if b >= n_table - 1:
            b = n_table - 2
        g = pos - np.float32(b)
        e = beta_icdf[b] * (F1 - g) + beta_icdf[b + 1] * g
        u, v, w = isotropic_direction(rng_uniform(rng), rng_uniform(rng))
        if emit_betas:
            emitted += to_fixed(e, scale)
            child, spawn = next_child(spawn)
            overflow += push_or_deposit(
                el_f, el_i, el_n, L.ELECTRON, e, x, y, z, u, v, w,
                history, child, tally, vox, scale,
            )  # fmt: skip
        if positron_fraction > F0 and rng_uniform(rng) < positron_fraction:
            # annihilation at rest: two back-to-back photons from the decay site
            ua, va, wa = isotropic_direction(rng_uniform(rng), rng_uniform(rng))
            e_ann = np.float32(L.ANNIHILATION_KEV)
            for sign in (F1, -F1):
                emitted += to_fixed(e_ann, scale)
                child, spawn = next_child(spawn)
                overflow += push_or_deposit(
                    ph_f, ph_i, ph_n, L.PHOTON, e_ann, x, y, z, sign * ua, sign * va, sign * wa,
                    history, child, tally, vox, scale,
                )  # fmt: skip
    n_el = count_emissions(params[L.P_ELINE_YIELD], rng_uniform(rng))
    n_elines = int(params[L.P_N_ELINES])
    for _ in range(n_el):
        e = sample_line(elines, n_elines, rng_uniform(rng), rng_uniform(rng))
        u, v, w = isotropic_direction(rng_uniform(rng), rng_uniform(rng))
        emitted += to_fixed(e, scale)
        child, spawn = next_child(spawn)
        overflow += push_or_deposit(
            el_f, el_i, el_n, L.ELECTRON, e, x, y, z, u, v, w,
            history, child, tally, vox, scale,
        )  # fmt: skip
    n_ph = count_emissions(params[L.P_PLINE_YIELD], rng_uniform(rng))
    n_plines = int(params[L.P_N_PLINES])
    for _ in range(n_ph):
        e = sample_line(plines, n_plines, rng_uniform(rng), rng_uniform(rng))
        u, v, w = isotropic_direction(rng_uniform(rng), rng_uniform(rng))
        emitted += to_fixed(e, scale)
        child, spawn = next_child(spawn)
        overflow += push_or_deposit(
            ph_f, ph_i, ph_n, L.PHOTON, e, x, y, z, u, v, w,
            history, child, tally, vox, scale,
        )  # fmt: skip
    counter_add(counters, L.C_EMITTED, emitted)
    if overflow > F0:
        counter_add(counters, L.C_STACK_OVERFLOW, to_fixed(overflow, scale))


@register_jitable
def transport_banked_photon(
    slot, seed, bank_f, bank_i,
    voxels, mat_tab, kn_table, ray_table, majorant, params,
    tally, counters, out_f, out_i, out_n, rest_f, rest_i, rest_n, rng, max_flights,
):  # fmt: skip
    """Transport the photon in ``bank_*[:, slot]``; its electrons go to ``out_*``.

    Positions the random stream at the particle's own (seed, history, stream) and as many
    words on as it has drawn before (a resumed photon), so the result does not depend on
    when, in how many passes or by which thread the particle is run.  Suspended after
    ``max_flights`` flights into ``rest_*``.

    Returns
    -------
    int
        The photon's work in this pass (flights, real and virtual).
    """
    rng_init(rng, seed, bank_i[L.B_HISTORY, slot], bank_i[L.B_STREAM, slot])
    rng_seek(rng, bank_i[L.B_RNG_WORDS, slot])
    rng_set_spawn_key(rng, bank_i[L.B_SPAWN, slot])
    return transport_photon(
        bank_f[L.S_E, slot], bank_f[L.S_X, slot], bank_f[L.S_Y, slot], bank_f[L.S_Z, slot],
        bank_f[L.S_U, slot], bank_f[L.S_V, slot], bank_f[L.S_W, slot],
        voxels, mat_tab, kn_table, ray_table, majorant, params,
        tally, counters, out_f, out_i, out_n, rest_f, rest_i, rest_n, rng, max_flights,
    )  # fmt: skip


@register_jitable
def transport_banked_electron(
    slot, seed, bank_f, bank_i,
    voxels, mat_tab, inv_range, range_grid, ms_table, params,
    tally, counters, out_f, out_i, out_n, rest_f, rest_i, rest_n, rng, max_steps,
):  # fmt: skip
    """Transport the electron in ``bank_*[:, slot]``; its bremsstrahlung goes to ``out_*``.

    As :func:`transport_banked_photon`; suspended after ``max_steps`` steps into ``rest_*``.

    Returns
    -------
    int
        The electron's work in this pass (steps plus voxel segments).
    """
    rng_init(rng, seed, bank_i[L.B_HISTORY, slot], bank_i[L.B_STREAM, slot])
    rng_seek(rng, bank_i[L.B_RNG_WORDS, slot])
    rng_set_spawn_key(rng, bank_i[L.B_SPAWN, slot])
    esc, _, _, _, work = transport_electron(
        bank_f[L.S_E, slot], bank_f[L.S_X, slot], bank_f[L.S_Y, slot], bank_f[L.S_Z, slot],
        bank_f[L.S_U, slot], bank_f[L.S_V, slot], bank_f[L.S_W, slot],
        bank_f[L.S_BREMS, slot], bank_i[L.B_VOXEL, slot],
        voxels, mat_tab, inv_range, range_grid, ms_table, params,
        tally, counters, out_f, out_i, out_n, rest_f, rest_i, rest_n, rng, max_steps,
    )  # fmt: skip
    if esc > F0:
        counter_add(counters, L.C_ESCAPED, to_fixed(esc, params[L.P_TALLY_SCALE]))
    return work


@register_jitable
def run_history(
    history, seed, vox,
    voxels, src_index, src_prob, src_alias,
    beta_icdf, elines, plines,
    mat_tab, inv_range, range_grid, kn_table, ray_table, ms_table, majorant, params,
    tally, counters, rng, stack_f, stack_i, stack_n,
):  # fmt: skip
    """Sample decay number ``history`` and transport everything it emits, depth-first.

    ``vox`` is its voxel if already drawn, else −1 (see :func:`sample_decay`).

    The thread's bank ``stack_*`` serves as a last-in first-out stack.  Energies are added
    to ``tally`` (deposited, fixed point per voxel) and ``counters`` (emitted, escaped, bank
    overflow, bremsstrahlung; fixed point).

    Returns
    -------
    int
        The history's work (the sum of its particles', see :func:`transport_banked_photon`).
    """
    stack_n[0] = 0
    sample_decay(
        history, seed, vox,
        voxels, src_index, src_prob, src_alias, beta_icdf, elines, plines, params,
        tally, counters, stack_f, stack_i, stack_n, stack_f, stack_i, stack_n, rng,
    )  # fmt: skip
    work = 0
    while stack_n[0] > 0:
        # pop: the top slot is read before transport may push onto it again
        stack_n[0] -= 1
        top = stack_n[0]
        # (the particle is read from its slot before its secondaries may reuse the slot)
        if stack_f[L.S_TYPE, top] == L.PHOTON:
            work += transport_banked_photon(
                top, seed, stack_f, stack_i,
                voxels, mat_tab, kn_table, ray_table, majorant, params,
                tally, counters, stack_f, stack_i, stack_n, stack_f, stack_i, stack_n, rng,
                L.NO_WORK_LIMIT,
            )  # fmt: skip
        else:
            work += transport_banked_electron(
                top, seed, stack_f, stack_i,
                voxels, mat_tab, inv_range, range_grid, ms_table, params,
                tally, counters, stack_f, stack_i, stack_n, stack_f, stack_i, stack_n, rng,
                L.NO_WORK_LIMIT,
            )  # fmt: skip
    return work


__all__ = [
    "photon_flight",
    "run_history",
    "sample_decay",
    "sample_source_voxel",
    "source_draws",
    "source_voxel",
    "tally_add",
    "transport_banked_electron",
    "transport_banked_photon",
    "transport_electron",
    "transport_photon",
]
