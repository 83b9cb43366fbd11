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
from mcdose.physics.interp import lerp_mat
from mcdose.physics.photon import (
    compton_cos_theta,
    compton_electron_direction,
    isotropic_direction,
    rotate_direction,
    sample_compton_epsilon,
    sample_rayleigh_cos,
)
from mcdose.physics.rng import rng_init, rng_uniform

_TWO_PI = 2.0 * math.pi
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


@register_jitable
def to_fixed(energy, scale):
    """Energy (keV) in fixed-point tally units (rounded to nearest)."""
    return np.uint64(energy * scale + 0.5)


@register_jitable
def voxel_index(ix, iy, iz, nx, ny):
    """Flat C-order index of voxel (ix, iy, iz) in a (z, y, x) array."""
    return (iz * ny + iy) * nx + ix


@register_jitable
def push_particle(stack, sp, kind, energy, x, y, z, u, v, w):
    """Push a particle; returns the new stack pointer, or -1 if the stack is full."""
    if sp >= stack.shape[0]:
        return -1
    stack[sp, L.S_TYPE] = kind
    stack[sp, L.S_E] = energy
    stack[sp, L.S_X] = x
    stack[sp, L.S_Y] = y
    stack[sp, L.S_Z] = z
    stack[sp, L.S_U] = u
    stack[sp, L.S_V] = v
    stack[sp, L.S_W] = w
    return sp + 1


@register_jitable
def push_or_deposit(stack, sp, kind, energy, x, y, z, u, v, w, tally, vox, scale):
    """Push a particle; if the stack is full, deposit its energy in voxel ``vox`` instead.

    Returns
    -------
    tuple
        (new stack pointer, energy deposited for lack of stack space keV)
    """
    new_sp = push_particle(stack, sp, kind, energy, x, y, z, u, v, w)
    if new_sp < 0:
        tally_add(tally, vox, to_fixed(energy, scale))
        return sp, energy
    return new_sp, 0.0


@register_jitable
def locate(x, y, z, params):
    """Voxel indices of position (x, y, z) cm; ``inside`` is False outside the grid."""
    fx = x * params[L.P_INV_DX]
    fy = y * params[L.P_INV_DY]
    fz = z * params[L.P_INV_DZ]
    inside = (
        fx >= 0.0
        and fy >= 0.0
        and fz >= 0.0
        and fx < params[L.P_NX]
        and fy < params[L.P_NY]
        and fz < params[L.P_NZ]
    )
    if not inside:
        return False, 0, 0, 0
    return True, int(fx), int(fy), int(fz)


@register_jitable
def distance_to_boundary(pos, idx, cell, direction):
    """Distance (cm) along ``direction`` to the face of voxel ``idx`` (size ``cell``)."""
    if direction > 0.0:
        d = ((idx + 1) * cell - pos) / direction
    elif direction < 0.0:
        d = (idx * cell - pos) / direction
    else:
        return 1e30
    return d if d > 0.0 else 0.0


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
        (status, energy, residual range, x, y, z, ix, iy, iz)
    """
    nx = int(params[L.P_NX])
    ny = int(params[L.P_NY])
    nz = int(params[L.P_NZ])
    dx = params[L.P_DX]
    dy = params[L.P_DY]
    dz = params[L.P_DZ]
    scale = params[L.P_TALLY_SCALE]
    t_left = t_leg
    while True:
        vox = voxel_index(ix, iy, iz, nx, ny)
        rho = np.float64(voxels[vox, L.V_DENSITY])
        sx = distance_to_boundary(x, ix, dx, u)
        sy = distance_to_boundary(y, iy, dy, v)
        sz = distance_to_boundary(z, iz, dz, w)
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
        tally_add(tally, vox, to_fixed(energy - e_new, scale))
        energy = e_new
        if inside:
            s = t_left / rho
            x += s * u
            y += s * v
            z += s * w
            if energy <= 0.0:
                return _STOPPED, 0.0, 0.0, x, y, z, ix, iy, iz
            return _MOVED, energy, r_left, x, y, z, ix, iy, iz
        # cross into the next voxel
        t_left -= t_b
        x += s_b * u
        y += s_b * v
        z += s_b * w
        if axis == 0:
            if u > 0.0:
                ix += 1
                x = ix * dx
            else:
                x = ix * dx
                ix -= 1
        elif axis == 1:
            if v > 0.0:
                iy += 1
                y = iy * dy
            else:
                y = iy * dy
                iy -= 1
        else:
            if w > 0.0:
                iz += 1
                z = iz * dz
            else:
                z = iz * dz
                iz -= 1
        if energy <= 0.0:
            return _STOPPED, 0.0, 0.0, x, y, z, ix, iy, iz
        if ix < 0 or iy < 0 or iz < 0 or ix >= nx or iy >= ny or iz >= nz:
            return _ESCAPED, energy, r_left, x, y, z, ix, iy, iz
        if int(voxels[voxel_index(ix, iy, iz, nx, ny), L.V_MATERIAL]) != m:
            return _NEW_MATERIAL, energy, r_left, x, y, z, ix, iy, iz


@register_jitable
def transport_electron(
    energy, x, y, z, u, v, w,
    voxels, mat_tab, inv_range, range_grid, ms_table, params,
    tally, stack, sp, rng,
):  # fmt: skip
    """Follow one electron to its end; bremsstrahlung photons are pushed on the stack.

    Returns
    -------
    tuple
        (new stack pointer, escaped energy keV, energy given to bremsstrahlung keV,
        energy deposited because the stack was full keV, final x, y, z cm)
    """
    nx = int(params[L.P_NX])
    ny = int(params[L.P_NY])
    dx = params[L.P_DX]
    dy = params[L.P_DY]
    dz = params[L.P_DZ]
    scale = params[L.P_TALLY_SCALE]
    e_cut = params[L.P_E_CUT]
    k_cut = params[L.P_BREMS_K_CUT]
    range_rejection = params[L.P_RANGE_REJECTION] > 0.0
    boundary_steps = params[L.P_BOUNDARY_STEPS] > 0.0
    brems_energy = 0.0
    overflow = 0.0
    inside, ix, iy, iz = locate(x, y, z, params)
    if not inside:
        return sp, energy, brems_energy, overflow, x, y, z
    # bremsstrahlung: mean free paths left to the next emission, spent step by step
    brems_paths = -math.log(rng_uniform(rng))
    while True:
        vox = voxel_index(ix, iy, iz, nx, ny)
        if energy <= e_cut:
            tally_add(tally, vox, to_fixed(energy, scale))
            return sp, 0.0, brems_energy, overflow, x, y, z
        m = int(voxels[vox, L.V_MATERIAL])
        rho = np.float64(voxels[vox, L.V_DENSITY])
        i, f = energy_cell(params, energy)
        t, r, sigma_b, q_start = step_limits(mat_tab, params, m, i, f)
        d_min = min(
            x - ix * dx, (ix + 1) * dx - x,
            y - iy * dy, (iy + 1) * dy - y,
            z - iz * dz, (iz + 1) * dz - z,
        )  # fmt: skip
        t_inside = rho * d_min  # mass thickness the electron surely stays in this voxel for
        if range_rejection and r < t_inside:
            tally_add(tally, vox, to_fixed(energy, scale))
            return sp, 0.0, brems_energy, overflow, x, y, z
        if boundary_steps and t_inside > t:
            t = t_inside
        if t > r:
            t = r
        emit = False
        if sigma_b > 0.0 and brems_paths < sigma_b * t:
            t = brems_paths / sigma_b
            emit = True
        r_start = r
        # scattering strength of the step: transport mean free paths between E and E'
        e_end, q_end = state_at_range(inv_range, range_grid, params, m, r - t)
        kappa = q_start - q_end
        if kappa < 0.0:
            kappa = 0.0
        tau = rng_uniform(rng)
        status, energy, r, x, y, z, ix, iy, iz = move_electron(
            tau * t, energy, r, m, x, y, z, u, v, w, ix, iy, iz,
            voxels, inv_range, range_grid, params, tally,
        )  # fmt: skip
        if status == _ESCAPED:
            return sp, energy, brems_energy, overflow, x, y, z
        if status == _STOPPED:
            return sp, 0.0, brems_energy, overflow, x, y, z
        if status == _NEW_MATERIAL:
            brems_paths -= sigma_b * (r_start - r)
            continue
        # hinge: deflect by the multiple-scattering angle of the whole step
        cos_t = sample_ms_cos_theta(ms_table, params, kappa, rng_uniform(rng))
        u, v, w = rotate_direction(u, v, w, cos_t, _TWO_PI * rng_uniform(rng))
        status, energy, r, x, y, z, ix, iy, iz = move_electron(
            (1.0 - tau) * t, energy, r, m, x, y, z, u, v, w, ix, iy, iz,
            voxels, inv_range, range_grid, params, tally,
        )  # fmt: skip
        if status == _ESCAPED:
            return sp, energy, brems_energy, overflow, x, y, z
        if status == _STOPPED:
            return sp, 0.0, brems_energy, overflow, x, y, z
        brems_paths -= sigma_b * (r_start - r)
        if emit and status == _MOVED:
            brems_paths = -math.log(rng_uniform(rng))
        if emit and status == _MOVED and energy > k_cut:
            k = k_cut * math.exp(rng_uniform(rng) * math.log(energy / k_cut))
            if k > energy:
                k = energy
            energy -= k
            brems_energy += k
            sp, lost = push_or_deposit(stack, sp, L.PHOTON, k, x, y, z, u, v, w,
                            tally, voxel_index(ix, iy, iz, nx, ny), scale)  # fmt: skip
            overflow += lost


# photon_flight outcomes
ESCAPE = 0
PHOTOELECTRIC = 1
COMPTON = 2
RAYLEIGH = 3


@register_jitable
def photon_flight(energy, x, y, z, u, v, w, voxels, mat_tab, majorant, params, rng):
    """Woodcock-track a photon to its next real interaction (or out of the grid).

    Flights are sampled against the majorant μ̂(E); at each tentative site a real
    interaction is accepted with probability μ(r, E)/μ̂(E) and its type chosen from the
    partial attenuation coefficients with the same uniform number.

    Returns
    -------
    tuple
        (outcome, x, y, z, voxel, material, energy cell i, fraction f); outcome is
        ESCAPE, PHOTOELECTRIC, COMPTON or RAYLEIGH.
    """
    nx = int(params[L.P_NX])
    ny = int(params[L.P_NY])
    i, f = energy_cell(params, energy)
    mu_major = majorant[i]
    inv_mu_major = 1.0 / mu_major
    while True:
        s = -math.log(rng_uniform(rng)) * inv_mu_major
        x += s * u
        y += s * v
        z += s * w
        inside, ix, iy, iz = locate(x, y, z, params)
        if not inside:
            return ESCAPE, x, y, z, -1, -1, i, f
        vox = voxel_index(ix, iy, iz, nx, ny)
        rho = np.float64(voxels[vox, L.V_DENSITY])
        m = int(voxels[vox, L.V_MATERIAL])
        r = rng_uniform(rng) * mu_major
        mu_photo = rho * lerp_mat(mat_tab, m, L.MU_PHOTO, i, f)
        if r < mu_photo:
            return PHOTOELECTRIC, x, y, z, vox, m, i, f
        mu_incoh = rho * lerp_mat(mat_tab, m, L.MU_INCOH, i, f)
        if r < mu_photo + mu_incoh:
            return COMPTON, x, y, z, vox, m, i, f
        if r < mu_photo + mu_incoh + rho * lerp_mat(mat_tab, m, L.MU_COH, i, f):
            return RAYLEIGH, x, y, z, vox, m, i, f
        # virtual interaction: fly on


@register_jitable
def transport_photon(
    energy, x, y, z, u, v, w,
    voxels, mat_tab, kn_table, ray_table, majorant, params,
    tally, stack, sp, rng,
):  # fmt: skip
    """Follow one photon until absorption or escape; its electrons go on the stack.

    Returns
    -------
    tuple
        (new stack pointer, escaped energy keV, energy deposited because the stack was full keV)
    """
    scale = params[L.P_TALLY_SCALE]
    p_cut = params[L.P_P_CUT]
    overflow = 0.0
    while True:
        outcome, x, y, z, vox, m, i, f = photon_flight(
            energy, x, y, z, u, v, w, voxels, mat_tab, majorant, params, rng
        )
        if outcome == ESCAPE:
            return sp, energy, overflow
        if outcome == PHOTOELECTRIC:
            ue, ve, we = isotropic_direction(rng_uniform(rng), rng_uniform(rng))
            sp, lost = push_or_deposit(
                stack, sp, L.ELECTRON, energy, x, y, z, ue, ve, we, tally, vox, scale
            )
            overflow += lost
            return sp, 0.0, overflow
        if outcome == COMPTON:
            eps = sample_compton_epsilon(kn_table, params, energy, rng_uniform(rng))
            cos_t = compton_cos_theta(energy, eps)
            un, vn, wn = rotate_direction(u, v, w, cos_t, _TWO_PI * rng_uniform(rng))
            t_e = energy * (1.0 - eps)
            if t_e > 0.0:
                ue, ve, we = compton_electron_direction(energy, eps, u, v, w, un, vn, wn)
                sp, lost = push_or_deposit(
                    stack, sp, L.ELECTRON, t_e, x, y, z, ue, ve, we, tally, vox, scale
                )
                overflow += lost
            energy = energy * eps
            u, v, w = un, vn, wn
        else:
            cos_t = sample_rayleigh_cos(ray_table, params, m, energy, rng_uniform(rng))
            u, v, w = rotate_direction(u, v, w, cos_t, _TWO_PI * rng_uniform(rng))
        if energy <= p_cut:
            tally_add(tally, vox, to_fixed(energy, scale))
            return sp, 0.0, overflow


@register_jitable
def sample_line(lines, n_lines, xi1, xi2):
    """Energy (keV) of a line chosen by its alias table (rows L_ENERGY, L_PROB, L_ALIAS)."""
    j = int(xi1 * n_lines)
    if j >= n_lines:
        j = n_lines - 1
    if xi2 >= lines[L.L_PROB, j]:
        j = int(lines[L.L_ALIAS, j])
    return lines[L.L_ENERGY, j]


@register_jitable
def count_emissions(yield_per_decay, xi):
    """floor(Y) + Bernoulli(frac(Y)): a count whose mean is ``yield_per_decay``."""
    n = int(yield_per_decay)
    if xi < yield_per_decay - n:
        n += 1
    return n


@register_jitable
def run_history(
    history, seed,
    voxels, src_index, src_prob, src_alias,
    beta_icdf, elines, plines,
    mat_tab, inv_range, range_grid, kn_table, ray_table, ms_table, majorant, params,
    tally, counters, rng, stack,
):  # fmt: skip
    """Sample decay number ``history`` and transport everything it emits.

    Energies are added to ``tally`` (deposited, fixed point per voxel) and ``counters``
    (emitted, escaped, stack overflow, bremsstrahlung; fixed point).
    """
    rng_init(rng, seed, history, 0)
    nx = int(params[L.P_NX])
    ny = int(params[L.P_NY])
    scale = params[L.P_TALLY_SCALE]
    # --- decay position: voxel by alias table, uniform inside the voxel
    n_src = int(params[L.P_N_SOURCE])
    j = int(rng_uniform(rng) * n_src)
    if j >= n_src:
        j = n_src - 1
    if rng_uniform(rng) >= src_prob[j]:
        j = src_alias[j]
    vox = src_index[j]
    ix = vox % nx
    iy = (vox // nx) % ny
    iz = vox // (nx * ny)
    x = (ix + rng_uniform(rng)) * params[L.P_DX]
    y = (iy + rng_uniform(rng)) * params[L.P_DY]
    z = (iz + rng_uniform(rng)) * params[L.P_DZ]
    emitted = np.uint64(0)
    escaped = np.uint64(0)
    overflow = 0.0
    brems = 0.0
    local = params[L.P_LOCAL_ENERGY]
    if local > 0.0:
        q = to_fixed(local, scale)
        tally_add(tally, vox, q)
        emitted += q
    # --- emissions
    sp = 0
    n_beta = count_emissions(params[L.P_BETA_YIELD], rng_uniform(rng))
    n_table = int(params[L.P_N_BETA_TABLE])
    emit_betas = params[L.P_EMIT_BETA_PARTICLES] > 0.0
    positron_fraction = params[L.P_POSITRON_FRACTION]
    for _ in range(n_beta):
        pos = rng_uniform(rng) * (n_table - 1)
        k = int(pos)
        if k >= n_table - 1:
            k = n_table - 2
        g = pos - k
        e = beta_icdf[k] * (1.0 - g) + beta_icdf[k + 1] * g
        u, v, w = isotropic_direction(rng_uniform(rng), rng_uniform(rng))
        if emit_betas:
            emitted += to_fixed(e, scale)
            sp, lost = push_or_deposit(
                stack, sp, L.ELECTRON, e, x, y, z, u, v, w, tally, vox, scale
            )
            overflow += lost
        if positron_fraction > 0.0 and rng_uniform(rng) < positron_fraction:
            # annihilation at rest: two back-to-back photons from the decay site
            ua, va, wa = isotropic_direction(rng_uniform(rng), rng_uniform(rng))
            for sign in (1.0, -1.0):
                emitted += to_fixed(L.ANNIHILATION_KEV, scale)
                sp, lost = push_or_deposit(
                    stack, sp, L.PHOTON, L.ANNIHILATION_KEV,
                    x, y, z, sign * ua, sign * va, sign * wa, tally, vox, scale,
                )  # fmt: skip
                overflow += lost
    n_el = count_emissions(params[L.P_ELINE_YIELD], rng_uniform(rng))
    n_elines = int(params[L.P_N_ELINES])
    for _ in range(n_el):
        e = sample_line(elines, n_elines, rng_uniform(rng), rng_uniform(rng))
        u, v, w = isotropic_direction(rng_uniform(rng), rng_uniform(rng))
        emitted += to_fixed(e, scale)
        sp, lost = push_or_deposit(stack, sp, L.ELECTRON, e, x, y, z, u, v, w, tally, vox, scale)
        overflow += lost
    n_ph = count_emissions(params[L.P_PLINE_YIELD], rng_uniform(rng))
    n_plines = int(params[L.P_N_PLINES])
    for _ in range(n_ph):
        e = sample_line(plines, n_plines, rng_uniform(rng), rng_uniform(rng))
        u, v, w = isotropic_direction(rng_uniform(rng), rng_uniform(rng))
        emitted += to_fixed(e, scale)
        sp, lost = push_or_deposit(stack, sp, L.PHOTON, e, x, y, z, u, v, w, tally, vox, scale)
        overflow += lost
    # --- transport everything on the stack
    while sp > 0:
        sp -= 1
        kind = stack[sp, L.S_TYPE]
        e = stack[sp, L.S_E]
        px = stack[sp, L.S_X]
        py = stack[sp, L.S_Y]
        pz = stack[sp, L.S_Z]
        u = stack[sp, L.S_U]
        v = stack[sp, L.S_V]
        w = stack[sp, L.S_W]
        if kind == L.PHOTON:
            sp, esc, ovf = transport_photon(
                e, px, py, pz, u, v, w,
                voxels, mat_tab, kn_table, ray_table, majorant, params,
                tally, stack, sp, rng,
            )  # fmt: skip
        else:
            sp, esc, brm, ovf, _, _, _ = transport_electron(
                e, px, py, pz, u, v, w,
                voxels, mat_tab, inv_range, range_grid, ms_table, params,
                tally, stack, sp, rng,
            )  # fmt: skip
            brems += brm
        if esc > 0.0:
            escaped += to_fixed(esc, scale)
        overflow += ovf
    tally_add(counters, L.C_EMITTED, emitted)
    tally_add(counters, L.C_ESCAPED, escaped)
    if overflow > 0.0:
        tally_add(counters, L.C_STACK_OVERFLOW, to_fixed(overflow, scale))
    if brems > 0.0:
        tally_add(counters, L.C_BREMS, to_fixed(brems, scale))


__all__ = [
    "photon_flight",
    "run_history",
    "tally_add",
    "transport_electron",
    "transport_photon",
]
